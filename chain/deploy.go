package chain

import (
	"context"
	"crypto/ecdsa"
	"errors"
	"fmt"
	"math/big"
	"time"

	"github.com/ethereum/go-ethereum"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"

	"github.com/spells-dev/spells/contracts"
	"github.com/spells-dev/spells/protocol"
)

// The demo market a dev chain starts with.
const (
	// The dev chain's price feed: Chainlink's test aggregator, with 8
	// decimals as Chainlink's USD feeds have, moved by the demo trader
	// with the pool; an answer older than demoFeedMaxAge seconds is stale.
	demoFeedDecimals = 8
	demoFeedMaxAge   = 120
	// DemoPriceSignal is the signal under which the node publishes the
	// dev pool's price of dETH in dUSD.
	DemoPriceSignal  = "ETH/USD"
	demoPrice        = 2500
	demoETHLiquidity = 1_000
)

// Ether is 10^18 wei (and a demo token's unit in its smallest units).
var Ether = big.NewInt(1e18)

// Units returns n whole tokens of 18 decimals.
func Units(n int64) *big.Int { return new(big.Int).Mul(big.NewInt(n), Ether) }

// sender sends a run of transactions from one key with consecutive nonces.
type sender struct {
	c      *Client
	key    *ecdsa.PrivateKey
	from   common.Address
	nonce  uint64
	tip    *big.Int
	feeCap *big.Int
	sent   []sent
}

type sent struct {
	hash common.Hash
	what string
}

func newSender(ctx context.Context, c *Client, key *ecdsa.PrivateKey) (*sender, error) {
	from := crypto.PubkeyToAddress(key.PublicKey)
	nonce, err := c.PendingNonceAt(ctx, from)
	if err != nil {
		return nil, err
	}
	tip, err := c.SuggestGasTipCap(ctx)
	if err != nil {
		return nil, err
	}
	head, err := c.HeaderByNumber(ctx, nil)
	if err != nil {
		return nil, err
	}
	feeCap := new(big.Int).Add(tip, new(big.Int).Mul(head.BaseFee, big.NewInt(2)))
	return &sender{c: c, key: key, from: from, nonce: nonce, tip: tip, feeCap: feeCap}, nil
}

// send signs and sends one transaction; to nil creates a contract. gas 0
// estimates it.
func (s *sender) send(ctx context.Context, what string, to *common.Address, value *big.Int, data []byte, gas uint64) (common.Hash, error) {
	if value == nil {
		value = new(big.Int)
	}
	if gas == 0 {
		g, err := s.c.EstimateGas(ctx, ethereum.CallMsg{From: s.from, To: to, Value: value, Data: data})
		if err != nil {
			return common.Hash{}, fmt.Errorf("estimate gas: %w", err)
		}
		gas = g + g/5
	}
	tx := types.NewTx(&types.DynamicFeeTx{ChainID: new(big.Int).SetUint64(s.c.ID()), Nonce: s.nonce, GasTipCap: s.tip,
		GasFeeCap: s.feeCap, Gas: gas, To: to, Value: value, Data: data})
	signed, err := types.SignTx(tx, types.LatestSignerForChainID(tx.ChainId()), s.key)
	if err != nil {
		return common.Hash{}, err
	}
	if err := s.c.SendTransaction(ctx, signed); err != nil {
		return common.Hash{}, err
	}
	s.nonce++
	s.sent = append(s.sent, sent{signed.Hash(), what})
	return signed.Hash(), nil
}

// create sends a contract creation and returns the contract's address.
func (s *sender) create(ctx context.Context, name string, args ...any) (common.Address, error) {
	c := contracts.MustGet(name)
	ctor, err := c.ABI.Pack("", args...)
	if err != nil {
		return common.Address{}, fmt.Errorf("%s constructor: %w", name, err)
	}
	addr := crypto.CreateAddress(s.from, s.nonce)
	if _, err := s.send(ctx, "deploy "+name, nil, nil, append(append([]byte{}, c.Bytecode...), ctor...), 0); err != nil {
		return common.Address{}, fmt.Errorf("deploy %s: %w", name, err)
	}
	return addr, nil
}

