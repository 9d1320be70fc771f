package vault

import (
	"context"
	"crypto/ecdsa"
	"encoding/json"
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/holiman/uint256"

	"github.com/spells-dev/spells/chain"
	"github.com/spells-dev/spells/contracts"
	"github.com/spells-dev/spells/delegation"
	"github.com/spells-dev/spells/protocol"
)

// chainEnv is a manager executing on a dev chain of its own, which makes
// a block every 100 ms while the test runs.
type chainEnv struct {
	*env
	d    *chain.Dev
	info protocol.ChainInfo
}

func newChainEnv(t *testing.T) *chainEnv {
	t.Helper()
	d, err := chain.StartDev(context.Background(), chain.DevConfig{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	done := make(chan struct{})
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
	info := d.Info()
	ce := &chainEnv{d: d, info: info}
	ce.env = newEnvWith(t, func(e *env) {
		e.clock = NewFakeClock(time.Now())
		e.chain, e.client = &ce.info, d.Client()
	})
	t.Cleanup(func() { close(stop); <-done; d.Close() })
	return ce
}

func (ce *chainEnv) token(sym string) common.Address {
	for _, tk := range ce.info.Tokens {
		if tk.Symbol == sym {
			return common.HexToAddress(tk.Address)
		}
	}
	panic(sym)
}

func (ce *chainEnv) balance(t *testing.T, token, who common.Address) *big.Int {
	t.Helper()
	data, _ := contracts.MustGet(contracts.DemoToken).ABI.Pack("balanceOf", who)
	out, err := ce.d.Client().CallContract(context.Background(), ethereum.CallMsg{To: &token, Data: data}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return new(big.Int).SetBytes(out)
}

// upgrade makes the owner's address a smart account (EIP-7702, to the
// DeleGator), as the dashboard does for a burner key.
func (ce *chainEnv) upgrade(t *testing.T, owner *ecdsa.PrivateKey) {
	t.Helper()
	c := ce.d.Client()
	ctx := context.Background()
	from := crypto.PubkeyToAddress(owner.PublicKey)
	nonce, _ := c.NonceAt(ctx, from, nil)
	auth, err := types.SignSetCode(owner, types.SetCodeAuthorization{ChainID: *uint256.NewInt(c.ID()),
		Address: common.HexToAddress(ce.info.DeleGator), Nonce: nonce + 1})
	if err != nil {
		t.Fatal(err)
	}
	tx, err := types.SignNewTx(owner, types.LatestSignerForChainID(new(big.Int).SetUint64(c.ID())), &types.SetCodeTx{
		ChainID: uint256.NewInt(c.ID()), Nonce: nonce, GasTipCap: uint256.NewInt(1e9), GasFeeCap: uint256.NewInt(1e11),
		Gas: 200_000, To: from, Value: new(uint256.Int), AuthList: []types.SetCodeAuthorization{auth}})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.SendTransaction(ctx, tx); err != nil {
		t.Fatal(err)
	}
	if r, err := chain.WaitMined(ctx, c, tx.Hash(), 50*time.Millisecond); err != nil || r.Status != 1 {
		t.Fatalf("7702 upgrade: %v", err)
	}
}

// grant signs and adds a grant of the given rules, one delegation each.
func (ce *chainEnv) grant(t *testing.T, u *user, rules ...delegation.Rules) {
	t.Helper()
	key := common.HexToAddress(u.state(t).Account.SessionKey)
	dom := delegation.Domain{ChainID: ce.info.ChainID, Manager: common.HexToAddress(ce.info.DelegationManager)}
	var a protocol.GrantArgs
	for i, r := range rules {
		cs, err := r.Caveats(delegation.ParseEnforcers(ce.info.Enforcers))
		if err != nil {
			t.Fatal(err)
		}
		d := delegation.Delegation{Delegate: key, Delegator: u.w.Address(), Authority: delegation.RootAuthority, Caveats: cs,
			Salt: (*hexutil.Big)(big.NewInt(time.Now().UnixNano() + int64(i)))}
		sign(t, &d, u.w.Key, dom)
		b, _ := json.Marshal(d)
		a.Delegations = append(a.Delegations, b)
	}
	u.mustCmd(t, protocol.OpGrantAdd, a)
}

// waitIntent waits until the trigger's newest intent reaches an ended
// status and returns it.
func waitIntent(t *testing.T, u *user) protocol.Intent {
	t.Helper()
	var in protocol.Intent
	waitFor(t, "the intent to end", func() bool {
		st := u.state(t)
		if len(st.Intents) == 0 {
			return false
		}
		in = st.Intents[len(st.Intents)-1]
		switch in.Status {
		case protocol.IntentConfirmed, protocol.IntentReverted, protocol.IntentRefused, protocol.IntentFailed, protocol.IntentDone:
			return true
		}
		return false
	})
	return in
}

func actionOf(kind string, params any) protocol.Action {
	b, _ := json.Marshal(params)
	return protocol.Action{Kind: kind, Params: b}
}

// TestIntentSwapsOnTheDevChain: a trigger fires, its vault signs a swap
// under the owner's grant with its own session key, sends it, follows it
// to its confirmation, and the owner's balances move; each step is a diff.
// What the grant does not allow is refused before anything is signed,
// naming the rule, and so is a trigger that could never run.
func TestIntentSwapsOnTheDevChain(t *testing.T) {
	ce := newChainEnv(t)
	ctx := context.Background()
	ce.latest["X"] = 15
	u := ce.newUser()
	key := common.HexToAddress(u.state(t).Account.SessionKey)
	if err := ce.d.Fund(ctx, key, chain.Ether, nil); err != nil {
		t.Fatal(err)
	}
	if err := ce.d.Fund(ctx, u.w.Address(), chain.Ether, map[string]*big.Int{"dETH": chain.Units(10)}); err != nil {
		t.Fatal(err)
	}
	ce.upgrade(t, u.w.Key)
	dETH, dUSD, pool := ce.token("dETH"), ce.token("dUSD"), common.HexToAddress(ce.info.Pool.Address)
	swapOne := actionOf("swap", protocol.SwapParams{Sell: "dETH", Buy: "dUSD", Amount: "1"})

	// Without a grant, the trigger could never run: refused at creation.
	_, err := u.cmd(t, protocol.OpTriggerCreate, protocol.TriggerSpec{Name: "dip", Condition: below("X", 10), Action: swapOne})
	wantCode(t, err, protocol.CodeInvalidTrigger)
	if !strings.Contains(err.Error(), "could never run") {
		t.Fatalf("refusal %q", err)
	}

	ce.grant(t, u,
		delegation.Rules{Token: &delegation.TokenPeriod{Token: dETH, Period: delegation.Period{Amount: chain.Units(2), Duration: 86400, Start: 1}}},
		delegation.Rules{Targets: []common.Address{pool}, Methods: []string{hexutil.Encode(swapSel)}, MaxCalls: 5})
	u.create(t, protocol.TriggerSpec{Name: "dip", Condition: below("X", 10), Action: swapOne, MaxFires: 0})
	ethBefore, usdBefore := ce.balance(t, dETH, u.w.Address()), ce.balance(t, dUSD, u.w.Address())
	ce.cross(t, u)
	in := waitIntent(t, u)
	if in.Status != protocol.IntentConfirmed || in.Tx == nil || in.Tx.Block == 0 || in.Tx.From != key.Hex() {
		t.Fatalf("intent %+v (tx %+v)", in, in.Tx)
	}
	if got := new(big.Int).Sub(ethBefore, ce.balance(t, dETH, u.w.Address())); got.Cmp(chain.Units(1)) != 0 {
		t.Fatalf("the owner's dETH fell by %s, want 1", got)
	}
	usdGot := new(big.Int).Sub(ce.balance(t, dUSD, u.w.Address()), usdBefore)
	if usdGot.Cmp(chain.Units(2000)) < 0 || usdGot.Cmp(chain.Units(2500)) > 0 {
		t.Fatalf("the owner got %s dUSD units for 1 dETH", usdGot)
	}
	r, err := ce.d.Client().TransactionReceipt(ctx, common.HexToHash(in.Tx.Hash))
	if err != nil || r.Status != 1 {
		t.Fatalf("the intent's transaction %s: %v", in.Tx.Hash, err)
	}
	// Every status was a diff the owner saw.
	seen := map[string]bool{}
	for len(u.sub.ch) > 0 {
		f, _ := protocol.DecodeServerFrame(<-u.sub.ch)
		for _, c := range f.Changes {
			if c.Kind == protocol.KindIntent {
				var x protocol.Intent
				json.Unmarshal(c.Data, &x)
				seen[x.Status] = true
			}
		}
	}
	for _, s := range []string{protocol.IntentPending, protocol.IntentSigned, protocol.IntentSubmitted, protocol.IntentConfirmed} {
		if !seen[s] {
			t.Errorf("no diff showed the intent %s (saw %v)", s, seen)
		}
	}

	// The second swap uses the rest of the period's 2 dETH; the third is
	// refused by the vault before it signs anything, naming the rule.
	ce.cross(t, u)
	if in := waitIntent(t, u); in.Status != protocol.IntentConfirmed {
		t.Fatalf("second swap: %+v", in)
	}
	nonce, _ := ce.d.Client().NonceAt(ctx, key, nil)
	ce.cross(t, u)
	in = waitIntent(t, u)
	if in.Status != protocol.IntentRefused || !strings.Contains(in.Detail, "per period") || in.Tx != nil {
		t.Fatalf("third swap: %s %q", in.Status, in.Detail)
	}
	if n, _ := ce.d.Client().NonceAt(ctx, key, nil); n != nonce {
		t.Fatal("a refused intent sent a transaction")
	}
}

// funded signs in a new user, funds its session key (unless noGas) and
// its address, upgrades it and returns it with its session key.
func (ce *chainEnv) funded(t *testing.T, gas bool) (*user, common.Address) {
	t.Helper()
	ctx := context.Background()
	u := ce.newUser()
	key := common.HexToAddress(u.state(t).Account.SessionKey)
	if gas {
		if err := ce.d.Fund(ctx, key, chain.Ether, nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := ce.d.Fund(ctx, u.w.Address(), chain.Ether, map[string]*big.Int{"dETH": chain.Units(10), "dUSD": chain.Units(10_000)}); err != nil {
		t.Fatal(err)
	}
	ce.upgrade(t, u.w.Key)
	return u, key
}

// TestIntentFaults: a call that reverts is refused by the simulation, with
// its reason, and nothing is sent; a session key without gas money fails
// clearly once, not in a loop; and what the vault would refuse, the chain
// refuses too (the vault's check skipped).
func TestIntentFaults(t *testing.T) {
	ce := newChainEnv(t)
	ctx := context.Background()
	ce.latest["X"] = 15
	pool, dUSD := common.HexToAddress(ce.info.Pool.Address), ce.token("dUSD")
	stranger := common.HexToAddress("0x00000000000000000000000000000000000a11ce")

	t.Run("reverting call", func(t *testing.T) {
		u, key := ce.funded(t, true)
		ce.grant(t, u, delegation.Rules{Targets: []common.Address{pool}, Methods: []string{hexutil.Encode(swapSel)}})
		// A swap with nothing paid in: the pool reverts.
		data, _ := contracts.MustGet(contracts.ConstantProductPool).ABI.Pack("swap", ce.token("dETH"), big.NewInt(1), u.w.Address())
		u.create(t, protocol.TriggerSpec{Name: "bad call", Condition: below("X", 10),
			Action: actionOf("call", protocol.CallParams{Target: pool.Hex(), Data: hexutil.Encode(data)})})
		ce.cross(t, u)
		in := waitIntent(t, u)
		if in.Status != protocol.IntentFailed || !strings.Contains(in.Detail, "ConstantProductPool:no-input") || in.Tx != nil {
			t.Fatalf("a reverting call: %s %q", in.Status, in.Detail)
		}
		if n, _ := ce.d.Client().NonceAt(ctx, key, nil); n != 0 {
			t.Fatal("a call the simulation refused was sent")
		}
	})
	t.Run("no gas money", func(t *testing.T) {
		u, _ := ce.funded(t, false)
		ce.grant(t, u, delegation.Rules{Token: &delegation.TokenPeriod{Token: dUSD, Period: delegation.Period{Amount: chain.Units(100), Duration: 3600, Start: 1}}})
		u.create(t, protocol.TriggerSpec{Name: "pay", Condition: below("X", 10),
			Action: actionOf("transfer", protocol.TransferParams{Token: "dUSD", To: stranger.Hex(), Amount: "5"})})
		ce.cross(t, u)
		in := waitIntent(t, u)
		if in.Status != protocol.IntentFailed || !strings.Contains(in.Detail, "gas money") {
			t.Fatalf("no gas money: %s %q", in.Status, in.Detail)
		}
	})
	t.Run("the chain refuses what the vault would", func(t *testing.T) {
		u, key := ce.funded(t, true)
		ce.grant(t, u, delegation.Rules{Token: &delegation.TokenPeriod{Token: dUSD, Period: delegation.Period{Amount: chain.Units(100), Duration: 3600, Start: 1}}})
		u.create(t, protocol.TriggerSpec{Name: "pay", Condition: below("X", 10),
			Action: actionOf("transfer", protocol.TransferParams{Token: "dUSD", To: stranger.Hex(), Amount: "60"})})
		ce.cross(t, u) // 60 of the period's 100
		if in := waitIntent(t, u); in.Status != protocol.IntentConfirmed {
			t.Fatalf("first transfer: %s %q", in.Status, in.Detail)
		}
		ce.cross(t, u) // 120 > 100: the vault refuses
		if in := waitIntent(t, u); in.Status != protocol.IntentRefused || !strings.Contains(in.Detail, "per period") {
			t.Fatalf("second transfer: %s %q", in.Status, in.Detail)
		}
		skipPolicy = true
		defer func() { skipPolicy = false }()
		ce.cross(t, u) // the same, past the vault's check: the enforcer refuses
		in := waitIntent(t, u)
		if in.Status != protocol.IntentFailed || !strings.Contains(in.Detail, "ERC20PeriodTransferEnforcer") {
			t.Fatalf("past the vault's check: %s %q", in.Status, in.Detail)
		}
		if n, _ := ce.d.Client().NonceAt(ctx, key, nil); n != 1 {
			t.Fatalf("the session key sent %d transactions, want the first transfer only", n)
		}
	})
}

// TestIntentResentAfterACrash: a vault that stops after storing an
// intent's signed transaction and before sending it sends those same
// bytes when it opens again: one transaction, with the stored hash.
func TestIntentResentAfterACrash(t *testing.T) {
	ce := newChainEnv(t)
	ctx := context.Background()
	ce.latest["X"] = 15
	u, key := ce.funded(t, true)
	stranger := common.HexToAddress("0x00000000000000000000000000000000000a11ce")
	dUSD := ce.token("dUSD")
	ce.grant(t, u, delegation.Rules{Token: &delegation.TokenPeriod{Token: dUSD, Period: delegation.Period{Amount: chain.Units(100), Duration: 3600, Start: 1}}})
	u.create(t, protocol.TriggerSpec{Name: "pay", Condition: below("X", 10),
		Action: actionOf("transfer", protocol.TransferParams{Token: "dUSD", To: stranger.Hex(), Amount: "7"})})
	stopped := make(chan struct{})
	afterSign = func(v *Vault) bool {
		afterSign = nil
		v.end(errUnavailable) // the vault ends here, as in a crash
		close(stopped)
		return true
	}
	t.Cleanup(func() { afterSign = nil })
	ce.signal(t, u, "X", 15)
	ce.m.Signal("X", 5)
	<-stopped
	ce.restart()
	u = ce.signIn(u.w)
	in := waitIntent(t, u)
	if in.Status != protocol.IntentConfirmed || len(in.Tx.Hashes) != 1 || in.Tx.Hash != in.Tx.Hashes[0] {
		t.Fatalf("after the crash: %s %q %+v", in.Status, in.Detail, in.Tx)
	}
	if n, _ := ce.d.Client().NonceAt(ctx, key, nil); n != 1 {
		t.Fatalf("the session key sent %d transactions, want 1", n)
	}
	if got := ce.balance(t, dUSD, stranger); got.Cmp(chain.Units(7)) != 0 {
		t.Fatalf("the stranger holds %s", got)
	}
}
