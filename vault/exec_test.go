package vault

import (
	"context"
	"crypto/ecdsa"
	"encoding/json"
	"errors"
	"math/big"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum"
	"github.com/ethereum/go-ethereum/accounts/abi"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/rpc"

	"github.com/spells-dev/spells/chain"
	"github.com/spells-dev/spells/contracts"
	"github.com/spells-dev/spells/delegation"
	"github.com/spells-dev/spells/internal/clock"
	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/protocol/client"
	"github.com/spells-dev/spells/vault/exec"
)

// chainEnv is a manager executing on a dev chain of its own, which makes
// a block every 100 ms while the test runs.
type chainEnv struct {
	*env
	d       *chain.Dev
	info    protocol.ChainInfo
	pause   atomic.Bool             // no blocks while set
	granted []delegation.Delegation // payTrigger's
}

func newChainEnv(t *testing.T) *chainEnv { return newChainEnvWith(t, nil) }

// newChainEnvWith is newChainEnv with the vaults' chain wrapped by wrap
// and the env changed by set.
func newChainEnvWith(t *testing.T, wrap func(exec.Chain) exec.Chain, set ...func(*env)) *chainEnv {
	t.Helper()
	return newChainEnvPrepared(t, wrap, nil, set...)
}

// newChainEnvPrepared is newChainEnvWith with prepare run on the chain,
// and the chain's description the vaults will use, before they start.
func newChainEnvPrepared(t *testing.T, wrap func(exec.Chain) exec.Chain, prepare func(*chain.Dev, *protocol.ChainInfo), set ...func(*env)) *chainEnv {
	t.Helper()
	d, err := chain.StartDev(context.Background(), chain.DevConfig{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	stop := make(chan struct{})
	done := make(chan struct{})
	ce := &chainEnv{d: d, info: d.Info()}
	go func() {
		defer close(done)
		for {
			select {
			case <-stop:
				return
			case <-time.After(100 * time.Millisecond):
				if !ce.pause.Load() {
					d.Mine()
				}
			}
		}
	}()
	if prepare != nil {
		prepare(d, &ce.info)
	}
	ce.env = newEnvWith(t, func(e *env) {
		e.clock = clock.NewFake(time.Now())
		e.chain, e.client = &ce.info, d.Client()
		if wrap != nil {
			e.client = wrap(d.Client())
		}
		for _, f := range set {
			f(e)
		}
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
	if err := delegation.Upgrade(context.Background(), ce.d.Client(), owner, common.HexToAddress(ce.info.DeleGator), nil); err != nil {
		t.Fatal(err)
	}
}

// grant signs and adds a grant of the given rules, one delegation each,
// and returns the delegations.
func (ce *chainEnv) grant(t *testing.T, u *user, rules ...delegation.Rules) []delegation.Delegation {
	t.Helper()
	key := common.HexToAddress(u.state(t).Account.SessionKey)
	dom := delegation.Domain{ChainID: ce.info.ChainID, Manager: common.HexToAddress(ce.info.DelegationManager)}
	a, ds, err := delegation.SignGrant(dom, delegation.ParseEnforcers(ce.info.Enforcers), u.w.Key, key, time.Now().UnixNano(), rules...)
	if err != nil {
		t.Fatal(err)
	}
	u.mustCmd(t, protocol.OpGrantAdd, a)
	return ds
}

// confirmed reports whether an intent's status says its transaction
// happened: confirmed, or final already (a block can be both deep enough
// and finalized at once).
func confirmed(status string) bool {
	return status == protocol.IntentConfirmed || status == protocol.IntentFinal
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
		case protocol.IntentConfirmed, protocol.IntentFinal, protocol.IntentReverted, protocol.IntentRefused, protocol.IntentFailed, protocol.IntentDone:
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

// ownGrant asks the vault for the delegation spec's own grant would be,
// signs it as the owner, and returns spec carrying it.
func (ce *chainEnv) ownGrant(t *testing.T, u *user, spec protocol.TriggerSpec) protocol.TriggerSpec {
	t.Helper()
	a := u.mustCmd(t, protocol.OpTriggerGrant, spec)
	var g protocol.TriggerGrant
	if err := json.Unmarshal(a.Result, &g); err != nil {
		t.Fatal(err)
	}
	dom := delegation.Domain{ChainID: ce.info.ChainID, Manager: common.HexToAddress(ce.info.DelegationManager)}
	d, err := delegation.SignTriggerGrant(dom, u.w.Key, g)
	if err != nil {
		t.Fatal(err)
	}
	spec.Delegation = d
	return spec
}

// routerRules is a standing grant that lets the vault approve the router
// for token and swap through it, calls times in all.
func (ce *chainEnv) routerRules(token common.Address, calls uint64) delegation.Rules {
	r := contracts.MustGet(contracts.DemoRouter).ABI.Methods["swapExactTokensForTokens"].ID
	a := contracts.MustGet(contracts.DemoToken).ABI.Methods["approve"].ID
	return delegation.Rules{Targets: []common.Address{token, common.HexToAddress(ce.info.Router)},
		Methods: []string{hexutil.Encode(a), hexutil.Encode(r)}, MaxCalls: calls}
}

// TestIntentSwapsOnTheDevChain: a trigger created with its own grant
// fires, its vault signs the swap the grant pins with its own session
// key, sends it, follows it to its confirmation, and the owner's balances
// move; each step is a diff. The trigger fires as many times as signed.
// A trigger that no grant allows is refused at creation, and so is an
// edit that changes what its grant pins without a new signature.
func TestIntentSwapsOnTheDevChain(t *testing.T) {
	ce := newChainEnv(t)
	ctx := context.Background()
	ce.latest["X"] = 15
	u, key := ce.funded(t, true)
	dETH, dUSD := ce.token("dETH"), ce.token("dUSD")
	swapOne := actionOf("swap", protocol.SwapParams{Sell: "dETH", Buy: "dUSD", Amount: "1", MinOut: "2000"})

	// Without a grant, the trigger could never run: refused at creation.
	_, err := u.cmd(t, protocol.OpTriggerCreate, protocol.TriggerSpec{Name: "dip", Condition: below("X", 10), Action: swapOne})
	wantCode(t, err, protocol.CodeInvalidTrigger)
	if !strings.Contains(err.Error(), "could never run") {
		t.Fatalf("refusal %q", err)
	}
	// A trigger's own grant needs the bounds the chain enforces.
	_, err = u.cmd(t, protocol.OpTriggerGrant, protocol.TriggerSpec{Name: "dip", Condition: below("X", 10), Action: swapOne})
	if err == nil || !strings.Contains(err.Error(), "needs expiresAt") {
		t.Fatalf("a grant without an expiry: %v", err)
	}
	expires := ce.clock.Now().Add(time.Hour).UnixMilli()
	spec := ce.ownGrant(t, u, protocol.TriggerSpec{Name: "dip", Condition: below("X", 10), Action: swapOne, MaxFires: 2, ExpiresAt: expires})
	id := u.create(t, spec)
	st := u.state(t)
	tr := st.Triggers[0]
	if tr.Grant == "" || len(tr.Delegation) != 0 {
		t.Fatalf("the trigger as stored: grant %q, delegation %s", tr.Grant, tr.Delegation)
	}
	if len(st.Grants) != 1 || st.Grants[0].Trigger != id || st.Grants[0].ID != tr.Grant {
		t.Fatalf("grants %+v", st.Grants)
	}
	ethBefore, usdBefore := ce.balance(t, dETH, u.w.Address()), ce.balance(t, dUSD, u.w.Address())
	ce.cross(t, u)
	in := waitIntent(t, u)
	if !confirmed(in.Status) || in.Tx == nil || in.Tx.Block == 0 || in.Tx.From != key.Hex() || in.Grant != tr.Grant {
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
	for _, s := range []string{protocol.IntentPending, protocol.IntentSigned, protocol.IntentSubmitted} {
		if !seen[s] {
			t.Errorf("no diff showed the intent %s (saw %v)", s, seen)
		}
	}
	if !seen[protocol.IntentConfirmed] && !seen[protocol.IntentFinal] {
		t.Errorf("no diff showed the intent confirmed (saw %v)", seen)
	}

	// An edit that changes the amount without a new signature is
	// refused; one that changes only the name keeps the grant.
	moreSpec := protocol.TriggerSpec{Name: "dip", Condition: below("X", 10), MaxFires: 2, ExpiresAt: expires,
		Action: actionOf("swap", protocol.SwapParams{Sell: "dETH", Buy: "dUSD", Amount: "2", MinOut: "2000"})}
	_, err = u.cmd(t, protocol.OpTriggerUpdate, protocol.UpdateArgs{ID: id, Spec: moreSpec})
	wantCode(t, err, protocol.CodeInvalidGrant)
	if !strings.Contains(err.Error(), "sign a new delegation") {
		t.Fatalf("an edit of a pinned bound: %v", err)
	}
	// Another trigger's signature does not fit this one.
	_, err = u.cmd(t, protocol.OpTriggerUpdate, protocol.UpdateArgs{ID: id, Spec: protocol.TriggerSpec{Name: "dip", Condition: below("X", 10),
		Action: moreSpec.Action, MaxFires: 2, ExpiresAt: expires, Delegation: spec.Delegation}})
	wantCode(t, err, protocol.CodeInvalidGrant)
	if !strings.Contains(err.Error(), "does not pin this trigger") {
		t.Fatalf("another trigger's delegation: %v", err)
	}
	renamed := spec
	renamed.Name, renamed.Delegation = "dip again", nil
	u.mustCmd(t, protocol.OpTriggerUpdate, protocol.UpdateArgs{ID: id, Spec: renamed})
	if g := u.state(t).Triggers[0].Grant; g != tr.Grant {
		t.Fatalf("a rename changed the grant from %s to %s", tr.Grant, g)
	}

	// The second fire uses the grant's last redemption. The edit started
	// the trigger's count of fires again, not the grant's: a third fire
	// is refused by the vault before it signs, naming the rule.
	ce.cross(t, u)
	if in := waitIntent(t, u); !confirmed(in.Status) {
		t.Fatalf("second swap: %+v", in)
	}
	nonce, _ := ce.d.Client().NonceAt(ctx, key, nil)
	ce.cross(t, u)
	if in := waitIntent(t, u); in.Status != protocol.IntentRefused || !strings.Contains(in.Detail, "calls: all 2 used") {
		t.Fatalf("third swap: %s %q", in.Status, in.Detail)
	}
	if n, _ := ce.d.Client().NonceAt(ctx, key, nil); n != nonce {
		t.Fatal("a refused intent sent a transaction")
	}

	// Deleting the trigger revokes its grant.
	u.mustCmd(t, protocol.OpTriggerDelete, protocol.IDArgs{ID: id})
	if g := u.state(t).Grants[0]; g.Status != protocol.GrantRevoked {
		t.Fatalf("after the delete the trigger's grant is %s", g.Status)
	}
}

// TestStandingGrantSwaps: a swap without its own grant runs under a
// standing grant that allows approving and calling the router, within its
// call limit; then the vault refuses it before signing, naming the rule.
func TestStandingGrantSwaps(t *testing.T) {
	ce := newChainEnv(t)
	ctx := context.Background()
	ce.latest["X"] = 15
	u, key := ce.funded(t, true)
	ce.grant(t, u, ce.routerRules(ce.token("dETH"), 4))
	u.create(t, protocol.TriggerSpec{Name: "dip", Condition: below("X", 10), Action: actionOf("swap", protocol.SwapParams{Sell: "dETH", Buy: "dUSD", Amount: "1"})})
	for i := 0; i < 2; i++ {
		ce.cross(t, u)
		if in := waitIntent(t, u); !confirmed(in.Status) || in.Grant != "" {
			t.Fatalf("swap %d: %+v", i+1, in)
		}
	}
	nonce, _ := ce.d.Client().NonceAt(ctx, key, nil)
	ce.cross(t, u)
	in := waitIntent(t, u)
	if in.Status != protocol.IntentRefused || !strings.Contains(in.Detail, "calls: all 4 used") || in.Tx != nil {
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
		ce.grant(t, u, delegation.Rules{Targets: []common.Address{pool}, Methods: []string{hexutil.Encode(contracts.MustGet(contracts.ConstantProductPool).ABI.Methods["swap"].ID)}})
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
		if in := waitIntent(t, u); !confirmed(in.Status) {
			t.Fatalf("first transfer: %s %q", in.Status, in.Detail)
		}
		ce.cross(t, u) // 120 > 100: the vault refuses
		if in := waitIntent(t, u); in.Status != protocol.IntentRefused || !strings.Contains(in.Detail, "per period") {
			t.Fatalf("second transfer: %s %q", in.Status, in.Detail)
		}
		ce.hooks.Exec.SkipPolicy.Store(true)
		defer ce.hooks.Exec.SkipPolicy.Store(false)
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
	stop := func() bool {
		ce.hooks.Exec.AfterSign.Store(nil)
		close(stopped) // the intent stops here, as in a crash
		return true
	}
	ce.hooks.Exec.AfterSign.Store(&stop)
	ce.signal(t, u, "X", 15)
	ce.m.Signal("X", 5)
	<-stopped
	ce.restart()
	u = ce.signIn(u.w)
	in := waitIntent(t, u)
	if !confirmed(in.Status) || len(in.Tx.Hashes) != 1 || in.Tx.Hash != in.Tx.Hashes[0] {
		t.Fatalf("after the crash: %s %q %+v", in.Status, in.Detail, in.Tx)
	}
	if n, _ := ce.d.Client().NonceAt(ctx, key, nil); n != 1 {
		t.Fatalf("the session key sent %d transactions, want 1", n)
	}
	if got := ce.balance(t, dUSD, stranger); got.Cmp(chain.Units(7)) != 0 {
		t.Fatalf("the stranger holds %s", got)
	}
}

// flaky is a chain whose calls fail, as a node that is down does, while
// down is set.
type flaky struct {
	exec.Chain
	down  atomic.Bool
	tries atomic.Int32
}

var errDown = errors.New("dial tcp 127.0.0.1:8545: connect: connection refused")

func (f *flaky) EstimateGas(ctx context.Context, call ethereum.CallMsg) (uint64, error) {
	if f.down.Load() {
		f.tries.Add(1)
		return 0, errDown
	}
	return f.Chain.EstimateGas(ctx, call)
}

func (f *flaky) SendTransaction(ctx context.Context, tx *types.Transaction) error {
	if f.down.Load() {
		f.tries.Add(1)
		return errDown
	}
	return f.Chain.SendTransaction(ctx, tx)
}

func (f *flaky) TransactionByHash(ctx context.Context, h common.Hash) (*types.Transaction, bool, error) {
	return f.Chain.(interface {
		TransactionByHash(context.Context, common.Hash) (*types.Transaction, bool, error)
	}).TransactionByHash(ctx, h)
}

// payTrigger grants a period allowance of dUSD and creates a trigger that
// pays amount of it to a stranger.
func (ce *chainEnv) payTrigger(t *testing.T, u *user, amount string) common.Address {
	t.Helper()
	stranger := common.BytesToAddress(crypto.Keccak256([]byte(u.w.Address().Hex()))[:20])
	ce.granted = ce.grant(t, u, delegation.Rules{Token: &delegation.TokenPeriod{Token: ce.token("dUSD"),
		Period: delegation.Period{Amount: chain.Units(1000), Duration: 3600, Start: 1}}})
	u.create(t, protocol.TriggerSpec{Name: "pay", Condition: below("X", 10),
		Action: actionOf("transfer", protocol.TransferParams{Token: "dUSD", To: stranger.Hex(), Amount: amount})})
	return stranger
}

// TestIntentWaitsOutAChainThatIsDown: while the chain's node does not
// answer, the intent waits and tries again with backoff; once it answers,
// one transaction is sent and confirmed.
func TestIntentWaitsOutAChainThatIsDown(t *testing.T) {
	var f *flaky
	ce := newChainEnvWith(t, func(c exec.Chain) exec.Chain { f = &flaky{Chain: c}; return f })
	ce.latest["X"] = 15
	u, key := ce.funded(t, true)
	stranger := ce.payTrigger(t, u, "3")
	f.down.Store(true)
	ce.cross(t, u)
	// Each try waits out its backoff on the vault's clock.
	waitFor(t, "a few tries", func() bool { ce.clock.Advance(time.Minute); return f.tries.Load() >= 3 })
	if st := u.state(t); st.Intents[len(st.Intents)-1].Status != protocol.IntentPending {
		t.Fatalf("while the chain is down the intent is %s", st.Intents[len(st.Intents)-1].Status)
	}
	f.down.Store(false)
	// The next try comes after its backoff on the vault's clock.
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
				ce.clock.Advance(time.Minute)
			}
		}
	}()
	if in := waitIntent(t, u); !confirmed(in.Status) {
		t.Fatalf("after the chain came back: %s %q", in.Status, in.Detail)
	}
	if n, _ := ce.d.Client().NonceAt(context.Background(), key, nil); n != 1 {
		t.Fatalf("%d transactions sent, want 1", n)
	}
	if got := ce.balance(t, ce.token("dUSD"), stranger); got.Cmp(chain.Units(3)) != 0 {
		t.Fatalf("the stranger holds %s", got)
	}
}

// TestStuckIntentIsReplaced: a transaction no block takes (its tip below
// what the chain mines) is replaced after BumpAfter with the same nonce
// and higher fees; every hash is recorded and one transaction is mined.
func TestStuckIntentIsReplaced(t *testing.T) {
	ce := newChainEnv(t)
	ce.latest["X"] = 15
	u, key := ce.funded(t, true)
	ce.payTrigger(t, u, "2")
	low := func(p *exec.Prepared) { p.Tip = big.NewInt(1) }
	ce.hooks.Exec.Price.Store(&low)
	ce.cross(t, u)
	waitFor(t, "the intent to be sent", func() bool {
		st := u.state(t)
		return len(st.Intents) > 0 && st.Intents[len(st.Intents)-1].Status == protocol.IntentSubmitted
	})
	if in := u.state(t).Intents[0]; len(in.Tx.Hashes) != 1 {
		t.Fatalf("replaced before BumpAfter passed on the vault's clock: %+v", in.Tx)
	}
	ce.clock.Advance(ce.m.cfg.BumpAfter) // no block took it within BumpAfter
	in := waitIntent(t, u)
	if !confirmed(in.Status) || len(in.Tx.Hashes) < 2 || in.Tx.Hash == in.Tx.Hashes[0] {
		t.Fatalf("a stuck intent: %s %q %+v", in.Status, in.Detail, in.Tx)
	}
	if n, _ := ce.d.Client().NonceAt(context.Background(), key, nil); n != 1 {
		t.Fatalf("%d transactions mined, want 1", n)
	}
	if tip, _ := new(big.Int).SetString(in.Tx.Tip, 10); tip.Cmp(big.NewInt(1)) <= 0 {
		t.Fatalf("the replacement's tip is %s", in.Tx.Tip)
	}
}

// TestIntentOfAHibernatedVaultCompletes: the watcher wakes a vault that
// hibernated while its transaction waited for a block, as an alarm does,
// and the intent is confirmed without the owner coming back.
func TestIntentOfAHibernatedVaultCompletes(t *testing.T) {
	ce := newChainEnvWith(t, nil, func(e *env) { e.idleAfter = time.Minute })
	ce.latest["X"] = 15
	u, _ := ce.funded(t, true)
	ce.payTrigger(t, u, "1")
	ce.pause.Store(true)
	ce.cross(t, u)
	waitFor(t, "the intent to be submitted", func() bool {
		st := u.state(t)
		return st.Intents[len(st.Intents)-1].Status == protocol.IntentSubmitted
	})
	ce.hibernateAll(t, u)
	ce.pause.Store(false)
	waitFor(t, "the watcher to wake the vault", func() bool { return ce.m.OpenVaults() > 0 })
	u = ce.signIn(u.w)
	in := waitIntent(t, u)
	if !confirmed(in.Status) {
		t.Fatalf("after hibernating: %s %q", in.Status, in.Detail)
	}
}

// TestIntentSurvivesAReorg: when the block holding an intent's transaction
// leaves the chain, the vault notices (its receipt is gone), sends the same
// transaction again, and confirms it in the new chain: paid once.
func TestIntentSurvivesAReorg(t *testing.T) {
	ce := newChainEnvWith(t, nil, func(e *env) { e.confirmations = 5 })
	ctx := context.Background()
	ce.latest["X"] = 15
	u, key := ce.funded(t, true)
	stranger := ce.payTrigger(t, u, "4")
	ce.cross(t, u)
	var block uint64
	waitFor(t, "the intent to be included", func() bool {
		st := u.state(t)
		in := st.Intents[len(st.Intents)-1]
		if in.Status == protocol.IntentIncluded {
			block = in.Tx.Block
			return true
		}
		return false
	})
	ce.pause.Store(true)
	parent, err := ce.d.Client().HeaderByNumber(ctx, new(big.Int).SetUint64(block-1))
	if err != nil {
		t.Fatal(err)
	}
	if err := ce.d.Fork(parent.Hash()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the vault to see its block go", func() bool {
		st := u.state(t)
		in := st.Intents[len(st.Intents)-1]
		return in.Status == protocol.IntentSubmitted && strings.Contains(in.Detail, "reorg")
	})
	ce.pause.Store(false)
	if in := waitIntent(t, u); !confirmed(in.Status) {
		t.Fatalf("after the reorg: %s %q", in.Status, in.Detail)
	}
	// Final once the chain's own finalized block holds it (-finality 0).
	var final protocol.Intent
	waitForWithin(t, "the intent to be final", 30*time.Second, func() bool { // the dev chain finalizes every 32 blocks
		in := u.state(t).Intents
		final = in[len(in)-1]
		return final.Status == protocol.IntentFinal
	})
	fin, err := ce.d.Client().HeaderByNumber(ctx, big.NewInt(int64(rpc.FinalizedBlockNumber)))
	if err != nil || fin.Number.Uint64() < final.Tx.Block {
		t.Fatalf("final at block %d, the chain's finalized block is %v (%v)", final.Tx.Block, fin, err)
	}
	if n, _ := ce.d.Client().NonceAt(ctx, key, nil); n != 1 {
		t.Fatalf("%d transactions, want 1", n)
	}
	if got := ce.balance(t, ce.token("dUSD"), stranger); got.Cmp(chain.Units(4)) != 0 {
		t.Fatalf("the stranger holds %s, want 4 dUSD", got)
	}
}

// TestADeepReorgTakesAConfirmedIntentBack: a vault follows a confirmed
// intent until its block is final; a reorg deeper than the confirmations
// takes it back to submitted and says so, the same transaction is sent
// again, and the intent is confirmed and then final in the new chain,
// paid once.
func TestADeepReorgTakesAConfirmedIntentBack(t *testing.T) {
	ce := newChainEnvWith(t, nil, func(e *env) { e.confirmations, e.finality = 2, 8 })
	ctx := context.Background()
	ce.latest["X"] = 15
	u, key := ce.funded(t, true)
	stranger := ce.payTrigger(t, u, "4")
	ce.cross(t, u)
	// Blocks by hand from its inclusion on: confirmed, and far from final.
	var block uint64
	waitFor(t, "the intent to be included", func() bool {
		in := u.state(t).Intents
		if last := in[len(in)-1]; last.Status == protocol.IntentIncluded || last.Status == protocol.IntentConfirmed {
			ce.pause.Store(true)
			block = last.Tx.Block
			return true
		}
		return false
	})
	waitFor(t, "the intent to be confirmed", func() bool {
		in := u.state(t).Intents
		if in[len(in)-1].Status == protocol.IntentConfirmed {
			return true
		}
		if head, _ := ce.d.Client().BlockNumber(ctx); head < block+1 {
			ce.d.Mine()
		}
		return false
	})
	if head, _ := ce.d.Client().BlockNumber(ctx); head >= block+7 {
		t.Fatalf("the chain is at %d, its block %d is almost final", head, block)
	}
	parent, err := ce.d.Client().HeaderByNumber(ctx, new(big.Int).SetUint64(block-1))
	if err != nil {
		t.Fatal(err)
	}
	if err := ce.d.Fork(parent.Hash()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the vault to see its confirmed block go", func() bool {
		in := u.state(t).Intents
		last := in[len(in)-1]
		return last.Status == protocol.IntentSubmitted && strings.Contains(last.Detail, "after it was confirmed")
	})
	ce.pause.Store(false)
	waitForWithin(t, "the intent to be final", 20*time.Second, func() bool {
		in := u.state(t).Intents
		return in[len(in)-1].Status == protocol.IntentFinal
	})
	if n, _ := ce.d.Client().NonceAt(ctx, key, nil); n != 1 {
		t.Fatalf("%d transactions, want 1", n)
	}
	if got := ce.balance(t, ce.token("dUSD"), stranger); got.Cmp(chain.Units(4)) != 0 {
		t.Fatalf("the stranger holds %s, want 4 dUSD", got)
	}
}

// TestPortfolioFollowsTheChain: a vault's dashboard gets the owner's and
// the session key's balances, and a new portfolio frame when a block
// changes them (after a swap), none when it does not.
func TestPortfolioFollowsTheChain(t *testing.T) {
	ce := newChainEnv(t)
	ce.latest["X"] = 15
	u, key := ce.funded(t, true)
	next := func(what string, cond func(protocol.ServerFrame) bool) protocol.ServerFrame {
		t.Helper()
		deadline := time.After(10 * time.Second)
		for {
			select {
			case b := <-u.sub.ch:
				f, err := protocol.DecodeServerFrame(b)
				if err != nil {
					t.Fatal(err)
				}
				if f.Type == protocol.TypePortfolio && cond(f) {
					return f
				}
			case <-deadline:
				t.Fatalf("no portfolio frame: %s", what)
			}
		}
	}
	f := next("the funded account", func(f protocol.ServerFrame) bool { return f.Account.Tokens["dETH"] == chain.Units(10).String() })
	if f.Account == nil || f.Account.Tokens["dETH"] != chain.Units(10).String() || f.Key == nil || f.Key.Address != key.Hex() {
		t.Fatalf("first portfolio: account %+v key %+v", f.Account, f.Key)
	}
	ce.grant(t, u, ce.routerRules(ce.token("dETH"), 0))
	u.create(t, protocol.TriggerSpec{Name: "dip", Condition: below("X", 10), Action: actionOf("swap", protocol.SwapParams{Sell: "dETH", Buy: "dUSD", Amount: "1"})})
	ce.cross(t, u)
	f = next("after the swap", func(f protocol.ServerFrame) bool { return f.Account.Tokens["dETH"] == chain.Units(9).String() })
	if f.Account.Tokens["dUSD"] == chain.Units(10_000).String() {
		t.Fatal("the dUSD balance did not move with the swap")
	}
	// Blocks that change nothing send nothing. (The session key paid gas
	// in the swap's block; its confirmation blocks change no balance.)
	waitIntent(t, u)
	for len(u.sub.ch) > 0 {
		<-u.sub.ch
	}
	start, _ := ce.d.Client().BlockNumber(context.Background())
	waitFor(t, "six more blocks", func() bool {
		n, _ := ce.d.Client().BlockNumber(context.Background())
		return n >= start+6
	})
	u.state(t) // the events of those blocks that reached the vault were handled
	for len(u.sub.ch) > 0 {
		if f, _ := protocol.DecodeServerFrame(<-u.sub.ch); f.Type == protocol.TypePortfolio {
			t.Fatalf("a portfolio frame at block %d, where nothing changed", f.Block)
		}
	}
}

// TestDisabledOnChain: a delegation its owner disabled on-chain
// (DelegationManager.disableDelegation, the owner's own transaction) is
// mirrored in the vault from the manager's event: its grant shows revoked,
// and the next firing is refused by the vault; nothing is sent.
func TestDisabledOnChain(t *testing.T) {
	ce := newChainEnv(t)
	ctx := context.Background()
	ce.latest["X"] = 15
	u, key := ce.funded(t, true)
	ce.payTrigger(t, u, "1")
	c := ce.d.Client()
	ce.disable(t, u, ce.granted[0])
	// The vault hears of it from the manager's event and revokes the
	// grant within a block or two; the dashboard sees the diff.
	waitFor(t, "the grant revoked in the vault", func() bool {
		gs := u.state(t).Grants
		return len(gs) == 1 && gs[0].Status == protocol.GrantRevoked
	})
	ce.cross(t, u)
	in := waitIntent(t, u)
	if in.Status != protocol.IntentRefused || !strings.Contains(in.Detail, "no active grant") {
		t.Fatalf("after disabling on-chain: %s %q", in.Status, in.Detail)
	}
	if n, _ := c.NonceAt(ctx, key, nil); n != 0 {
		t.Fatal("a transaction was sent for a disabled delegation")
	}
}

// disable sends the owner's DelegationManager.disableDelegation of d and
// waits until it is mined.
func (ce *chainEnv) disable(t *testing.T, u *user, d delegation.Delegation) {
	t.Helper()
	ctx := context.Background()
	mgr := common.HexToAddress(ce.info.DelegationManager)
	type abiCaveat struct {
		Enforcer common.Address
		Terms    []byte
		Args     []byte
	}
	type abiDelegation struct {
		Delegate, Delegator common.Address
		Authority           [32]byte
		Caveats             []abiCaveat
		Salt                *big.Int
		Signature           []byte
	}
	cs := make([]abiCaveat, len(d.Caveats))
	for i, c := range d.Caveats {
		cs[i] = abiCaveat{c.Enforcer, c.Terms, []byte{}}
	}
	data, err := contracts.MustGet(contracts.DelegationManager).ABI.Pack("disableDelegation",
		abiDelegation{d.Delegate, d.Delegator, d.Authority, cs, (*big.Int)(d.Salt), d.Signature})
	if err != nil {
		t.Fatal(err)
	}
	c := ce.d.Client()
	nonce, _ := c.PendingNonceAt(ctx, u.w.Address())
	tx, _ := types.SignNewTx(u.w.Key, types.LatestSignerForChainID(new(big.Int).SetUint64(c.ID())), &types.DynamicFeeTx{
		ChainID: new(big.Int).SetUint64(c.ID()), Nonce: nonce, GasTipCap: big.NewInt(1e9), GasFeeCap: big.NewInt(1e11), Gas: 300_000, To: &mgr, Data: data})
	if err := c.SendTransaction(ctx, tx); err != nil {
		t.Fatal(err)
	}
	if r, err := chain.WaitMined(ctx, c, tx.Hash(), 50*time.Millisecond); err != nil || r.Status != 1 {
		t.Fatalf("disableDelegation: %v", err)
	}
}

// TestDisabledWhileTheVaultMissedIt: a delegation disabled on-chain in
// blocks the vault's watcher never read (a node down for longer than it
// reads back) is still refused by the chain when the intent is simulated,
// naming the manager's error; nothing is sent.
func TestDisabledWhileTheVaultMissedIt(t *testing.T) {
	var blind *noLogs
	ce := newChainEnvWith(t, func(c exec.Chain) exec.Chain { blind = &noLogs{Chain: c}; return blind })
	ctx := context.Background()
	ce.latest["X"] = 15
	u, key := ce.funded(t, true)
	ce.payTrigger(t, u, "1")
	ce.disable(t, u, ce.granted[0])
	ce.cross(t, u)
	in := waitIntent(t, u)
	if in.Status != protocol.IntentFailed || !strings.Contains(in.Detail, "CannotUseADisabledDelegation") {
		t.Fatalf("after disabling on-chain: %s %q", in.Status, in.Detail)
	}
	if n, _ := ce.d.Client().NonceAt(ctx, key, nil); n != 0 {
		t.Fatal("a transaction was sent for a disabled delegation")
	}
}

// noLogs is a chain whose logs the watcher never sees.
type noLogs struct{ exec.Chain }

func (noLogs) FilterLogs(context.Context, ethereum.FilterQuery) ([]types.Log, error) { return nil, nil }

// TestContractAccountSignsIn: an owner that is a contract account signs
// in: before it is deployed with an ERC-6492 signature (its factory and
// the deployment's calldata around its owner key's signature), after with
// ERC-1271. A signature its isValidSignature refuses is bad_signature.
func TestContractAccountSignsIn(t *testing.T) {
	ce := newChainEnv(t)
	ctx := context.Background()
	factory, err := ce.d.Deploy(ctx, contracts.DemoAccountFactory)
	if err != nil {
		t.Fatal(err)
	}
	fabi := contracts.MustGet(contracts.DemoAccountFactory).ABI
	ownerKey, _ := crypto.GenerateKey()
	owner := crypto.PubkeyToAddress(ownerKey.PublicKey)
	var salt [32]byte
	q, _ := fabi.Pack("addressOf", owner, salt)
	out, err := ce.d.Client().CallContract(ctx, ethereum.CallMsg{To: &factory, Data: q}, nil)
	if err != nil {
		t.Fatal(err)
	}
	account := common.BytesToAddress(out)
	deployData, _ := fabi.Pack("deploy", owner, salt)

	signIn := func(signer *ecdsa.PrivateKey, wrap bool) error {
		w := &client.Wallet{Key: signer}
		d, _ := protocol.NewDelegate()
		p := ce.params(w, d)
		m := w.Message(p)
		m.Address = account
		text := m.String()
		sig, err := protocol.SignPersonal(signer, []byte(text))
		if err != nil {
			t.Fatal(err)
		}
		if wrap {
			args := abi.Arguments{{Type: mustType("address")}, {Type: mustType("bytes")}, {Type: mustType("bytes")}}
			packed, err := args.Pack(factory, deployData, sig)
			if err != nil {
				t.Fatal(err)
			}
			sig = append(packed, erc6492Suffix...)
		}
		b, err := ce.m.SignIn(ctx, SignInRequest{Message: text, Signature: hexutil.Encode(sig), Nonce: p.Nonce, Sub: newSub()})
		if err == nil && b.Vault.Address() != account {
			t.Fatalf("signed in to %s, not the account %s", b.Vault.Address().Hex(), account.Hex())
		}
		return err
	}
	stranger, _ := crypto.GenerateKey()
	wantCode(t, signIn(stranger, true), protocol.CodeBadSignature)
	wantCode(t, signIn(ownerKey, false), protocol.CodeBadSignature) // not deployed, not wrapped
	if err := signIn(ownerKey, true); err != nil {
		t.Fatalf("ERC-6492 sign-in of an account not deployed: %v", err)
	}
	if code, _ := ce.d.Client().CodeAt(ctx, account, nil); len(code) != 0 {
		t.Fatal("the check deployed the account for real; it deploys inside the call only")
	}
	// Deployed: ERC-1271.
	key, _ := crypto.GenerateKey()
	if err := ce.d.Fund(ctx, crypto.PubkeyToAddress(key.PublicKey), chain.Ether, nil); err != nil {
		t.Fatal(err)
	}
	c := ce.d.Client()
	nonce, _ := c.PendingNonceAt(ctx, crypto.PubkeyToAddress(key.PublicKey))
	tx, _ := types.SignNewTx(key, types.LatestSignerForChainID(new(big.Int).SetUint64(c.ID())), &types.DynamicFeeTx{
		ChainID: new(big.Int).SetUint64(c.ID()), Nonce: nonce, GasTipCap: big.NewInt(1e9), GasFeeCap: big.NewInt(1e11), Gas: 2_000_000, To: &factory, Data: deployData})
	if err := c.SendTransaction(ctx, tx); err != nil {
		t.Fatal(err)
	}
	if r, err := chain.WaitMined(ctx, c, tx.Hash(), 50*time.Millisecond); err != nil || r.Status != 1 {
		t.Fatalf("deploy the account: %v", err)
	}
	if err := signIn(ownerKey, false); err != nil {
		t.Fatalf("ERC-1271 sign-in of the deployed account: %v", err)
	}
	wantCode(t, signIn(stranger, false), protocol.CodeBadSignature)
}

func mustType(s string) abi.Type {
	t, err := abi.NewType(s, "", nil)
	if err != nil {
		panic(err)
	}
	return t
}

// TestCaveatsRefusedByTheVault: each rule a grant sets is checked by the
// vault: an action no grant allows is refused when the trigger is made,
// naming the rule (another target, another method, more value than a
// call may carry); one that runs out of what the grant allows (its calls,
// its window not started yet) is refused when it fires, before anything
// is signed.
func TestCaveatsRefusedByTheVault(t *testing.T) {
	ce := newChainEnv(t)
	ce.latest["X"] = 15
	u, key := ce.funded(t, true)
	router := common.HexToAddress(ce.info.Router)
	later := uint64(time.Now().Unix() + 3600)
	swapping := ce.routerRules(ce.token("dETH"), 2)
	swapping.MaxValue = big.NewInt(0)
	ce.grant(t, u, swapping, delegation.Rules{Targets: []common.Address{ce.token("dUSD")}, NotBefore: later})
	call := func(target common.Address, data []byte, value string) protocol.Action {
		return actionOf("call", protocol.CallParams{Target: target.Hex(), Data: hexutil.Encode(data), Value: value})
	}
	swapData, _ := contracts.MustGet(contracts.DemoRouter).ABI.Pack("swapExactTokensForTokens", big.NewInt(1), big.NewInt(1),
		[]common.Address{ce.token("dETH"), ce.token("dUSD")}, u.w.Address(), big.NewInt(int64(later)))
	for name, c := range map[string]struct {
		a    protocol.Action
		rule string
	}{
		"another target": {call(stranger(u), swapData, "0"), "allowed targets"},
		"another method": {call(router, []byte{1, 2, 3, 4}, "0"), "allowed methods"},
		"too much value": {call(router, swapData, "5"), "value per call"},
	} {
		_, err := u.cmd(t, protocol.OpTriggerCreate, protocol.TriggerSpec{Name: name, Condition: below("X", 10), Action: c.a})
		wantCode(t, err, protocol.CodeInvalidTrigger)
		if !strings.Contains(err.Error(), c.rule) {
			t.Errorf("%s: refused as %q, want the rule %q", name, err, c.rule)
		}
	}
	// The grant allows one swap's two calls: the first swap uses them, the
	// second is refused by the vault, naming the rule.
	u.create(t, protocol.TriggerSpec{Name: "calls", Condition: below("X", 10),
		Action: actionOf("swap", protocol.SwapParams{Sell: "dETH", Buy: "dUSD", Amount: "0.1"})})
	ce.cross(t, u)
	if in := waitIntent(t, u); !confirmed(in.Status) {
		t.Fatalf("first swap: %s %q", in.Status, in.Detail)
	}
	ce.cross(t, u)
	if in := waitIntent(t, u); in.Status != protocol.IntentRefused || !strings.Contains(in.Detail, "calls: all 2 used") {
		t.Fatalf("second swap: %s %q", in.Status, in.Detail)
	}
	// A grant whose window starts later: the trigger is taken (it will run
	// then), and a firing before then is refused naming the window.
	u.create(t, protocol.TriggerSpec{Name: "later", Condition: below("Y", 10),
		Action: call(ce.token("dUSD"), nil, "0")})
	ce.signal(t, u, "Y", 15)
	ce.signal(t, u, "Y", 5)
	in := waitIntent(t, u)
	if in.Status != protocol.IntentRefused || !strings.Contains(in.Detail, "not valid before") {
		t.Fatalf("before the grant's window: %s %q", in.Status, in.Detail)
	}
	if n, _ := ce.d.Client().NonceAt(context.Background(), key, nil); n != 1 {
		t.Fatalf("%d transactions sent, want the first swap's only", n)
	}
}

func stranger(u *user) common.Address {
	return common.BytesToAddress(crypto.Keccak256([]byte("stranger of " + u.w.Address().Hex()))[:20])
}

// TestRevertInBlockIsRecorded: a swap the simulation allowed reverts in
// its block (a bigger trade before it moved the price past its slippage
// bound): the intent is reverted, with the pool's reason.
func TestRevertInBlockIsRecorded(t *testing.T) {
	ce := newChainEnv(t)
	ctx := context.Background()
	ce.latest["X"] = 15
	u, _ := ce.funded(t, true)
	pool, dUSD := common.HexToAddress(ce.info.Pool.Address), ce.token("dUSD")
	ce.grant(t, u, ce.routerRules(dUSD, 0))
	u.create(t, protocol.TriggerSpec{Name: "tight", Condition: below("X", 10),
		Action: actionOf("swap", protocol.SwapParams{Sell: "dUSD", Buy: "dETH", Amount: "100", SlippageBps: 10})})
	// A whale, funded and approved beforehand.
	whale, _ := crypto.GenerateKey()
	wa := crypto.PubkeyToAddress(whale.PublicKey)
	if err := ce.d.Fund(ctx, wa, chain.Ether, map[string]*big.Int{"dUSD": chain.Units(1_000_000)}); err != nil {
		t.Fatal(err)
	}
	c := ce.d.Client()
	send := func(to common.Address, data []byte, tip int64) {
		t.Helper()
		nonce, _ := c.PendingNonceAt(ctx, wa)
		tx, _ := types.SignNewTx(whale, types.LatestSignerForChainID(new(big.Int).SetUint64(c.ID())), &types.DynamicFeeTx{
			ChainID: new(big.Int).SetUint64(c.ID()), Nonce: nonce, GasTipCap: big.NewInt(tip), GasFeeCap: big.NewInt(tip * 2), Gas: 500_000, To: &to, Data: data})
		if err := c.SendTransaction(ctx, tx); err != nil {
			t.Fatal(err)
		}
	}
	erc20, pabi := contracts.MustGet(contracts.DemoToken).ABI, contracts.MustGet(contracts.ConstantProductPool).ABI
	approve, _ := erc20.Pack("approve", pool, chain.Units(1_000_000))
	send(dUSD, approve, 1e10)
	ce.d.Mine()
	ce.pause.Store(true)
	ce.cross(t, u)
	waitFor(t, "the swap to be submitted", func() bool {
		st := u.state(t)
		return st.Intents[len(st.Intents)-1].Status == protocol.IntentSubmitted
	})
	dump, _ := pabi.Pack("swapExactIn", dUSD, chain.Units(300_000), big.NewInt(0), wa)
	send(pool, dump, 1e11) // a higher tip: mined first
	ce.pause.Store(false)
	in := waitIntent(t, u)
	if in.Status != protocol.IntentReverted || !strings.Contains(in.Detail, "INSUFFICIENT_OUTPUT_AMOUNT") || in.Tx.Block == 0 {
		t.Fatalf("a swap that reverted in its block: %s %q", in.Status, in.Detail)
	}
}

// TestCallsPerPeriod: a limit of calls per period, made of one delegation
// per period (each valid only within it, each with its own call limit,
// here one swap's two calls): the second swap in a period is refused by the vault naming the rule, and
// the next period's delegation allows the next one, on the chain too.
func TestCallsPerPeriod(t *testing.T) {
	ce := newChainEnv(t)
	ctx := context.Background()
	ce.latest["X"] = 15
	u, _ := ce.funded(t, true)
	// The windows follow the chain's clock (the test's fast blocks run it
	// ahead of the wall's), and so does the vault's.
	head, err := ce.d.Client().HeaderByNumber(ctx, nil)
	if err != nil {
		t.Fatal(err)
	}
	const period = 3600
	start := head.Time
	ce.clock.Set(time.Unix(int64(start)+1, 0))
	ce.grant(t, u, delegation.CallsPerPeriod(ce.routerRules(ce.token("dETH"), 0), 2, period, start, 3)...)
	u.create(t, protocol.TriggerSpec{Name: "per period", Condition: below("X", 10),
		Action: actionOf("swap", protocol.SwapParams{Sell: "dETH", Buy: "dUSD", Amount: "0.1"})})
	ce.cross(t, u)
	if in := waitIntent(t, u); !confirmed(in.Status) {
		t.Fatalf("first swap: %s %q", in.Status, in.Detail)
	}
	ce.cross(t, u)
	if in := waitIntent(t, u); in.Status != protocol.IntentRefused || !strings.Contains(in.Detail, "calls: all 2 used") {
		t.Fatalf("second swap in the same period: %s %q", in.Status, in.Detail)
	}
	// The next period, on the chain's clock and the vault's.
	ce.pause.Store(true)
	if err := ce.d.AdjustTime(period * time.Second); err != nil {
		t.Fatal(err)
	}
	head, _ = ce.d.Client().HeaderByNumber(ctx, nil)
	if head.Time < start+period {
		t.Fatalf("the chain's time is %d, want past %d", head.Time, start+period)
	}
	ce.clock.Set(time.Unix(int64(head.Time)+1, 0))
	ce.pause.Store(false)
	ce.cross(t, u)
	if in := waitIntent(t, u); !confirmed(in.Status) {
		t.Fatalf("a swap in the next period: %s %q", in.Status, in.Detail)
	}
}
