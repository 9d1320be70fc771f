package main

import (
	"context"
	"crypto/ecdsa"
	"encoding/json"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/ethclient"

	"github.com/spells-dev/spells/chain"
	"github.com/spells-dev/spells/chain/gethtest"
	"github.com/spells-dev/spells/contracts"
	"github.com/spells-dev/spells/delegation"
	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/protocol/client"
	"github.com/spells-dev/spells/vault/actor"
	"github.com/spells-dev/spells/vault/keys"
	"github.com/spells-dev/spells/vault/store"
)

// theftChain is a chain a node runs against over JSON-RPC, with a way to
// fund accounts on it.
type theftChain struct {
	url  string
	rpc  *ethclient.Client
	info protocol.ChainInfo
	// fund sends wei and dUSD to an address and waits for them.
	fund func(t *testing.T, to common.Address, wei, usd *big.Int)
}

// devTheftChain is an embedded dev chain of the test's own, serving
// JSON-RPC on loopback, a block every 100 ms.
func devTheftChain(t *testing.T) *theftChain {
	d, err := chain.StartDev(context.Background(), chain.DevConfig{Dir: t.TempDir(), RPCListen: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
				d.Mine()
			}
		}
	}()
	t.Cleanup(func() { close(stop); <-done; d.Close() })
	rpc, err := ethclient.Dial(d.Info().RPC)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rpc.Close)
	info := d.Info()
	info.Dev, info.RPC = false, ""
	return &theftChain{url: d.Info().RPC, rpc: rpc, info: info, fund: func(t *testing.T, to common.Address, wei, usd *big.Int) {
		if err := d.Fund(context.Background(), to, wei, map[string]*big.Int{"dUSD": usd}); err != nil {
			t.Fatal(err)
		}
	}}
}

// gethTheftChain is geth --dev with the contracts deployed from its dev
// account, which funds accounts and mints the demo tokens.
func gethTheftChain(t *testing.T) *theftChain {
	g := gethtest.Start(t)
	info := deployOnGeth(t, g)
	rpc, err := ethclient.Dial(g.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rpc.Close)
	return &theftChain{url: g.URL, rpc: rpc, info: info, fund: func(t *testing.T, to common.Address, wei, usd *big.Int) {
		if wei.Sign() > 0 && !sendValue(t, rpc, gethtest.DevKey, to, wei, nil, 50_000) {
			t.Fatal("fund: the transfer failed")
		}
		if usd.Sign() > 0 {
			mint, _ := contracts.MustGet(contracts.DemoToken).ABI.Pack("mint", to, usd)
			if !sendAndWait(t, rpc, gethtest.DevKey, tokenAddr(info, "dUSD"), mint, 200_000) {
				t.Fatal("fund: the mint failed")
			}
		}
	}}
}

// TestAStolenNodeMovesNothingItsOwnerDidNotSign: on the dev chain, and on
// geth --dev (skipped without geth unless SPELLS_REQUIRE_GETH=1).
func TestAStolenNodeMovesNothingItsOwnerDidNotSign(t *testing.T) {
	t.Run("dev chain", func(t *testing.T) { stolenNode(t, devTheftChain(t)) })
	t.Run("geth", func(t *testing.T) { stolenNode(t, gethTheftChain(t)) })
}

