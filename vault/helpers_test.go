package vault

import (
	"context"
	"encoding/json"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"go.uber.org/goleak"

	"github.com/spells-dev/spells/internal/clock"
	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/protocol/client"
	"github.com/spells-dev/spells/vault/actor"
	"github.com/spells-dev/spells/vault/exec"
	"github.com/spells-dev/spells/vault/keys"
)

const testDomain = "localhost:8080"

var t0 = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

// env is a Manager on a temp dir with a fake clock and a settable signal
// source.
type env struct {
	t      testing.TB
	dir    string
	clock  *clock.Fake
	nonces *protocol.NonceIssuer
	latest map[string]float64
	m      *Manager

	idleAfter time.Duration // default: long enough never to matter
	maxOpen   int
	evalKeep  int            // EvaluationsKeep; 0: the default
	log       zerolog.Logger // default: none
	chain     *protocol.ChainInfo
	client    exec.Chain // with chain: intents execute
	hooks     *Hooks     // the test hooks of the node, its vaults and their intents
	// confirmations of an intent's transaction; 0: the default
	confirmations int
	finality      int // 0: the chain's finalized block
	// restore reads a vault's copy from a backup; nil: the node has none
	restore func(ctx context.Context, vault string, a protocol.RestoreArgs, path string) (actor.RestorePoint, error)
}

func newEnv(t testing.TB) *env { return newEnvWith(t, nil) }

// newEnvWith is newEnv with set applied to the env before its manager
// starts (limits, initial signal values).
// testKEK is the key-encryption key of the tests' managers.
var testKEK = mustKEK("00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff")

func mustKEK(hex string) *keys.KEK {
	k, err := keys.ParseKEK(hex)
	if err != nil {
		panic(err)
	}
	return k
}

func newEnvWith(t testing.TB, set func(*env)) *env {
	t.Helper()
	e := &env{t: t, dir: t.TempDir(), clock: clock.NewFake(t0), latest: map[string]float64{}, hooks: &Hooks{Exec: &exec.Hooks{}, Actor: &actor.Hooks{}},
		nonces: protocol.NewNonceIssuer([]byte("test-node-key-0123456789abcdef!!"))}
	if set != nil {
		set(e)
	}
	e.start()
	return e
}

func (e *env) start() {
	e.t.Helper()
	m, err := NewManager(Config{Dir: e.dir, Domains: []string{testDomain}, ChainID: 1, Nonces: e.nonces, KEK: testKEK, Chain: e.chain, Client: e.client, PollEvery: 50 * time.Millisecond, BumpAfter: 400 * time.Millisecond, Confirmations: e.confirmations, Finality: e.finality, Clock: e.clock,
		Latest: func(s string) (float64, bool) { v, ok := e.latest[s]; return v, ok }, ChangeLogKeep: 50,
		EvaluationsKeep: e.evalKeep, IdleAfter: e.idleAfter, MaxOpen: e.maxOpen, Logger: e.log, Hooks: e.hooks, Restore: e.restore,
		AlertsAllowPrivate: true})
	if err != nil {
		e.t.Fatal(err)
	}
	if err := m.Start(context.Background()); err != nil {
		e.t.Fatal(err)
	}
	e.m = m
	e.t.Cleanup(func() { m.Close(context.Background()) })
}

// restart closes the manager and starts a new one on the same files.
func (e *env) restart() {
	e.t.Helper()
	e.m.Close(context.Background())
	e.start()
}

// sub collects frames sent to a subscriber.
type sub struct {
	ch   chan []byte
	full bool
	gone atomic.Bool // told by Gone that its vault ended under it
}

func (s *sub) Gone() { s.gone.Store(true) }

func newSub() *sub { return &sub{ch: make(chan []byte, 1000)} }

func (s *sub) Send(f []byte) bool {
	if s.full {
		return false
	}
	select {
	case s.ch <- f:
		return true
	default:
		return false
	}
}

// next waits for the next frame, failing after a deadline.
func (s *sub) next(t testing.TB) protocol.ServerFrame {
	t.Helper()
	select {
	case b := <-s.ch:
		f, err := protocol.DecodeServerFrame(b)
		if err != nil {
			t.Fatal(err)
		}
		return f
	case <-time.After(5 * time.Second):
		t.Fatal("no frame within 5s")
	}
	return protocol.ServerFrame{}
}

// nextOf skips frames until one of type typ arrives.
func (s *sub) nextOf(t testing.TB, typ string) protocol.ServerFrame {
	t.Helper()
	for {
		if f := s.next(t); f.Type == typ {
			return f
		}
	}
}

// user is a wallet signed in to its vault.
type user struct {
	w    *client.Wallet
	v    *actor.Vault
	sess *client.Session
	sub  *sub
}

