package main

import (
	"context"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/spells-dev/spells/chain"
	"github.com/spells-dev/spells/contracts"
	"github.com/spells-dev/spells/protocol"
)

// TestReadConditions: a trigger on the owner's dUSD balance fires when
// the owner's own transfer takes it below the threshold; one on a view
// function (the feed's latestAnswer, a signed number with 8 decimals)
// fires when the feed moves; a read whose call reverts is logged, counted
// and told to its trigger's owner in the activity, and the others go on; a read the vault cannot make is refused
// at creation, saying why.
func TestReadConditions(t *testing.T) {
	o := testOptions(t)
	o.ChainRPC, o.ChainID, o.DevChainRPC, o.DevChainBlockInterval, o.ChainPoll = chainDev, 0, "", time.Second, 100*time.Millisecond
	tn := startNode(t, o, nil)
	ctx := context.Background()
	dev, info, cl := tn.n.chain.dev, tn.n.chain.info, tn.n.chain.client
	if err := dev.SetFeed(ctx, "ETH/USD", 2600); err != nil {
		t.Fatal(err)
	}
	s := tn.signIn(t, nil)
	s.alertsTo(t, newWebhook(t).url)
	var dUSD common.Address
	for _, tk := range info.Tokens {
		if tk.Symbol == "dUSD" {
			dUSD = common.HexToAddress(tk.Address)
		}
	}
	waitFor(t, "the faucet", func() bool {
		eth, _ := cl.BalanceAt(ctx, s.w.Address(), nil)
		return eth != nil && eth.Sign() > 0 && tokenBalance(t, cl, dUSD, s.w.Address()).Sign() > 0
	})
	thr := func(v float64) *float64 { return &v }
	notify := protocol.Action{Kind: "notify"}
	balance, _ := s.create(t, protocol.TriggerSpec{Name: "low dUSD", Action: notify,
		Condition: protocol.Condition{Read: &protocol.Read{Balance: "dUSD"}, Op: protocol.OpBelow, Threshold: thr(24_000)}})
	feed, _ := s.create(t, protocol.TriggerSpec{Name: "feed high", Action: notify,
		Condition: protocol.Condition{Read: &protocol.Read{Contract: info.Feeds[0].Address, Function: "latestAnswer() returns (int256)", Decimals: 8},
			Op: protocol.OpAbove, Threshold: thr(3000)}})
	reverts, _ := s.create(t, protocol.TriggerSpec{Name: "reverts", Action: notify,
		Condition: protocol.Condition{Read: &protocol.Read{Contract: dUSD.Hex(), Function: "nope()"}, Op: protocol.OpAbove, Threshold: thr(1)}})
	// Each trigger learns its read's value before anything moves; the read
	// that reverts is counted, and publishes nothing.
	s.mirrorUntil(t, "both reads known", func() bool {
		known := 0
		for _, e := range s.mirror.Evaluations {
			if (e.TriggerID == balance || e.TriggerID == feed) && e.Outcome == protocol.OutcomeUpdated {
				known++
			}
		}
		return known >= 2
	})
	waitFor(t, "the reverting read counted", func() bool { return testutil.ToFloat64(tn.n.readCount.WithLabelValues("failed")) >= 1 })
	s.mirrorUntil(t, "the owner told the read failed", func() bool {
		for _, e := range s.mirror.Evaluations {
			if e.TriggerID == reverts && e.Outcome == protocol.OutcomeFailed && strings.Contains(e.Detail, "the node's read of the chain failed") {
				return true
			}
		}
		return false
	})

	// The owner sends 2,000 dUSD away: its balance read falls below 24,000.
	token := contracts.MustGet(contracts.DemoToken).ABI
	data, _ := token.Pack("transfer", common.HexToAddress("0x000000000000000000000000000000000000dEaD"), chain.Units(2000))
	nonce, _ := cl.PendingNonceAt(ctx, s.w.Address())
	tip, _ := cl.SuggestGasTipCap(ctx)
	head, _ := cl.HeaderByNumber(ctx, nil)
	fee := new(big.Int).Add(tip, new(big.Int).Mul(head.BaseFee, big.NewInt(2)))
	gas, err := cl.EstimateGas(ctx, ethereum.CallMsg{From: s.w.Address(), To: &dUSD, Data: data})
	if err != nil {
		t.Fatal(err)
	}
	tx, _ := types.SignTx(types.NewTx(&types.DynamicFeeTx{ChainID: new(big.Int).SetUint64(info.ChainID), Nonce: nonce, GasTipCap: tip, GasFeeCap: fee,
		Gas: gas * 5 / 4, To: &dUSD, Data: data}), types.LatestSignerForChainID(new(big.Int).SetUint64(info.ChainID)), s.w.Key)
	if err := cl.SendTransaction(ctx, tx); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the transfer mined", func() bool { return tokenBalance(t, cl, dUSD, s.w.Address()).Cmp(chain.Units(23_000)) == 0 })
	a := s.alertWith(t, "the balance trigger's alert", func(a protocol.Alert) bool { return a.TriggerID == balance })
	if a.Detail != "your dUSD balance at 23000" {
		t.Fatalf("the balance alert says %q", a.Detail)
	}
	if err := dev.SetFeed(ctx, "ETH/USD", 3100); err != nil {
		t.Fatal(err)
	}
	if a := s.alertWith(t, "the feed trigger's alert", func(a protocol.Alert) bool { return a.TriggerID == feed }); !strings.HasSuffix(a.Detail, ".latestAnswer() at 3100") {
		t.Fatalf("the feed alert says %q", a.Detail)
	}

	for _, c := range []struct {
		read protocol.Read
		says string
	}{
		{protocol.Read{Balance: "XYZ"}, "not one this chain's node knows"},
		{protocol.Read{Contract: dUSD.Hex(), Function: "balanceOf(address"}, "is not name(type"},
		{protocol.Read{Contract: dUSD.Hex(), Function: "balanceOf(address)"}, "takes 1 arguments, 0 given"},
		{protocol.Read{Contract: dUSD.Hex(), Function: "paused() returns (bool)"}, "must return a number"},
		{protocol.Read{Contract: "0x12", Function: "totalSupply()"}, "must be an address"},
	} {
		_, err := s.cmd(t, protocol.OpTriggerCreate, protocol.TriggerSpec{Name: "bad", Action: notify,
			Condition: protocol.Condition{Read: &c.read, Op: protocol.OpAbove, Threshold: thr(1)}})
		if err == nil || !strings.Contains(err.Error(), c.says) {
			t.Errorf("read %+v: %v; want it refused saying %q", c.read, err, c.says)
		}
	}
}