// stolenNode: an owner makes four triggers, each with its own grant (a
// swap, a transfer to a friend, a swap when the chain's price feed falls
// below 2,000, a swap that expires at once), and the node is stolen: its
// data directory with its key-encryption key. The thief unseals the
// vault's session key and tries every redemption it can build with the
// grants it finds: a transfer to itself, the swap paid to itself, the swap
// at minimum output 0, a call of the batch alone, one trigger's delegation
// for another's calls, the dip's swap before the feed crossed, a grant
// past its expiry, more fires than signed, and a grant the owner disabled
// on-chain. Each reverts on-chain;
// the one thing that goes through is the owner's own swap as signed, paid
// to the owner, once.
func stolenNode(t *testing.T, c *theftChain) {
	ctx := context.Background()
	file := filepath.Join(t.TempDir(), "deployment.json")
	b, _ := json.Marshal(c.info)
	if err := os.WriteFile(file, b, 0o600); err != nil {
		t.Fatal(err)
	}
	o := testOptions(t)
	o.ChainRPC, o.ChainID, o.ChainDeployment, o.ChainPoll, o.Confirmations = c.url, 0, file, 100*time.Millisecond, 1
	tn := startNode(t, o, nil)
	owner, _ := client.NewWallet()
	s := tn.signIn(t, owner)
	if s.mirror.Account == nil {
		t.Fatal("the vault shows no session key")
	}
	key := common.HexToAddress(s.mirror.Account.SessionKey)
	c.fund(t, owner.Address(), chain.Ether, chain.Units(1000))
	c.fund(t, key, chain.Ether, new(big.Int))
	if err := delegation.Upgrade(ctx, c.rpc, owner.Key, common.HexToAddress(c.info.DeleGator), nil); err != nil {
		t.Fatal(err)
	}
	dom := delegation.Domain{ChainID: c.info.ChainID, Manager: common.HexToAddress(c.info.DelegationManager)}
	never := 1.0
	withGrant := func(name string, action protocol.Action, expires time.Time, cond ...protocol.Condition) string {
		t.Helper()
		spec := protocol.TriggerSpec{Name: name, Condition: protocol.Condition{Signal: "NEVER", Op: protocol.OpBelow, Threshold: &never},
			Action: action, MaxFires: 1, ExpiresAt: expires.UnixMilli()}
		if len(cond) > 0 {
			spec.Condition = cond[0]
		}
		ack, err := s.cmd(t, protocol.OpTriggerGrant, spec)
		if err != nil {
			t.Fatalf("trigger.grant %s: %v", name, err)
		}
		var g protocol.TriggerGrant
		if err := json.Unmarshal(ack.Result, &g); err != nil {
			t.Fatal(err)
		}
		if spec.Delegation, err = delegation.SignTriggerGrant(dom, owner.Key, g); err != nil {
			t.Fatal(err)
		}
		id, _ := s.create(t, spec)
		return id
	}
	friend := common.HexToAddress("0x00000000000000000000000000000000000f00d5")
	params := func(x any) json.RawMessage { b, _ := json.Marshal(x); return b }
	swapID := withGrant("swap", protocol.Action{Kind: "swap", Params: params(protocol.SwapParams{Sell: "dUSD", Buy: "dETH", Amount: "100", MinOut: "0.03"})}, time.Now().Add(time.Hour))
	payID := withGrant("pay a friend", protocol.Action{Kind: "transfer", Params: params(protocol.TransferParams{Token: "dUSD", To: friend.Hex(), Amount: "1"})}, time.Now().Add(time.Hour))
	dip := 2000.0
	dipID := withGrant("buy the dip", protocol.Action{Kind: "swap", Params: params(protocol.SwapParams{Sell: "dUSD", Buy: "dETH", Amount: "100", MinOut: "0.045"})},
		time.Now().Add(time.Hour), protocol.Condition{Signal: c.info.Feeds[0].Signal, Op: protocol.OpBelow, Threshold: &dip})
	soonID := withGrant("soon over", protocol.Action{Kind: "swap", Params: params(protocol.SwapParams{Sell: "dUSD", Buy: "dETH", Amount: "50", MinOut: "0.01"})}, time.Now().Add(3*time.Second))

	// The theft: the node stops, and its disk and key are the thief's.
	if err := tn.shutdown(); err != nil {
		t.Fatal(err)
	}
	kekText, err := os.ReadFile(filepath.Join(o.DataDir, devKEKFile))
	if err != nil {
		t.Fatal(err)
	}
	kek, err := keys.ParseKEK(strings.TrimSpace(string(kekText)))
	if err != nil {
		t.Fatal(err)
	}
	vaultID := strings.ToLower(owner.Address().Hex())
	conn, err := store.Open(actor.Path(o.DataDir, vaultID))
	if err != nil {
		t.Fatal(err)
	}
	ring, err := store.ReadRing(conn)
	if err != nil {
		t.Fatal(err)
	}
	var thief *ecdsa.PrivateKey
	if err := ring.WithSessionKey(kek, vaultID, func(k *ecdsa.PrivateKey) error { thief = crypto.ToECDSAUnsafe(crypto.FromECDSA(k)); return nil }); err != nil {
		t.Fatalf("unseal the session key with the node's KEK: %v", err)
	}
	if crypto.PubkeyToAddress(thief.PublicKey) != key {
		t.Fatal("the unsealed key is not the vault's session key")
	}
	grants, err := store.LoadGrants(conn, "")
	if err != nil {
		t.Fatal(err)
	}
	stolen := map[string]delegation.Delegation{} // trigger id → its grant's delegation
	for _, g := range grants {
		body, _, _, trigger, ok, err := store.TriggerGrant(conn, g.ID)
		if err != nil || !ok {
			t.Fatalf("grant %s: %v", g.ID, err)
		}
		var ds []delegation.Delegation
		if err := json.Unmarshal(body, &ds); err != nil || len(ds) != 1 {
			t.Fatalf("grant %s: %v", g.ID, err)
		}
		stolen[trigger] = ds[0]
	}
	conn.Close()
	if len(stolen) != 4 || len(grants) != 4 {
		t.Fatalf("the vault holds %d grants, want the 4 triggers' own", len(grants))
	}

	thiefAddr := crypto.PubkeyToAddress(thief.PublicKey)
	router, manager := common.HexToAddress(c.info.Router), dom.Manager
	usd, eth := tokenAddr(c.info, "dUSD"), tokenAddr(c.info, "dETH")
	erc20, r := contracts.MustGet(contracts.DemoToken).ABI, contracts.MustGet(contracts.DemoRouter).ABI
	balance := func(tok, who common.Address) *big.Int {
		data, _ := erc20.Pack("balanceOf", who)
		out, err := c.rpc.CallContract(ctx, ethereum.CallMsg{To: &tok, Data: data}, nil)
		if err != nil {
			t.Fatal(err)
		}
		return new(big.Int).SetBytes(out)
	}
	usdBefore, ethBefore := balance(usd, owner.Address()), balance(eth, owner.Address())
	pinned := func(trigger string) []delegation.Execution {
		rules, err := delegation.ReadRules(stolen[trigger].Caveats, delegation.ParseEnforcers(c.info.Enforcers))
		if err != nil {
			t.Fatal(err)
		}
		return rules.Batch
	}
	signedSwap := pinned(swapID)
	args, _ := r.Methods["swapExactTokensForTokens"].Inputs.Unpack(signedSwap[1].Data[4:])
	deadline := args[4].(*big.Int)
	swapTo := func(to common.Address, minOut *big.Int) []delegation.Execution {
		data, _ := r.Pack("swapExactTokensForTokens", chain.Units(100), minOut, []common.Address{usd, eth}, to, deadline)
		return []delegation.Execution{signedSwap[0], {Target: router, Value: new(big.Int), Data: data}}
	}
	// redeem sends the thief's redemption and waits for its receipt; it
	// returns whether it went through, and the revert's reason if not.
	redeem := func(d delegation.Delegation, mode [32]byte, calldata []byte) (bool, string) {
		t.Helper()
		pc, err := delegation.PermissionContext(d)
		if err != nil {
			t.Fatal(err)
		}
		data, _ := contracts.MustGet(contracts.DelegationManager).ABI.Pack("redeemDelegations", [][]byte{pc}, [][32]byte{mode}, [][]byte{calldata})
		reason := ""
		if _, err := c.rpc.EstimateGas(ctx, ethereum.CallMsg{From: thiefAddr, To: &manager, Data: data}); err != nil {
			reason = err.Error()
			// A custom error comes as its selector: name it.
			var de interface{ ErrorData() any }
			if errors.As(err, &de) {
				if h, ok := de.ErrorData().(string); ok {
					reason += " " + contracts.ErrorName(common.FromHex(h))
				}
			}
		}
		return sendAndWait(t, c.rpc, thief, manager, data, 2_000_000), reason
	}
	batch := func(xs []delegation.Execution) []byte { return delegation.EncodeBatch(xs) }
	transfer, _ := erc20.Pack("transfer", thiefAddr, chain.Units(100))
	for _, a := range []struct {
		what     string
		d        delegation.Delegation
		mode     [32]byte
		calldata []byte
		reason   string
	}{
		{"transfer the owner's dUSD to itself", stolen[swapID], delegation.BatchMode, batch([]delegation.Execution{{Target: usd, Value: new(big.Int), Data: transfer}}), "ExactExecutionBatchEnforcer"},
		{"the signed swap, paid to itself", stolen[swapID], delegation.BatchMode, batch(swapTo(thiefAddr, chain.Units(1).Div(chain.Units(3), big.NewInt(100)))), "ExactExecutionBatchEnforcer:invalid-execution"},
		{"the signed swap at minimum output 0", stolen[swapID], delegation.BatchMode, batch(swapTo(owner.Address(), new(big.Int))), "ExactExecutionBatchEnforcer:invalid-execution"},
		{"the approval alone, as a single call", stolen[swapID], [32]byte{}, delegation.SingleCall(signedSwap[0].Target, signedSwap[0].Value, signedSwap[0].Data), "CaveatEnforcer:invalid-call-type"},
		{"the swap's calls under the transfer's delegation", stolen[payID], delegation.BatchMode, batch(signedSwap), "ExactExecutionBatchEnforcer"},
	} {
		if ok, reason := redeem(a.d, a.mode, a.calldata); ok || !strings.Contains(reason, a.reason) {
			t.Errorf("%s: went through %v, reason %q (want a revert with %q)", a.what, ok, reason, a.reason)
		}
	}
	// Before the feed crossed the trigger's threshold, its own grant's
	// calls revert: the chain reads the feed (set fresh, at 2,500, first).
	feed := common.HexToAddress(c.info.Feeds[0].Address)
	fresh, _ := contracts.MustGet(contracts.MockV3Aggregator).ABI.Pack("updateAnswer", big.NewInt(2500e8))
	if !sendAndWait(t, c.rpc, owner.Key, feed, fresh, 0) {
		t.Fatal("could not set the feed")
	}
	if ok, reason := redeem(stolen[dipID], delegation.BatchMode, batch(pinned(dipID))); ok || !strings.Contains(reason, "FeedConditionEnforcer:condition-not-met") {
		t.Errorf("the dip's swap before the feed crossed: went through %v, %q", ok, reason)
	}
	// Past its expiry, the grant's own calls revert.
	soon := pinned(soonID)
	waitChainTime(t, c, stolenEnd(t, stolen[soonID], c.info))
	if ok, reason := redeem(stolen[soonID], delegation.BatchMode, batch(soon)); ok || !strings.Contains(reason, "TimestampEnforcer:expired-delegation") {
		t.Errorf("a grant past its expiry: went through %v, %q", ok, reason)
	}
	// The worst it can do: run the owner's trigger as signed, once.
	if ok, reason := redeem(stolen[swapID], delegation.BatchMode, batch(signedSwap)); !ok {
		t.Fatalf("the owner's swap as signed did not go through: %s", reason)
	}
	if ok, reason := redeem(stolen[swapID], delegation.BatchMode, batch(signedSwap)); ok || !strings.Contains(reason, "LimitedCallsEnforcer:limit-exceeded") {
		t.Errorf("more fires than signed: went through %v, %q", ok, reason)
	}
	// The owner disables the transfer's grant on-chain: it is dead there.
	disable, err := contracts.MustGet(contracts.DelegationManager).ABI.Pack("disableDelegation", abiDelegation(stolen[payID]))
	if err != nil {
		t.Fatal(err)
	}
	if !sendAndWait(t, c.rpc, owner.Key, manager, disable, 500_000) {
		t.Fatal("the owner could not disable the delegation")
	}
	if ok, reason := redeem(stolen[payID], delegation.BatchMode, batch(pinned(payID))); ok || !strings.Contains(reason, "CannotUseADisabledDelegation") {
		t.Errorf("a disabled grant: went through %v, %q", ok, reason)
	}

	// What moved: the signed swap's 100 dUSD, for at least its signed
	// minimum, to the owner; nothing to the thief or the friend.
	if got := new(big.Int).Sub(usdBefore, balance(usd, owner.Address())); got.Cmp(chain.Units(100)) != 0 {
		t.Errorf("the owner's dUSD fell by %s, want the signed swap's 100 dUSD", got)
	}
	minOut := new(big.Int).Div(chain.Units(3), big.NewInt(100))
	if got := new(big.Int).Sub(balance(eth, owner.Address()), ethBefore); got.Cmp(minOut) < 0 {
		t.Errorf("the owner's dETH rose by %s, below the signed minimum %s", got, minOut)
	}
	for _, who := range []common.Address{thiefAddr, friend} {
		if u, e := balance(usd, who), balance(eth, who); u.Sign() != 0 || e.Sign() != 0 {
			t.Errorf("%s holds %s dUSD and %s dETH units", who.Hex(), u, e)
		}
	}
}

