package delegation

import (
	"context"
	"math/big"
	"strings"
	"testing"

	"github.com/ethereum/go-ethereum"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/math"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"

	"github.com/spells-dev/spells/chain"
	"github.com/spells-dev/spells/contracts"
)

// redeemBatch is redeemDelegations of one batch under d, in mode.
func redeemBatch(t *testing.T, d Delegation, mode [32]byte, xs []Execution) []byte {
	t.Helper()
	pc, err := PermissionContext(d)
	if err != nil {
		t.Fatal(err)
	}
	out, err := contracts.MustGet(contracts.DelegationManager).ABI.Pack("redeemDelegations", [][]byte{pc}, [][32]byte{mode}, [][]byte{EncodeBatch(xs)})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestAnExactBatchRedeemsOnlyAsSigned: a delegation pinning one batch
// (approve the router, swap through it to the owner at a minimum output)
// with one call and an expiry redeems once, exactly as signed; the chain
// refuses another recipient, another minimum, a single call, a second
// redemption and, on another delegation, a passed expiry.
func TestAnExactBatchRedeemsOnlyAsSigned(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	w.upgrade()
	info := w.d.Info()
	enf := ParseEnforcers(info.Enforcers)
	router, dETH := common.HexToAddress(info.Router), common.HexToAddress(info.Tokens[0].Address)
	erc20, r := contracts.MustGet(contracts.DemoToken).ABI, contracts.MustGet(contracts.DemoRouter).ABI
	head, _ := w.c.HeaderByNumber(ctx, nil)
	expiry := head.Time + 3600
	swapTo := func(to common.Address, minOut *big.Int) []Execution {
		approve, _ := erc20.Pack("approve", router, chain.Units(100))
		swap, _ := r.Pack("swapExactTokensForTokens", chain.Units(100), minOut, []common.Address{w.dUSD, dETH}, to, new(big.Int).SetUint64(expiry))
		return []Execution{{Target: w.dUSD, Value: new(big.Int), Data: approve}, {Target: router, Value: new(big.Int), Data: swap}}
	}
	minOut := new(big.Int).Div(chain.Units(100), big.NewInt(2600)) // the pool starts near 2,500 dUSD a dETH
	signed := swapTo(addr(w.owner), minOut)
	sign := func(salt int64, rules Rules) Delegation {
		cs, err := rules.Caveats(enf)
		if err != nil {
			t.Fatal(err)
		}
		d := Delegation{Delegate: addr(w.key), Delegator: addr(w.owner), Authority: RootAuthority, Caveats: cs, Salt: (*math.HexOrDecimal256)(big.NewInt(salt))}
		if err := d.SignWith(w.dom, func(h []byte) ([]byte, error) { return crypto.Sign(h, w.owner) }); err != nil {
			t.Fatal(err)
		}
		return d
	}
	d := sign(1, Rules{Batch: signed, MaxCalls: 1, NotAfter: expiry})
	estimate := func(data []byte) error {
		_, err := w.c.EstimateGas(ctx, ethereum.CallMsg{From: addr(w.key), To: &w.dom.Manager, Data: data})
		return err
	}
	refused := func(what string, data []byte, reason string) {
		t.Helper()
		if err := estimate(data); err == nil || !strings.Contains(err.Error(), reason) {
			t.Fatalf("%s: %v, want a revert with %q", what, err, reason)
		}
	}
	stranger := common.HexToAddress("0x00000000000000000000000000000000000a11ce")
	refused("a swap to a stranger", redeemBatch(t, d, BatchMode, swapTo(stranger, minOut)), "ExactExecutionBatchEnforcer:invalid-execution")
	refused("a swap with minimum output 0", redeemBatch(t, d, BatchMode, swapTo(addr(w.owner), new(big.Int))), "ExactExecutionBatchEnforcer:invalid-execution")
	refused("one call of the batch", redeemBatch(t, d, BatchMode, signed[:1]), "ExactExecutionBatchEnforcer:invalid-batch-size")
	refused("the batch's swap alone, in single mode", redeemData(t, d, router, signed[1].Data), "CaveatEnforcer:invalid-call-type")

	balance := func(tok, who common.Address) *big.Int {
		data, _ := erc20.Pack("balanceOf", who)
		out, err := w.c.CallContract(ctx, ethereum.CallMsg{To: &tok, Data: data}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return new(big.Int).SetBytes(out)
	}
	usdBefore, ethBefore := balance(w.dUSD, addr(w.owner)), balance(dETH, addr(w.owner))
	data := redeemBatch(t, d, BatchMode, signed)
	gas, err := w.c.EstimateGas(ctx, ethereum.CallMsg{From: addr(w.key), To: &w.dom.Manager, Data: data})
	if err != nil {
		t.Fatalf("the batch as signed: %v", err)
	}
	nonce, _ := w.c.NonceAt(ctx, addr(w.key), nil)
	rc := w.send(w.key, &types.DynamicFeeTx{ChainID: new(big.Int).SetUint64(w.c.ID()), Nonce: nonce, GasTipCap: big.NewInt(1e9),
		GasFeeCap: big.NewInt(1e11), Gas: gas * 2, To: &w.dom.Manager, Data: data})
	if rc.Status != types.ReceiptStatusSuccessful {
		t.Fatal("the batch as signed reverted")
	}
	if spent := new(big.Int).Sub(usdBefore, balance(w.dUSD, addr(w.owner))); spent.Cmp(chain.Units(100)) != 0 {
		t.Fatalf("the owner spent %s dUSD wei, want 100 dUSD", spent)
	}
	if got := new(big.Int).Sub(balance(dETH, addr(w.owner)), ethBefore); got.Cmp(minOut) < 0 {
		t.Fatalf("the owner received %s dETH wei, below the signed minimum %s", got, minOut)
	}
	refused("a second redemption", redeemBatch(t, d, BatchMode, signed), "LimitedCallsEnforcer:limit-exceeded")
	old := sign(2, Rules{Batch: signed, NotAfter: head.Time})
	refused("after the expiry", redeemBatch(t, old, BatchMode, signed), "TimestampEnforcer:expired-delegation")
}

// TestAFeedConditionHoldsOnChain: a delegation with a feed condition
// redeems only while the feed's answer is below the threshold, positive
// and fresh; the chain refuses it otherwise, naming why.
func TestAFeedConditionHoldsOnChain(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	w.upgrade()
	info := w.d.Info()
	feed := common.HexToAddress(info.Feeds[0].Address)
	enf := ParseEnforcers(info.Enforcers)
	erc20 := contracts.MustGet(contracts.DemoToken).ABI
	pay, _ := erc20.Pack("transfer", addr(w.owner), chain.Units(1))
	calls := []Execution{{Target: w.dUSD, Value: new(big.Int), Data: pay}}
	rules := Rules{Batch: calls, Feed: &FeedCondition{Feed: feed, Threshold: big.NewInt(2400e8), MaxAge: 120}}
	cs, err := rules.Caveats(enf)
	if err != nil {
		t.Fatal(err)
	}
	d := Delegation{Delegate: addr(w.key), Delegator: addr(w.owner), Authority: RootAuthority, Caveats: cs, Salt: (*math.HexOrDecimal256)(big.NewInt(3))}
	if err := d.SignWith(w.dom, func(h []byte) ([]byte, error) { return crypto.Sign(h, w.owner) }); err != nil {
		t.Fatal(err)
	}
	mock := contracts.MustGet(contracts.MockV3Aggregator).ABI
	setFeed := func(method string, args ...any) {
		t.Helper()
		data, err := mock.Pack(method, args...)
		if err != nil {
			t.Fatal(err)
		}
		nonce, _ := w.c.NonceAt(ctx, addr(w.key), nil)
		r := w.send(w.key, &types.DynamicFeeTx{ChainID: new(big.Int).SetUint64(w.c.ID()), Nonce: nonce, GasTipCap: big.NewInt(1e9),
			GasFeeCap: big.NewInt(1e11), Gas: 500_000, To: &feed, Data: data})
		if r.Status != types.ReceiptStatusSuccessful {
			t.Fatalf("the feed's %s reverted", method)
		}
	}
	redeem := func() error {
		_, err := w.c.EstimateGas(ctx, ethereum.CallMsg{From: addr(w.key), To: &w.dom.Manager, Data: redeemBatch(t, d, BatchMode, calls)})
		return err
	}
	for _, c := range []struct {
		what   string
		set    func()
		reason string
	}{
		{"above the threshold", func() {}, "FeedConditionEnforcer:condition-not-met"},
		{"a zero answer", func() { setFeed("updateAnswer", big.NewInt(0)) }, "FeedConditionEnforcer:invalid-answer"},
		{"a negative answer", func() { setFeed("updateAnswer", big.NewInt(-1)) }, "FeedConditionEnforcer:invalid-answer"},
		{"a stale answer", func() {
			head, _ := w.c.HeaderByNumber(ctx, nil)
			old := new(big.Int).SetUint64(head.Time - 1000)
			setFeed("updateRoundData", big.NewInt(50), big.NewInt(2300e8), old, old)
		}, "FeedConditionEnforcer:stale-answer"},
	} {
		c.set()
		if err := redeem(); err == nil || !strings.Contains(err.Error(), c.reason) {
			t.Errorf("%s: %v, want a revert with %q", c.what, err, c.reason)
		}
	}
	setFeed("updateAnswer", big.NewInt(2300e8))
	if err := redeem(); err != nil {
		t.Fatalf("below the threshold, fresh: %v", err)
	}
}
