package delegation

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"errors"
	"fmt"
	"math/big"
	"strings"
	"time"

	"github.com/ethereum/go-ethereum"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/holiman/uint256"
)

// DelegatedCode is the code of an account delegated with EIP-7702 to
// target: 0xef0100 ‖ target.
func DelegatedCode(target common.Address) []byte {
	return append([]byte{0xef, 0x01, 0x00}, target.Bytes()...)
}

// Backend is what Upgrade needs of a chain's node: the methods of
// go-ethereum's ethclient.
type Backend interface {
	ChainID(ctx context.Context) (*big.Int, error)
	CodeAt(ctx context.Context, account common.Address, block *big.Int) ([]byte, error)
	PendingNonceAt(ctx context.Context, account common.Address) (uint64, error)
	SuggestGasTipCap(ctx context.Context) (*big.Int, error)
	HeaderByNumber(ctx context.Context, number *big.Int) (*types.Header, error)
	SendTransaction(ctx context.Context, tx *types.Transaction) error
	TransactionReceipt(ctx context.Context, hash common.Hash) (*types.Receipt, error)
}

// Upgrade makes owner's address a smart account of the delegation
// framework: it sends, from the owner, a transaction authorizing
// (EIP-7702) its code to be deleGator's, and waits until it is mined
// (calling mine, if not nil, to make blocks). An account already delegated
// there is left alone. This is the owner's own transaction, signed with the
// owner's key: the dashboard does the same in the browser; tools, tests and
// the bench use this.
func Upgrade(ctx context.Context, c Backend, owner *ecdsa.PrivateKey, deleGator common.Address, mine func()) error {
	from := crypto.PubkeyToAddress(owner.PublicKey)
	chainID, err := c.ChainID(ctx)
	if err != nil {
		return err
	}
	code, err := c.CodeAt(ctx, from, nil)
	if err != nil {
		return err
	}
	if bytes.Equal(code, DelegatedCode(deleGator)) {
		return nil
	}
	nonce, err := c.PendingNonceAt(ctx, from)
	if err != nil {
		return err
	}
	tip, err := c.SuggestGasTipCap(ctx)
	if err != nil {
		return err
	}
	head, err := c.HeaderByNumber(ctx, nil)
	if err != nil {
		return err
	}
	id := uint256.MustFromBig(chainID)
	// The sender authorizes itself, so the authorization's nonce is the
	// transaction's plus one.
	auth, err := types.SignSetCode(owner, types.SetCodeAuthorization{ChainID: *id, Address: deleGator, Nonce: nonce + 1})
	if err != nil {
		return err
	}
	feeCap := new(big.Int).Add(tip, new(big.Int).Mul(head.BaseFee, big.NewInt(2)))
	tx, err := types.SignNewTx(owner, types.LatestSignerForChainID(chainID), &types.SetCodeTx{
		ChainID: id, Nonce: nonce, GasTipCap: uint256.MustFromBig(tip), GasFeeCap: uint256.MustFromBig(feeCap),
		Gas: 200_000, To: from, Value: new(uint256.Int), AuthList: []types.SetCodeAuthorization{auth}})
	if err != nil {
		return err
	}
	if err := c.SendTransaction(ctx, tx); err != nil {
		return fmt.Errorf("send the EIP-7702 authorization: %w", err)
	}
	for {
		r, err := c.TransactionReceipt(ctx, tx.Hash())
		if err == nil {
			if r.Status != types.ReceiptStatusSuccessful {
				return fmt.Errorf("the EIP-7702 authorization %s reverted", tx.Hash().Hex())
			}
			return nil
		}
		if !errors.Is(err, ethereum.NotFound) && !strings.Contains(err.Error(), "indexing is in progress") {
			return err
		}
		if mine != nil {
			mine()
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("the EIP-7702 authorization was not mined: %w", ctx.Err())
		case <-time.After(50 * time.Millisecond):
		}
	}
}