func tokenAddr(info protocol.ChainInfo, sym string) common.Address {
	for _, t := range info.Tokens {
		if t.Symbol == sym {
			return common.HexToAddress(t.Address)
		}
	}
	return common.Address{}
}

// stolenEnd is the end of a delegation's validity (its TimestampEnforcer's
// before), unix seconds.
func stolenEnd(t *testing.T, d delegation.Delegation, info protocol.ChainInfo) uint64 {
	r, err := delegation.ReadRules(d.Caveats, delegation.ParseEnforcers(info.Enforcers))
	if err != nil || r.NotAfter == 0 {
		t.Fatalf("the delegation has no end: %v", err)
	}
	return r.NotAfter
}

// waitChainTime waits until the chain's newest block is at or past end.
func waitChainTime(t *testing.T, c *theftChain, end uint64) {
	deadline := time.Now().Add(30 * time.Second)
	for {
		h, err := c.rpc.HeaderByNumber(context.Background(), nil)
		if err == nil && h.Time >= end {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the chain's time did not reach %d", end)
		}
		// A block for the clock to move on a chain that makes blocks
		// only for transactions.
		c.fund(t, common.HexToAddress("0x000000000000000000000000000000000000dead"), big.NewInt(1), new(big.Int))
		time.Sleep(200 * time.Millisecond)
	}
}

