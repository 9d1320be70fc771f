package vault

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"zombiezen.com/go/sqlite"
	"zombiezen.com/go/sqlite/sqlitex"

	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/protocol/client"
	"github.com/spells-dev/spells/vault/actor"
	"github.com/spells-dev/spells/vault/store"
)

// checkLife fails the test if the manager's bookkeeping disagrees with its
// instances.
func (e *env) checkLife(t testing.TB) {
	t.Helper()
	e.m.mu.Lock()
	err := e.m.checkLifeLocked()
	e.m.mu.Unlock()
	if err != nil {
		t.Fatalf("vault life: %v", err)
	}
	if n := testutil.ToFloat64(e.m.metrics.LifeErrors); n != 0 {
		t.Fatalf("%g transitions the vault life machine does not allow", n)
	}
}

// TestLifeInvariantUnderRandomOperations drives many vaults at a small
// MaxOpen through random sign-ins, commands, signals, alarms, detaches and
// idle time, from several goroutines at once, and checks the manager's
// counts, files and routing maps against its instances all along and at
// the end: every state change went through the one transition function.
func TestLifeInvariantUnderRandomOperations(t *testing.T) {
	e := newEnvWith(t, func(e *env) { e.maxOpen, e.idleAfter, e.latest["X"] = 3, time.Minute, 15 })
	var users []*user
	for i := 0; i < 12; i++ {
		u := e.newUser()
		u.create(t, protocol.TriggerSpec{Name: "x", Condition: below("X", 10), Action: swap})
		u.create(t, protocol.TriggerSpec{Name: "tick", Condition: protocol.Condition{AtMs: t0.Add(30 * time.Minute).UnixMilli()}, Action: swap})
		users = append(users, u)
	}
	var mu sync.Mutex // users' sessions and subscribers
	type attached struct {
		v *actor.Vault
		s *sub
	}
	var subs []attached
	for _, u := range users {
		subs = append(subs, attached{u.v, u.sub})
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for g := 0; g < 4; g++ {
		wg.Add(1)
		go func(seed uint64) {
			defer wg.Done()
			r := rand.New(rand.NewPCG(seed, 7))
			for i := 0; i < 150; i++ {
				mu.Lock()
				u := users[r.IntN(len(users))]
				switch r.IntN(6) {
				case 0:
					e.m.Signal("X", float64(5+10*r.IntN(2)))
				case 1:
					if _, err := u.cmd(t, protocol.OpTriggerList, struct{}{}); err != nil && protocol.AsError(err).Code != protocol.CodeUnavailable {
						t.Errorf("command: %v", err)
					}
				case 2:
					u.v.Detach(u.sub)
				case 3:
					d, _ := protocol.NewDelegate()
					u.sub = newSub()
					b, err := e.signInWith(u.w, e.params(u.w, d), u.sub)
					if err != nil {
						t.Errorf("sign-in: %v", err)
					} else {
						u.v, u.sess = b.Vault, &client.Session{Vault: u.w.Address().Hex(), ID: b.Session, Delegate: d}
						subs = append(subs, attached{b.Vault, u.sub})
					}
				case 4:
					e.clock.Advance(time.Duration(r.IntN(180)) * time.Second)
				case 5:
					e.checkLife(t)
				}
				mu.Unlock()
			}
		}(uint64(g))
	}
	go func() { wg.Wait(); close(stop) }()
	<-stop
	e.clock.Advance(5 * time.Minute)
	e.checkLife(t)
	for _, u := range users {
		u.v.Detach(u.sub)
	}
	for _, a := range subs {
		a.v.Detach(a.s)
	}
	e.clock.Advance(5 * time.Minute)
	waitFor(t, "every vault to hibernate", func() bool {
		e.clock.Advance(time.Minute)
		if e.m.OpenVaults() == 0 && e.m.FilesOpen() == 0 {
			return true
		}
		t.Log(e.lifeCounts())
		return false
	})
	e.checkLife(t)
	e.m.mu.Lock()
	defer e.m.mu.Unlock()
	if e.m.peak > 3+1 {
		t.Fatalf("files open peaked at %d with MaxOpen 3", e.m.peak)
	}
	if e.m.reserved != 0 || len(e.m.slotWaiters) != 0 {
		t.Fatalf("at rest: %d slots reserved, %d callers waiting", e.m.reserved, len(e.m.slotWaiters))
	}
}

// TestRefusedSignInsHoldNothing: sign-ins an outsider can send for free
// (garbage signatures, wrong domains, nonces this node never issued) for
// thousands of new addresses leave no instance, file or slot behind, so
// they can never fill MaxOpen; the next real sign-in is served at once.
func TestRefusedSignInsHoldNothing(t *testing.T) {
	e := newEnvWith(t, func(e *env) { e.maxOpen = 10 })
	for i := 0; i < 2000; i++ {
		w, _ := client.NewWallet()
		p := e.params(w, mustDelegate(t))
		msg, sig, _ := w.SignIn(p)
		switch i % 3 {
		case 0:
			sig = "0x" + fmt.Sprintf("%0130x", i)
		case 1: // a nonce this node did not issue: its tag is wrong
			last := "0"
			if p.Nonce[len(p.Nonce)-1] == '0' {
				last = "1"
			}
			p.Nonce = p.Nonce[:len(p.Nonce)-1] + last
			msg, sig, _ = w.SignIn(p)
		case 2:
			p.Domain = "evil.example"
			msg, sig, _ = w.SignIn(p)
		}
		if _, err := e.m.SignIn(context.Background(), SignInRequest{Message: msg, Signature: sig, Nonce: p.Nonce, Sub: newSub()}); err == nil {
			t.Fatal("a forged sign-in was accepted")
		}
	}
	if n, f := e.m.OpenVaults(), e.m.FilesOpen(); n != 0 || f != 0 {
		t.Fatalf("refused sign-ins left %d instances and %d files", n, f)
	}
	if files, _ := filepath.Glob(filepath.Join(e.dir, "vaults", "*", "*")); len(files) != 0 {
		t.Fatalf("refused sign-ins left files: %v", files)
	}
	e.checkLife(t)
	done := make(chan struct{})
	go func() { e.newUser(); close(done) }()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatal("a real sign-in was not served within 2s of the refused ones")
	}
}