func (e *env) params(w *client.Wallet, d *protocol.Delegate) client.SignInParams {
	return client.SignInParams{Domain: testDomain, Nonce: e.nonces.Issue(e.clock.Now()), IssuedAt: e.clock.Now(), Delegate: d}
}

// signIn signs w in with p (nonce is p.Nonce) and returns the error.
func (e *env) signInWith(w *client.Wallet, p client.SignInParams, s actor.Subscriber) (actor.Bound, error) {
	e.t.Helper()
	msg, sig, err := w.SignIn(p)
	if err != nil {
		e.t.Fatal(err)
	}
	return e.m.SignIn(context.Background(), SignInRequest{Message: msg, Signature: sig, Nonce: p.Nonce, Sub: s})
}

func (e *env) newUser() *user {
	e.t.Helper()
	w, err := client.NewWallet()
	if err != nil {
		e.t.Fatal(err)
	}
	return e.signIn(w)
}

func (e *env) signIn(w *client.Wallet) *user {
	e.t.Helper()
	d, _ := protocol.NewDelegate()
	s := newSub()
	b, err := e.signInWith(w, e.params(w, d), s)
	if err != nil {
		e.t.Fatalf("sign-in: %v", err)
	}
	if f := s.next(e.t); f.Type != protocol.TypeReady {
		e.t.Fatalf("first frame %s, want ready", f.Type)
	}
	if f := s.next(e.t); f.Type != protocol.TypeSnapshot {
		e.t.Fatalf("second frame %s, want snapshot", f.Type)
	}
	return &user{w: w, v: b.Vault, sub: s, sess: &client.Session{Vault: w.Address().Hex(), ID: b.Session, Delegate: d}}
}

// cmd sends a signed command and returns the ack or error.
func (u *user) cmd(t testing.TB, op string, args any) (protocol.Ack, error) {
	t.Helper()
	f, _, err := u.sess.SignCommand(op, args)
	if err != nil {
		t.Fatal(err)
	}
	return u.v.Command(context.Background(), u.sess.ID, f.Body, f.Sig)
}

func (u *user) mustCmd(t testing.TB, op string, args any) protocol.Ack {
	t.Helper()
	a, err := u.cmd(t, op, args)
	if err != nil {
		t.Fatalf("%s: %v", op, err)
	}
	return a
}

func (u *user) create(t testing.TB, spec protocol.TriggerSpec) string {
	t.Helper()
	a := u.mustCmd(t, protocol.OpTriggerCreate, spec)
	var res struct{ ID string }
	if err := json.Unmarshal(a.Result, &res); err != nil || res.ID == "" {
		t.Fatalf("create result %s: %v", a.Result, err)
	}
	return res.ID
}

func (u *user) state(t testing.TB) protocol.State {
	t.Helper()
	st, err := u.v.State(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return st
}

func wantCode(t testing.TB, err error, code protocol.Code) {
	t.Helper()
	if pe := protocol.AsError(err); pe == nil || pe.Code != code {
		t.Fatalf("err = %v, want code %s", err, code)
	}
}

func f64(v float64) *float64 { return &v }

func below(signal string, v float64) protocol.Condition {
	return protocol.Condition{Signal: signal, Op: protocol.OpBelow, Threshold: f64(v)}
}

func above(signal string, v float64) protocol.Condition {
	return protocol.Condition{Signal: signal, Op: protocol.OpAbove, Threshold: f64(v)}
}

var swap = protocol.Action{Kind: "swap", Params: json.RawMessage(`{"sell":"ETH","buy":"USDC","amount":"1"}`)}

// waitFor polls cond until it holds or a deadline passes.
func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	waitForWithin(t, what, 10*time.Second, cond) // a bound, for a CI machine running other packages' tests beside
}

// waitForWithin is waitFor with its own bound, for what takes many blocks.
func waitForWithin(t testing.TB, what string, within time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// diffWith waits for the next diff and returns its changes of kind.
func (s *sub) diffWith(t testing.TB, kind string) []protocol.Change {
	t.Helper()
	for {
		f := s.nextOf(t, protocol.TypeDiff)
		var out []protocol.Change
		for _, c := range f.Changes {
			if c.Kind == kind {
				out = append(out, c)
			}
		}
		if len(out) > 0 {
			return out
		}
	}
}

func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// go-ethereum starts the first once per process, with the first
		// chain; the second (its in-memory node database's) outlives a
		// closed dev chain.
		goleak.IgnoreTopFunction("github.com/ethereum/go-ethereum/core.(*txSenderCacher).cache"),
		goleak.IgnoreTopFunction("github.com/syndtr/goleveldb/leveldb.(*DB).mpoolDrain"))
}

// firedAndApplied reports whether the firings of hibernated vaults are all
// written to the firing journal and applied by their vaults.
func (e *env) firedAndApplied() bool {
	e.m.mu.Lock()
	defer e.m.mu.Unlock()
	return len(e.m.toJournal) == 0 && len(e.m.fired) == 0
}
