package chain

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"fmt"
	"math/big"
	"time"

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

// Upgrade makes owner's address a smart account: it sends, from the owner,
// a transaction authorizing (EIP-7702) its code to be deleGator's, and
// waits until it is mined (calling mine, if not nil, to make blocks). An
// account already delegated there is left alone. This is the owner's own
// transaction, signed with the owner's key: the dashboard does the same in
// the browser; tools and the bench use this.
func Upgrade(ctx context.Context, c *Client, owner *ecdsa.PrivateKey, deleGator common.Address, mine func()) error {
	from := crypto.PubkeyToAddress(owner.PublicKey)
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
	id := uint256.NewInt(c.ID())
	// The sender authorizes itself, so the authorization's nonce is the
	// transaction's plus one.
	auth, err := types.SignSetCode(owner, types.SetCodeAuthorization{ChainID: *id, Address: deleGator, Nonce: nonce + 1})
	if err != nil {
		return err
	}
	feeCap := new(big.Int).Add(tip, new(big.Int).Mul(head.BaseFee, big.NewInt(2)))
	tx, err := types.SignNewTx(owner, types.LatestSignerForChainID(new(big.Int).SetUint64(c.ID())), &types.SetCodeTx{
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
		if !IsNotFound(err) {
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