// TestAbandonedSignInsCompleteAndHoldNothing: a first sign-in whose
// caller is gone (its context ended, as when the socket drops right after
// sending it) still runs to completion inside the vault: the vault's file
// appears whole or not at all, the instance does not linger, and the
// owner's next sign-in works.
func TestAbandonedSignInsCompleteAndHoldNothing(t *testing.T) {
	e := newEnvWith(t, func(e *env) { e.maxOpen, e.idleAfter = 4, time.Minute })
	var wallets []*client.Wallet
	for i := 0; i < 40; i++ {
		w, _ := client.NewWallet()
		wallets = append(wallets, w)
		p := e.params(w, mustDelegate(t))
		msg, sig, _ := w.SignIn(p)
		ctx, cancel := context.WithCancel(context.Background())
		if i%2 == 0 {
			cancel() // gone before the vault even took the letter
		} else {
			go cancel()
		}
		s := newSub()
		if b, err := e.m.SignIn(ctx, SignInRequest{Message: msg, Signature: sig, Nonce: p.Nonce, Sub: s}); err == nil {
			b.Vault.Detach(s) // as the hub does when the socket is gone
		}
		cancel()
		e.checkLife(t)
	}
	e.clock.Advance(3 * time.Minute)
	waitFor(t, "the abandoned sign-ins' vaults to hibernate", func() bool {
		e.clock.Advance(time.Minute)
		return e.m.OpenVaults() == 0
	})
	e.checkLife(t)
	e.restart() // every file it finds must be a whole vault
	if n := e.m.Quarantined(); n != 0 {
		t.Fatalf("%d half-made vaults quarantined", n)
	}
	for _, w := range wallets {
		e.signIn(w)
	}
}

