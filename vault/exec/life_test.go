package exec

import (
	"crypto/ecdsa"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"
	"zombiezen.com/go/sqlite"

	"github.com/spells-dev/spells/delegation"
	"github.com/spells-dev/spells/internal/clock"
	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/vault/store"
)

var t0 = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

// fakeVault is a vault file with nothing around it: its transactions,
// its owner and its session key.
type fakeVault struct {
	t      testing.TB
	conn   *sqlite.Conn
	clock  *clock.Fake
	owner  *ecdsa.PrivateKey
	key    *ecdsa.PrivateKey
	faults []error
}

func newFakeVault(t testing.TB, c *clock.Fake) *fakeVault {
	t.Helper()
	owner, _ := crypto.GenerateKey()
	key, _ := crypto.GenerateKey()
	p := filepath.Join(t.TempDir(), "v.db")
	if err := store.Create(p, func(c *sqlite.Conn) error { return store.InsertHead(c, crypto.PubkeyToAddress(owner.PublicKey), 1) }, nil); err != nil {
		t.Fatal(err)
	}
	conn, err := store.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return &fakeVault{t: t, conn: conn, clock: c, owner: owner, key: key}
}

func (f *fakeVault) Conn() *sqlite.Conn { return f.conn }

func (f *fakeVault) Write(fn func(t *store.Tx) error) (uint64, error) {
	t := &store.Tx{Now: f.clock.Now()}
	if err := store.InTx(f.conn, false, func() error { return fn(t) }); err != nil {
		return 0, err
	}
	t.Committed()
	return 0, nil
}

func (f *fakeVault) Fault(what string, err error) error {
	f.faults = append(f.faults, fmt.Errorf("%s: %w", what, err))
	return err
}

func (f *fakeVault) Owner() common.Address { return crypto.PubkeyToAddress(f.owner.PublicKey) }

func (f *fakeVault) Raise(*store.Tx, protocol.Alert) error { return nil }

func (f *fakeVault) SessionKey() (common.Address, bool) {
	return crypto.PubkeyToAddress(f.key.PublicKey), true
}

func (f *fakeVault) Sign(tx *types.Transaction) (*types.Transaction, error) {
	return types.SignTx(tx, types.LatestSignerForChainID(tx.ChainId()), f.key)
}

// testChain is a chain's description with made-up addresses: the runner
// only reads it here.
func testChain() *protocol.ChainInfo {
	enf := map[string]string{}
	for i, n := range []string{"AllowedTargetsEnforcer", "AllowedMethodsEnforcer", "ValueLteEnforcer", "LimitedCallsEnforcer",
		"TimestampEnforcer", "ERC20PeriodTransferEnforcer", "NativeTokenPeriodTransferEnforcer"} {
		enf[n] = common.BigToAddress(big.NewInt(int64(0xe0 + i))).Hex()
	}
	return &protocol.ChainInfo{ChainID: 1337, DelegationManager: common.BigToAddress(big.NewInt(0xd1)).Hex(), Enforcers: enf,
		Tokens: []protocol.Token{{Symbol: "dUSD", Address: common.BigToAddress(big.NewInt(0xa1)).Hex(), Decimals: 18}}}
}

var target = common.HexToAddress("0x00000000000000000000000000000000000b0b00")

// grant stores a grant that allows calls to target, checked as grant.add
// checks it.
func (f *fakeVault) grant(t testing.TB, c *protocol.ChainInfo, rules delegation.Rules) {
	t.Helper()
	dom := delegation.Domain{ChainID: c.ChainID, Manager: common.HexToAddress(c.DelegationManager)}
	key, _ := f.SessionKey()
	args, _, err := delegation.SignGrant(dom, delegation.ParseEnforcers(c.Enforcers), f.owner, key, 1, rules)
	if err != nil {
		t.Fatal(err)
	}
	g, err := CheckGrant(c, f.Owner(), key, true, args, f.clock.Now().UnixMilli())
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(args.Delegations)
	if err := store.InsertGrant(f.conn, g, body); err != nil {
		t.Fatal(err)
	}
}

// newRunner is a runner on a fake vault with an executor that is never
// started: its jobs queue, and the test plays the chain's answers.
func newRunner(t testing.TB) (*Runner, *fakeVault, *Config) {
	c := clock.NewFake(t0)
	v := newFakeVault(t, c)
	info := testChain()
	cfg := &Config{Chain: info, Confirmations: 2, BumpAfter: time.Minute, Clock: c, Metrics: NewMetrics(nil), Hooks: &Hooks{},
		Executor: NewExecutor(ExecutorConfig{Chain: nil, Info: info, Clock: c, Post: func(string, *Result) {}})}
	return NewRunner(cfg, v, "0xvault", zerolog.Nop()), v, cfg
}

func (f *fakeVault) intent(t testing.TB, id string) protocol.Intent {
	t.Helper()
	in, ok, err := store.LoadIntent(f.conn, id)
	if err != nil || !ok {
		t.Fatalf("intent %s: %v", id, err)
	}
	return in
}

// fire records a pending intent as a firing does and starts it.
func fire(t testing.TB, r *Runner, v *fakeVault, n int, action protocol.Action) protocol.Intent {
	t.Helper()
	in := protocol.Intent{ID: fmt.Sprintf("i_%d", n), TriggerID: "t", IdempotencyKey: fmt.Sprintf("t/%d", n), Action: action,
		Status: protocol.IntentPending, CreatedAt: v.clock.Now().UnixMilli()}
	if err := store.InsertIntent(v.conn, in); err != nil {
		t.Fatal(err)
	}
	r.Start(in)
	return in
}