// call sends a call of method on the named contract at to.
func (s *sender) call(ctx context.Context, name string, to common.Address, gas uint64, method string, args ...any) error {
	data, err := contracts.MustGet(name).ABI.Pack(method, args...)
	if err != nil {
		return fmt.Errorf("%s.%s: %w", name, method, err)
	}
	if _, err := s.send(ctx, name+"."+method, &to, nil, data, gas); err != nil {
		return fmt.Errorf("%s.%s: %w", name, method, err)
	}
	return nil
}

// settle waits until every transaction sent is mined (calling mine, if
// not nil, to make blocks) and fails if one reverted.
func (s *sender) settle(ctx context.Context, mine func()) error {
	for _, tx := range s.sent {
		h := tx.hash
		for {
			r, err := s.c.TransactionReceipt(ctx, h)
			if err == nil {
				if r.Status != types.ReceiptStatusSuccessful {
					return fmt.Errorf("%s: transaction %s reverted (%d gas used)", tx.what, h.Hex(), r.GasUsed)
				}
				break
			}
			if !IsNotFound(err) {
				return err
			}
			if mine != nil {
				mine()
			}
			select {
			case <-ctx.Done():
				return fmt.Errorf("%s: transaction %s not mined: %w", tx.what, h.Hex(), ctx.Err())
			case <-time.After(20 * time.Millisecond):
			}
		}
	}
	s.sent = nil
	return nil
}

// Deploy puts on the chain, from key's account, everything a Spells node
// executes with: the delegation framework (DelegationManager, EntryPoint,
// the EIP-7702 DeleGator, the caveat enforcers), two demo tokens (dETH,
// dUSD) and a constant-product pool between them holding 1,000 dETH and
// 2,500,000 dUSD. The key's account owns the tokens (it mints them for the
// faucet). mine, if not nil, makes a block (a chain that produces blocks
// only when asked).
func Deploy(ctx context.Context, c *Client, key *ecdsa.PrivateKey, mine func()) (protocol.ChainInfo, error) {
	s, err := newSender(ctx, c, key)
	if err != nil {
		return protocol.ChainInfo{}, fmt.Errorf("deploy: %w", err)
	}
	info := protocol.ChainInfo{ChainID: c.ID(), Enforcers: map[string]string{}}
	fail := func(err error) (protocol.ChainInfo, error) {
		return protocol.ChainInfo{}, fmt.Errorf("deploy: %w", err)
	}
	manager, err := s.create(ctx, contracts.DelegationManager, s.from)
	if err != nil {
		return fail(err)
	}
	entry, err := s.create(ctx, contracts.EntryPoint)
	if err != nil {
		return fail(err)
	}
	// The DeleGator's constructor takes the two addresses above, whose
	// code is not mined yet: its gas is estimated after they are.
	if err := s.settle(ctx, mine); err != nil {
		return fail(err)
	}
	delegator, err := s.create(ctx, contracts.EIP7702StatelessDeleGator, manager, entry)
	if err != nil {
		return fail(err)
	}
	for _, name := range contracts.Enforcers {
		a, err := s.create(ctx, name)
		if err != nil {
			return fail(err)
		}
		info.Enforcers[name] = a.Hex()
	}
	eth, err := s.create(ctx, contracts.DemoToken, "Demo Ether", "dETH", s.from)
	if err != nil {
		return fail(err)
	}
	usd, err := s.create(ctx, contracts.DemoToken, "Demo Dollar", "dUSD", s.from)
	if err != nil {
		return fail(err)
	}
	if err := s.settle(ctx, mine); err != nil {
		return fail(err)
	}
	pool, err := s.create(ctx, contracts.ConstantProductPool, eth, usd)
	if err != nil {
		return fail(err)
	}
	ethIn, usdIn := Units(demoETHLiquidity), Units(demoETHLiquidity*demoPrice)
	steps := []struct {
		token  common.Address
		method string
		args   []any
	}{
		{eth, "mint", []any{s.from, ethIn}}, {usd, "mint", []any{s.from, usdIn}},
		{eth, "approve", []any{pool, ethIn}}, {usd, "approve", []any{pool, usdIn}},
	}
	for _, st := range steps {
		if err := s.call(ctx, contracts.DemoToken, st.token, 0, st.method, st.args...); err != nil {
			return fail(err)
		}
	}
	if err := s.settle(ctx, mine); err != nil {
		return fail(err)
	}
	if err := s.call(ctx, contracts.ConstantProductPool, pool, 0, "addLiquidity", ethIn, usdIn); err != nil {
		return fail(err)
	}
	router, err := s.create(ctx, contracts.DemoRouter, []common.Address{pool})
	if err != nil {
		return fail(err)
	}
	feed, err := s.create(ctx, contracts.MockV3Aggregator, uint8(demoFeedDecimals), feedAnswer(demoPrice))
	if err != nil {
		return fail(err)
	}
	if err := s.settle(ctx, mine); err != nil {
		return fail(err)
	}
	info.Router = router.Hex()
	info.Feeds = []protocol.Feed{demoFeed(feed)}
	info.DelegationManager, info.EntryPoint, info.DeleGator = manager.Hex(), entry.Hex(), delegator.Hex()
	info.Tokens = []protocol.Token{
		{Symbol: "dETH", Name: "Demo Ether", Address: eth.Hex(), Decimals: 18},
		{Symbol: "dUSD", Name: "Demo Dollar", Address: usd.Hex(), Decimals: 18},
	}
	info.Pool = &protocol.Pool{Address: pool.Hex(), Token0: eth.Hex(), Token1: usd.Hex(), Signal: DemoPriceSignal}
	if err := Verify(ctx, c, info); err != nil {
		return fail(err)
	}
	return info, nil
}