// TestInterruptedCreationLeavesNoVault: a creation that fails half way (a
// full disk here; a crash leaves the same temporary file) leaves no file
// in the vault's place, the sign-in is refused with storage_full (retry),
// and the next attempt creates the vault.
func TestInterruptedCreationLeavesNoVault(t *testing.T) {
	e := newEnv(t)
	w, _ := client.NewWallet()
	fault := func(tmp string) error {
		if _, err := os.Stat(tmp); err != nil {
			t.Errorf("the fault ran before the temporary file was written: %v", err)
		}
		return &os.PathError{Op: "write", Path: tmp, Err: syscall.ENOSPC}
	}
	e.hooks.Actor.CreateFault.Store(&fault)
	t.Cleanup(func() { e.hooks.Actor.CreateFault.Store(nil) })
	_, err := e.signInWith(w, e.params(w, mustDelegate(t)), newSub())
	wantCode(t, err, protocol.CodeStorageFull)
	left, _ := filepath.Glob(filepath.Join(e.dir, "vaults", "*", "*"))
	if len(left) != 0 {
		t.Fatalf("a failed creation left %v", left)
	}
	if !e.m.StorageFull() {
		t.Fatal("the full disk was not reported")
	}
	e.checkLife(t)
	e.hooks.Actor.CreateFault.Store(nil)
	// What a crash in the middle leaves: a temporary file, removed at start.
	p := actor.Path(e.dir, actor.ID(w.Address()))
	must(t, os.MkdirAll(filepath.Dir(p), 0o700))
	must(t, os.WriteFile(p+store.NewSuffix, []byte("half a vault"), 0o600))
	e.restart()
	if _, err := os.Stat(p + store.NewSuffix); !os.IsNotExist(err) {
		t.Fatalf("the start did not remove the unfinished creation: %v", err)
	}
	if u := e.signIn(w); u.state(t).Owner != w.Address().Hex() {
		t.Fatal("the vault created after the failure is not the signer's")
	}
}

// TestResumeAheadOfTheVaultIsRefused: a client that holds a version the
// vault no longer has (it lost acknowledged changes) is told so with
// vault_rolled_back, never handed a quiet snapshot; the same socket's
// nonce then resumes without since.
func TestResumeAheadOfTheVaultIsRefused(t *testing.T) {
	e := newEnv(t)
	u := e.newUser()
	u.create(t, protocol.TriggerSpec{Name: "a", Condition: below("X", 1), Action: swap})
	v := u.state(t).Version
	nonce := e.nonces.Issue(e.clock.Now())
	ahead, _ := u.sess.SignResume(nonce, v+159)
	s := newSub()
	_, err := e.m.Resume(context.Background(), ahead.Body, ahead.Sig, nonce, s)
	wantCode(t, err, protocol.CodeVaultRolledBack)
	select {
	case f := <-s.ch:
		t.Fatalf("the refused resume was sent %s", f)
	default:
	}
	if n := testutil.ToFloat64(e.m.metrics.Actor.Rollbacks); n != 1 {
		t.Fatalf("spells_vault_rollbacks_detected_total = %g, want 1", n)
	}
	snap, _ := u.sess.SignResumeSnapshot(nonce)
	if _, err := e.m.Resume(context.Background(), snap.Body, snap.Sig, nonce, s); err != nil {
		t.Fatalf("resume without since after the refusal: %v", err)
	}
	if f := s.next(t); f.Type != protocol.TypeReady {
		t.Fatalf("got %s, want ready", f.Type)
	}
	if f := s.next(t); f.Type != protocol.TypeSnapshot || f.State.Version != v {
		t.Fatalf("got %s at v%d, want the snapshot at v%d", f.Type, f.Version, v)
	}
	// A sign-in that names such a version is refused the same way, before
	// it writes anything.
	since := v + 1
	d := mustDelegate(t)
	p := e.params(u.w, d)
	msg, sig, _ := u.w.SignIn(p)
	_, err = e.m.SignIn(context.Background(), SignInRequest{Message: msg, Signature: sig, Nonce: p.Nonce, Since: &since, Sub: newSub()})
	wantCode(t, err, protocol.CodeVaultRolledBack)
	if got := u.state(t).Version; got != v {
		t.Fatalf("the refused sign-in moved the version to %d", got)
	}
}

