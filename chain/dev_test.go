package chain

import (
	"context"
	"crypto/ecdsa"
	"encoding/json"
	"errors"
	"maps"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"

	"github.com/spells-dev/spells/contracts"
	"github.com/spells-dev/spells/vault/exec"
)

var _ exec.Chain = (*Client)(nil)

func startDev(t *testing.T, dir string) *Dev {
	t.Helper()
	d, err := StartDev(context.Background(), DevConfig{Dir: dir, RPCListen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// callView calls a view method and returns its first result.
func callView(t *testing.T, c *Client, name string, at common.Address, method string, args ...any) any {
	t.Helper()
	abi := contracts.MustGet(name).ABI
	data, err := abi.Pack(method, args...)
	if err != nil {
		t.Fatal(err)
	}
	out, err := c.CallContract(context.Background(), ethereum.CallMsg{To: &at, Data: data}, nil)
	if err != nil {
		t.Fatalf("%s.%s: %v", name, method, err)
	}
	res, err := abi.Unpack(method, out)
	if err != nil {
		t.Fatal(err)
	}
	return res[0]
}

// TestDevChain: the dev chain deploys the delegation framework and the
// demo market at first start, funds accounts from its faucet, serves
// JSON-RPC on loopback, and keeps its blocks and contracts across a
// restart.
func TestDevChain(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	start := time.Now()
	d := startDev(t, dir)
	t.Logf("first start with deployment: %s", time.Since(start))
	info := d.Info()
	if !info.Dev || info.ChainID != DevChainID || info.Pool == nil || len(info.Tokens) != 2 || len(info.Enforcers) != len(contracts.Enforcers) {
		t.Fatalf("info %+v", info)
	}
	pool := common.HexToAddress(info.Pool.Address)
	price := callView(t, d.Client(), contracts.ConstantProductPool, pool, "price").(*big.Int)
	if want := Units(2500); price.Cmp(want) != 0 {
		t.Fatalf("pool price %s, want %s", price, want)
	}
	someone := crypto.PubkeyToAddress(mustKey(t).PublicKey)
	if err := d.Fund(ctx, someone, Ether, map[string]*big.Int{"dETH": Units(10)}); err != nil {
		t.Fatal(err)
	}
	bal, err := d.Client().BalanceAt(ctx, someone, nil)
	if err != nil || bal.Cmp(Ether) != 0 {
		t.Fatalf("funded balance %v (%v), want 1 ether", bal, err)
	}
	token := common.HexToAddress(info.Tokens[0].Address)
	if got := callView(t, d.Client(), contracts.DemoToken, token, "balanceOf", someone).(*big.Int); got.Cmp(Units(10)) != 0 {
		t.Fatalf("funded token balance %s, want 10 units", got)
	}
	// The loopback JSON-RPC serves the same chain, and a client naming
	// another chain id is refused.
	if d.RPCURL() == "" {
		t.Fatal("no RPC URL")
	}
	rc, err := Dial(ctx, d.RPCURL(), DevChainID, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if b, err := rc.BalanceAt(ctx, someone, nil); err != nil || b.Cmp(Ether) != 0 {
		t.Fatalf("over JSON-RPC: balance %v (%v)", b, err)
	}
	rc.Close()
	if _, err := Dial(ctx, d.RPCURL(), 1, 5*time.Second); !errors.Is(err, ErrChainID) {
		t.Fatalf("dial naming chain 1: err = %v, want %v", err, ErrChainID)
	}
	head, _ := d.Client().BlockNumber(ctx)
	t.Logf("funded and dialled: %s", time.Since(start))
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	t.Logf("closed: %s", time.Since(start))
	d = startDev(t, dir)
	t.Logf("restarted: %s", time.Since(start))
	defer d.Close()
	if d.Info().Pool.Address != info.Pool.Address {
		t.Fatalf("after a restart the pool is %s, was %s (redeployed?)", d.Info().Pool.Address, info.Pool.Address)
	}
	if n, _ := d.Client().BlockNumber(ctx); n < head {
		t.Fatalf("after a restart the head is %d, was %d", n, head)
	}
	if b, _ := d.Client().BalanceAt(ctx, someone, nil); b.Cmp(Ether) != 0 {
		t.Fatalf("after a restart the balance is %s", b)
	}
}

func mustKey(t *testing.T) *ecdsa.PrivateKey {
	k, err := crypto.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// TestTraderMovesThePoolPrice: the demo trader's swaps move the pool's
// price step by step, by about 0.2 % each, and leave it near its start;
// the feed follows, one step behind, with a new round each step.
func TestTraderMovesThePoolPrice(t *testing.T) {
	ctx := context.Background()
	d := startDev(t, t.TempDir())
	defer d.Close()
	tr, err := d.NewTrader(ctx)
	if err != nil {
		t.Fatal(err)
	}
	p0, err := tr.Price(ctx)
	if err != nil || p0 != 2500 {
		t.Fatalf("start price %v (%v), want 2500", p0, err)
	}
	moved, p := 0, p0
	for i := 0; i < 30; i++ {
		if err := tr.Step(ctx, p); err != nil {
			t.Fatal(err)
		}
		d.Mine()
		next, err := tr.Price(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if step := next/p - 1; step > 0.02 || step < -0.02 {
			t.Fatalf("one step moved the price %.2f%%", step*100)
		}
		if next != p {
			moved++
		}
		round, answer, updated := feedRound(t, d)
		if want := feedAnswer(p); answer.Cmp(want) != 0 || round != uint64(i+2) {
			t.Fatalf("step %d: the feed answers %s in round %d, want %s in round %d", i, answer, round, want, i+2)
		}
		if head, _ := d.Client().HeaderByNumber(ctx, nil); updated != head.Time {
			t.Fatalf("step %d: the feed was updated at %d, its block is at %d", i, updated, head.Time)
		}
		p = next
	}
	if moved < 25 || p < 2000 || p > 3000 {
		t.Fatalf("the price moved in %d of 30 steps, to %.2f", moved, p)
	}
	// A second trader on the same chain (a restart) is already funded.
	if _, err := d.NewTrader(ctx); err != nil {
		t.Fatal(err)
	}
}

// feedRound reads the dev feed's latest round, answer and update time.
func feedRound(t *testing.T, d *Dev) (uint64, *big.Int, uint64) {
	t.Helper()
	feed := common.HexToAddress(d.Info().Feeds[0].Address)
	a := contracts.MustGet(contracts.MockV3Aggregator).ABI
	data, _ := a.Pack("latestRoundData")
	out, err := d.Client().CallContract(context.Background(), ethereum.CallMsg{To: &feed, Data: data}, nil)
	if err != nil {
		t.Fatal(err)
	}
	v, err := a.Unpack("latestRoundData", out)
	if err != nil {
		t.Fatal(err)
	}
	return v[0].(*big.Int).Uint64(), v[1].(*big.Int), v[3].(*big.Int).Uint64()
}

// TestForkDropsTheBlocksAfterIt: Fork stages a reorg: a transaction in a
// dropped block has no receipt until a new block takes it again, under
// another block hash. (The vaults' reorg handling is tested with it.)
func TestForkDropsTheBlocksAfterIt(t *testing.T) {
	ctx := context.Background()
	d := startDev(t, t.TempDir())
	defer d.Close()
	c := d.Client()
	someone := crypto.PubkeyToAddress(mustKey(t).PublicKey)
	before, err := c.BlockNumber(ctx)
	if err != nil {
		t.Fatal(err)
	}
	parent, err := c.HeaderByNumber(ctx, new(big.Int).SetUint64(before))
	if err != nil {
		t.Fatal(err)
	}
	if err := d.Fund(ctx, someone, Ether, nil); err != nil {
		t.Fatal(err)
	}
	block, err := c.BlockByNumber(ctx, nil)
	if err != nil || block.Transactions().Len() != 1 {
		t.Fatalf("the funding block: %v", err)
	}
	tx := block.Transactions()[0]
	if err := d.Fork(parent.Hash()); err != nil {
		t.Fatal(err)
	}
	if _, err := c.TransactionReceipt(ctx, tx.Hash()); !IsNotFound(err) {
		t.Fatalf("the receipt after the fork: %v, want not found", err)
	}
	if b, _ := c.BalanceAt(ctx, someone, nil); b.Sign() != 0 {
		t.Fatalf("the balance after the fork is %s, want 0", b)
	}
	d.Mine()
	wctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	r, err := WaitMined(wctx, c, tx.Hash(), 20*time.Millisecond)
	if err != nil {
		t.Fatal(err)
	}
	if r.BlockHash == block.Hash() {
		t.Fatal("the transaction came back in the dropped block")
	}
}

// TestDemoRouterSwapsAsAV2Router: the dev pools' router takes the Uniswap
// V2 router's swap call: it pulls the approved input from the caller, pays
// the output to the recipient named in the call (here not the caller),
// the amount getAmountsOut quoted, and refuses less than amountOutMin or
// a call past its deadline.
func TestDemoRouterSwapsAsAV2Router(t *testing.T) {
	ctx := context.Background()
	d := startDev(t, t.TempDir())
	defer d.Close()
	c := d.Client()
	info := d.Info()
	pool := common.HexToAddress(info.Pool.Address)
	if !common.IsHexAddress(info.Router) {
		t.Fatalf("the dev chain's deployment names no router: %+v", info)
	}
	router := common.HexToAddress(info.Router)
	if got := callView(t, c, contracts.DemoRouter, router, "pools", common.HexToAddress(info.Tokens[0].Address), common.HexToAddress(info.Tokens[1].Address)).(common.Address); got != pool {
		t.Fatalf("the router's pool for the pair is %s, want %s", got, pool)
	}
	var dUSD, dETH common.Address
	for _, tk := range info.Tokens {
		switch tk.Symbol {
		case "dUSD":
			dUSD = common.HexToAddress(tk.Address)
		case "dETH":
			dETH = common.HexToAddress(tk.Address)
		}
	}
	key := mustKey(t)
	me := crypto.PubkeyToAddress(key.PublicKey)
	owner := crypto.PubkeyToAddress(mustKey(t).PublicKey) // where the output goes
	if err := d.Fund(ctx, me, Ether, map[string]*big.Int{"dUSD": Units(1000)}); err != nil {
		t.Fatal(err)
	}
	amount, path := Units(250), []common.Address{dUSD, dETH}
	quote := callView(t, c, contracts.DemoRouter, router, "getAmountsOut", amount, path).([]*big.Int)
	if len(quote) != 2 || quote[0].Cmp(amount) != 0 || quote[1].Sign() <= 0 {
		t.Fatalf("quote %v", quote)
	}
	head, _ := c.HeaderByNumber(ctx, nil)
	deadline := new(big.Int).SetUint64(head.Time + 3600)
	s, err := newSender(ctx, c, key)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.call(ctx, contracts.DemoToken, dUSD, 0, "approve", router, amount); err != nil {
		t.Fatal(err)
	}
	if err := s.settle(ctx, d.Mine); err != nil {
		t.Fatal(err)
	}
	swap := func(min, deadline *big.Int) error {
		data, err := contracts.MustGet(contracts.DemoRouter).ABI.Pack("swapExactTokensForTokens", amount, min, path, owner, deadline)
		if err != nil {
			t.Fatal(err)
		}
		_, err = c.CallContract(ctx, ethereum.CallMsg{From: me, To: &router, Data: data}, nil)
		return err
	}
	if err := swap(new(big.Int).Add(quote[1], big.NewInt(1)), deadline); err == nil || !strings.Contains(err.Error(), "INSUFFICIENT_OUTPUT_AMOUNT") {
		t.Fatalf("asking one unit more than the quote: %v", err)
	}
	if err := swap(quote[1], new(big.Int).SetUint64(head.Time-1)); err == nil || !strings.Contains(err.Error(), "EXPIRED") {
		t.Fatalf("past the deadline: %v", err)
	}
	if err := s.call(ctx, contracts.DemoRouter, router, 0, "swapExactTokensForTokens", amount, quote[1], path, owner, deadline); err != nil {
		t.Fatal(err)
	}
	if err := s.settle(ctx, d.Mine); err != nil {
		t.Fatal(err)
	}
	if got := callView(t, c, contracts.DemoToken, dETH, "balanceOf", owner).(*big.Int); got.Cmp(quote[1]) != 0 {
		t.Fatalf("the recipient got %s dETH units, quoted %s", got, quote[1])
	}
	if got := callView(t, c, contracts.DemoToken, dUSD, "balanceOf", me).(*big.Int); got.Cmp(Units(750)) != 0 {
		t.Fatalf("the caller has %s dUSD units left, want 750 dUSD", got)
	}
}

// TestADeploymentWithoutARouterGetsOne: a dev chain whose recorded
// deployment predates the router and an enforcer gets them at its next
// start; nothing else is deployed again.
func TestADeploymentWithoutARouterGetsOne(t *testing.T) {
	dir := t.TempDir()
	d := startDev(t, dir)
	info := d.Info()
	if err := d.Close(); err != nil {
		t.Fatal(err)
	}
	old := info
	old.Router, old.Dev, old.RPC, old.Feeds = "", false, "", nil
	old.Enforcers = maps.Clone(info.Enforcers)
	delete(old.Enforcers, contracts.ExactExecutionBatchEnforcer)
	b, _ := json.MarshalIndent(old, "", "  ")
	if err := os.WriteFile(filepath.Join(dir, "deployment.json"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	d = startDev(t, dir)
	defer d.Close()
	got := d.Info()
	if got.Router == "" || got.Pool.Address != info.Pool.Address || got.DelegationManager != info.DelegationManager {
		t.Fatalf("after the restart: router %q, pool %s (was %s)", got.Router, got.Pool.Address, info.Pool.Address)
	}
	if len(got.Feeds) != 1 || got.Feeds[0].Signal != "ETH/USD" {
		t.Fatalf("after the restart: feeds %+v", got.Feeds)
	}
	if e := got.Enforcers[contracts.ExactExecutionBatchEnforcer]; e == "" || got.Enforcers[contracts.LimitedCallsEnforcer] != info.Enforcers[contracts.LimitedCallsEnforcer] {
		t.Fatalf("after the restart: enforcers %v (were %v)", got.Enforcers, info.Enforcers)
	}
	raw, _ := os.ReadFile(filepath.Join(dir, "deployment.json"))
	if !strings.Contains(string(raw), got.Router) {
		t.Fatal("the router was not recorded in deployment.json")
	}
}