// demoFeed is the dev chain's feed at address a.
func demoFeed(a common.Address) protocol.Feed {
	return protocol.Feed{Signal: DemoPriceSignal, Address: a.Hex(), Decimals: demoFeedDecimals, MaxAge: demoFeedMaxAge}
}

// feedAnswer is price as the dev feed's answer (demoFeedDecimals).
func feedAnswer(price float64) *big.Int {
	n, _ := new(big.Float).Mul(big.NewFloat(price), big.NewFloat(1e8)).Int(nil)
	return n
}

// Verify checks that every contract info names has code on the chain: a
// deployment file that does not belong to the chain is refused at start.
func Verify(ctx context.Context, c *Client, info protocol.ChainInfo) error {
	if info.ChainID != c.ID() {
		return fmt.Errorf("%w: the deployment is for chain %d, the node serves %d", ErrChainID, info.ChainID, c.ID())
	}
	check := map[string]string{"DelegationManager": info.DelegationManager, "EntryPoint": info.EntryPoint, "DeleGator": info.DeleGator}
	for n, a := range info.Enforcers {
		check[n] = a
	}
	for _, t := range info.Tokens {
		check[t.Symbol] = t.Address
	}
	if info.Pool != nil {
		check["pool"] = info.Pool.Address
	}
	if info.Router != "" {
		check["router"] = info.Router
	}
	for _, f := range info.Feeds {
		check["feed "+f.Signal] = f.Address
	}
	var errs []error
	for name, a := range check {
		if !common.IsHexAddress(a) {
			errs = append(errs, fmt.Errorf("%s: %q is not an address", name, a))
			continue
		}
		code, err := c.CodeAt(ctx, common.HexToAddress(a), nil)
		if err != nil {
			return err
		}
		if len(code) == 0 {
			errs = append(errs, fmt.Errorf("%s: no contract at %s", name, a))
		}
	}
	for _, f := range info.Feeds {
		if err := verifyFeed(ctx, c, f); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// verifyFeed checks a feed's entry against the feed itself: a signal name,
// a most age, and the decimals the feed answers in.
func verifyFeed(ctx context.Context, c *Client, f protocol.Feed) error {
	if f.Signal == "" || f.MaxAge == 0 {
		return fmt.Errorf("feed %s: it needs a signal name and a maxAge in seconds", f.Address)
	}
	if !common.IsHexAddress(f.Address) {
		return nil // refused above
	}
	a := common.HexToAddress(f.Address)
	abi := contracts.MustGet(contracts.MockV3Aggregator).ABI
	data, _ := abi.Pack("decimals")
	out, err := c.CallContract(ctx, ethereum.CallMsg{To: &a, Data: data}, nil)
	if err != nil {
		return fmt.Errorf("feed %s (%s): decimals(): %w", f.Signal, f.Address, err)
	}
	if len(out) != 32 || new(big.Int).SetBytes(out).Cmp(big.NewInt(int64(f.Decimals))) != 0 {
		return fmt.Errorf("feed %s (%s) answers with %s decimals, the deployment says %d", f.Signal, f.Address, new(big.Int).SetBytes(out), f.Decimals)
	}
	return nil
}