// sendAndWait signs and sends a call from key with a fixed gas limit (so a
// call that would revert is mined and reverts; 0: estimated) and waits for
// its receipt; it reports whether it succeeded.
func sendAndWait(t *testing.T, rpc *ethclient.Client, key *ecdsa.PrivateKey, to common.Address, data []byte, gas uint64) bool {
	return sendValue(t, rpc, key, to, nil, data, gas)
}

// sendValue is sendAndWait with value wei sent along.
func sendValue(t *testing.T, rpc *ethclient.Client, key *ecdsa.PrivateKey, to common.Address, value *big.Int, data []byte, gas uint64) bool {
	t.Helper()
	ctx := context.Background()
	id, err := rpc.ChainID(ctx)
	if err != nil {
		t.Fatal(err)
	}
	from := crypto.PubkeyToAddress(key.PublicKey)
	nonce, err := rpc.PendingNonceAt(ctx, from)
	if err != nil {
		t.Fatal(err)
	}
	head, err := rpc.HeaderByNumber(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	if gas == 0 {
		g, err := rpc.EstimateGas(ctx, ethereum.CallMsg{From: from, To: &to, Value: value, Data: data})
		if err != nil {
			t.Fatalf("estimate: %v", err)
		}
		gas = g + g/4
	}
	tip := big.NewInt(1e9)
	tx, err := types.SignNewTx(key, types.LatestSignerForChainID(id), &types.DynamicFeeTx{ChainID: id, Nonce: nonce, GasTipCap: tip,
		GasFeeCap: new(big.Int).Add(tip, new(big.Int).Mul(head.BaseFee, big.NewInt(2))), Gas: gas, To: &to, Value: value, Data: data})
	if err != nil {
		t.Fatal(err)
	}
	if err := rpc.SendTransaction(ctx, tx); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		r, err := rpc.TransactionReceipt(ctx, tx.Hash())
		if err == nil {
			return r.Status == types.ReceiptStatusSuccessful
		}
		if time.Now().After(deadline) {
			t.Fatalf("no receipt for %s within 30 s", tx.Hash().Hex())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// abiDelegation is d as the DelegationManager's ABI takes it.
func abiDelegation(d delegation.Delegation) any {
	type caveat struct {
		Enforcer common.Address
		Terms    []byte
		Args     []byte
	}
	cs := make([]caveat, len(d.Caveats))
	for i, c := range d.Caveats {
		cs[i] = caveat{Enforcer: c.Enforcer, Terms: c.Terms, Args: c.Args}
	}
	return struct {
		Delegate  common.Address
		Delegator common.Address
		Authority [32]byte
		Caveats   []caveat
		Salt      *big.Int
		Signature []byte
	}{d.Delegate, d.Delegator, d.Authority, cs, (*big.Int)(d.Salt), d.Signature}
}