var callB0b = protocol.Action{Kind: "call", Params: []byte(`{"target":"0x00000000000000000000000000000000000b0b00","data":"0x12345678"}`)}

// TestIntentLifeUnderRandomResults plays the chain's answers in random
// order, repeated, late and wrong, against intents, and checks after each
// one: the intent moved at most one step, by the table; an ended intent
// never moves again; the table was never asked for an illegal move; every
// transaction an intent signed has the one nonce it was given, and no two
// intents share a nonce.
func TestIntentLifeUnderRandomResults(t *testing.T) {
	for seed := uint64(1); seed <= 40; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) { randomLife(t, seed) })
	}
}

func randomLife(t *testing.T, seed uint64) {
	rnd := rand.New(rand.NewPCG(seed, 7))
	r, v, cfg := newRunner(t)
	// Fewer calls than intents, some seeds: the vault refuses the rest.
	v.grant(t, cfg.Chain, delegation.Rules{Targets: []common.Address{target}, MaxCalls: 1 + seed%4})
	const intents = 3
	var ids []string
	for i := 0; i < intents; i++ {
		ids = append(ids, fire(t, r, v, i, callB0b).ID)
	}
	transient := errors.New("dial tcp 127.0.0.1:8545: connect: connection refused")
	for n := 0; n < 300; n++ {
		id := ids[rnd.IntN(len(ids))]
		before := v.intent(t, id)
		res := &Result{Intent: id}
		switch rnd.IntN(6) {
		case 0:
			res.Kind = PrepareDone
			switch rnd.IntN(4) {
			case 0:
				res.Err = transient
			case 1:
				res.Err = errors.New("execution reverted: AllowedTargetsEnforcer:target-address-not-allowed")
			default:
				res.Prep = &Prepared{Data: []byte{1}, Gas: 100_000, Tip: big.NewInt(1e6), FeeCap: big.NewInt(3e9),
					ChainNonce: uint64(rnd.IntN(3)), Balance: big.NewInt(1e18)}
			}
		case 1:
			res.Kind = SendDone
			res.Hash = someHash(rnd, before)
			switch rnd.IntN(4) {
			case 0:
				res.Err = transient
			case 1:
				res.Err = errors.New("already known")
			}
		case 2, 3:
			res.Kind = ReceiptSeen
			res.Hash = someHash(rnd, before)
			res.Head = uint64(10 + rnd.IntN(10))
			res.Tip, res.BaseFee = big.NewInt(1e6), big.NewInt(1e9)
			if rnd.IntN(3) > 0 {
				st := types.ReceiptStatusSuccessful
				if rnd.IntN(5) == 0 {
					st, res.Reason = types.ReceiptStatusFailed, "execution reverted: no"
				}
				res.Receipt = &types.Receipt{Status: st, BlockNumber: big.NewInt(int64(10 + rnd.IntN(8))), GasUsed: 50_000}
			}
		case 4:
			res.Kind = RetryStep
		default:
			v.clock.Advance(time.Duration(rnd.IntN(90)) * time.Second)
			continue
		}
		r.On(res)
		after := v.intent(t, id)
		checkStep(t, before, after, res)
	}
	if len(v.faults) > 0 {
		t.Fatalf("faults: %v", v.faults)
	}
	if got := testutil.ToFloat64(cfg.Metrics.IllegalMoves); got != 0 {
		t.Fatalf("%v illegal moves", got)
	}
	nonces := map[uint64]string{}
	for _, id := range ids {
		in := v.intent(t, id)
		if in.Tx == nil {
			continue
		}
		for _, h := range in.Tx.Hashes {
			raw, _ := store.SignedTx(v.conn, h)
			tx := new(types.Transaction)
			if err := tx.UnmarshalBinary(raw); err != nil {
				t.Fatalf("intent %s: stored transaction %s: %v", id, h, err)
			}
			if tx.Nonce() != in.Tx.Nonce {
				t.Fatalf("intent %s signed nonce %d and %d", id, in.Tx.Nonce, tx.Nonce())
			}
		}
		if other, ok := nonces[in.Tx.Nonce]; ok {
			t.Fatalf("intents %s and %s share nonce %d", other, id, in.Tx.Nonce)
		}
		nonces[in.Tx.Nonce] = id
	}
}

// someHash is one of the intent's transactions' hashes, or a stranger's.
func someHash(rnd *rand.Rand, in protocol.Intent) common.Hash {
	if in.Tx == nil || rnd.IntN(8) == 0 {
		return common.BigToHash(big.NewInt(rnd.Int64()))
	}
	return common.HexToHash(in.Tx.Hashes[rnd.IntN(len(in.Tx.Hashes))])
}

func checkStep(t *testing.T, before, after protocol.Intent, res *Result) {
	t.Helper()
	from, ok1 := ParseStatus(before.Status)
	to, ok2 := ParseStatus(after.Status)
	if !ok1 || !ok2 {
		t.Fatalf("statuses %q → %q", before.Status, after.Status)
	}
	if from == to {
		if from.Ended() && after.UpdatedAt != before.UpdatedAt {
			t.Fatalf("ended intent %s was written again after %+v", after.ID, res)
		}
		return
	}
	for step := Step(0); step < numSteps; step++ {
		if got, ok := Move(from, step); ok && got == to {
			return
		}
	}
	t.Fatalf("intent %s moved %s → %s on %+v: not in the table", after.ID, from, to, res)
}