// TestDamagedWALIsFoundAtStart: SQLite replays a write-ahead log up to
// its first damaged frame, so a vault whose WAL was damaged in a crash
// would start at an older version. The start-up scan reads the WAL first:
// damage with acknowledged transactions after it quarantines the vault
// (its file and WAL set aside whole, for a restore) with a log line, and a
// client is told vault_quarantined. Damage in the last transaction only
// (what a crash can leave of one it never acknowledged) is replayed up to
// it, and a client that holds that last version is refused with
// vault_rolled_back, never served an older state silently.
func TestDamagedWALIsFoundAtStart(t *testing.T) {
	for _, tc := range []struct {
		name   string
		damage func(b []byte, page int)
		want   protocol.Code
	}{
		{"middle", func(b []byte, _ int) {
			for i := len(b) / 2; i < len(b)/2+64; i++ {
				b[i] ^= 0xff
			}
		}, protocol.CodeVaultQuarantined},
		{"last transaction", func(b []byte, _ int) { b[len(b)-100] ^= 0xff }, protocol.CodeVaultRolledBack},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := newEnv(t)
			u := e.newUser()
			e.restart() // closed cleanly: the file is complete, with an empty WAL
			u = e.signIn(u.w)
			for i := 0; i < 40; i++ {
				u.create(t, protocol.TriggerSpec{Name: "t", Condition: below("X", float64(i)), Action: swap})
			}
			acked := u.state(t).Version
			// What a crash leaves, copied while the vault is open, with
			// the WAL damaged.
			crashed := t.TempDir()
			src, dst := actor.Path(e.dir, u.v.ID()), actor.Path(crashed, u.v.ID())
			must(t, os.MkdirAll(filepath.Dir(dst), 0o700))
			for _, suffix := range []string{"", "-wal"} {
				b, err := os.ReadFile(src + suffix)
				must(t, err)
				if suffix == "-wal" {
					tc.damage(b, 0)
				}
				must(t, os.WriteFile(dst+suffix, b, 0o600))
			}
			e2 := &env{t: t, dir: crashed, clock: e.clock, latest: map[string]float64{}, nonces: e.nonces}
			e2.clock.Advance(time.Millisecond) // a node started after the crash
			e2.start()
			quarantined := 0
			if tc.want == protocol.CodeVaultQuarantined {
				quarantined = 1
			}
			if n := e2.m.Quarantined(); n != quarantined {
				t.Fatalf("%d vaults quarantined at start, want %d", n, quarantined)
			}
			nonce := e2.nonces.Issue(e2.clock.Now())
			f, _ := u.sess.SignResume(nonce, acked)
			_, err := e2.m.Resume(context.Background(), f.Body, f.Sig, nonce, newSub())
			wantCode(t, err, tc.want)
		})
	}
}

// lifeCounts describes the instances by state, for failure messages.
func (e *env) lifeCounts() string {
	e.m.mu.Lock()
	defer e.m.mu.Unlock()
	out := ""
	for l := unborn; l < gone; l++ {
		if e.m.count[l] > 0 {
			out += fmt.Sprintf(" %s:%d", l, e.m.count[l])
		}
	}
	for _, v := range e.m.vaults {
		out += fmt.Sprintf(" [%s subs=%d busy=%v mail=%d]", v.life, v.v.Subscribers(), v.v.Busy(), v.v.Queued())
	}
	return out
}

// TestCloseIsBoundedByItsContext: Manager.Close waits for vaults to finish
// their queued work and close, but no longer than its context: a vault
// stuck in a letter cannot hold a shutdown for ever. (What it had
// acknowledged is durable; its file is recovered at the next start.)
func TestCloseIsBoundedByItsContext(t *testing.T) {
	e := newEnv(t)
	u := e.newUser()
	release := holdVault(t, u.v)
	defer release()
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	began := time.Now()
	err := e.m.Close(ctx)
	if err == nil {
		t.Fatal("Close reported every vault closed while one was stuck")
	}
	if d := time.Since(began); d > 2*time.Second {
		t.Fatalf("Close took %s with a 200ms context", d)
	}
}

// TestCloseInterruptsAVaultStuckInSQLite: when Close runs out of time, a
// vault stuck in a SQLite statement is interrupted (the statement fails,
// nothing it would have written is kept) and its goroutine ends.
func TestCloseInterruptsAVaultStuckInSQLite(t *testing.T) {
	e := newEnv(t)
	u := e.newUser()
	started := make(chan struct{})
	stuck := make(chan error, 1)
	go func() {
		stuck <- u.v.Inspect(context.Background(), func(conn *sqlite.Conn) error {
			close(started)
			// Counts for ever, unless interrupted.
			return sqlitex.ExecuteTransient(conn, `WITH RECURSIVE c(x) AS (SELECT 1 UNION ALL SELECT x + 1 FROM c) SELECT count(*) FROM c;`, nil)
		})
	}()
	<-started
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := e.m.Close(ctx); err == nil {
		t.Fatal("Close reported every vault closed while one was in a statement")
	}
	select {
	case <-u.v.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("the vault's statement was not interrupted")
	}
	if err := <-stuck; !store.IsInterrupted(err) {
		t.Fatalf("the statement ended with %v, want an interruption", err)
	}
}
