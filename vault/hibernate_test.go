package vault

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"

	"github.com/spells-dev/spells/internal/clock"
	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/vault/actor"
)

// idle detaches u's subscriber and lets the clock run past the idle time,
// then waits until the janitor has closed every vault.
func (e *env) hibernateAll(t *testing.T, users ...*user) {
	t.Helper()
	for _, u := range users {
		u.v.Detach(u.sub)
		u.state(t) // the detach has run
	}
	e.clock.Advance(3 * time.Minute) // IdleAfter is 1m in these tests
	waitFor(t, "every vault to hibernate", func() bool { return e.m.OpenVaults() == 0 })
}

// newBoundedEnv is an env whose node keeps at most maxOpen vault files
// open.
func newBoundedEnv(t *testing.T, maxOpen int, latest map[string]float64) *env {
	return newEnvWith(t, func(e *env) { e.maxOpen, e.latest = maxOpen, latest })
}

// dippers signs in n users, each with a "dip" trigger (ETH/USD below
// 2500); detached, their dashboards are gone and the vaults may hibernate.
func (e *env) dippers(t *testing.T, n int, detached bool) []*user {
	t.Helper()
	users := make([]*user, 0, n)
	for i := 0; i < n; i++ {
		u := e.newUser()
		u.create(t, protocol.TriggerSpec{Name: "dip", Condition: below("ETH/USD", 2500), Action: swap})
		if detached {
			u.v.Detach(u.sub)
		}
		users = append(users, u)
	}
	return users
}

func newHibernatingEnv(t *testing.T) *env {
	return newEnvWith(t, func(e *env) { e.idleAfter = time.Minute })
}

func TestIdleVaultHibernatesAndWakesOnACrossing(t *testing.T) {
	e := newHibernatingEnv(t)
	e.latest["ETH/USD"] = 2600
	u := e.newUser()
	u.create(t, protocol.TriggerSpec{Name: "dip", Condition: below("ETH/USD", 2500), Action: swap})
	version := u.state(t).Version
	// With a subscriber it stays open however long it idles.
	e.clock.Advance(3 * time.Minute)
	u.state(t)
	if e.m.OpenVaults() != 1 {
		t.Fatal("a vault with a subscriber hibernated")
	}
	e.hibernateAll(t, u)
	woken := testutil.ToFloat64(e.m.metrics.Activations)
	if n := e.m.Signal("ETH/USD", 2550); n != 0 || e.m.OpenVaults() != 0 {
		t.Fatalf("a tick that crosses nothing reached %d vaults, %d open", n, e.m.OpenVaults())
	}
	if n := e.m.Signal("ETH/USD", 2400); n != 1 {
		t.Fatalf("the crossing reached %d vaults, want 1", n)
	}
	v, err := e.m.Vault(context.Background(), u.w.Address())
	if err != nil {
		t.Fatal(err)
	}
	st, _ := v.State(context.Background())
	if len(st.Intents) != 1 || st.Version != version+1 {
		t.Fatalf("after waking: %d intents, version %d (was %d)", len(st.Intents), st.Version, version)
	}
	if got := testutil.ToFloat64(e.m.metrics.Activations) - woken; got != 1 {
		t.Fatalf("%g activations, want 1", got)
	}
}

func TestAlarmWakesAHibernatedVault(t *testing.T) {
	e := newHibernatingEnv(t)
	u := e.newUser()
	u.create(t, protocol.TriggerSpec{Name: "dca", Condition: protocol.Condition{EveryMs: time.Hour.Milliseconds()}, Action: swap})
	e.hibernateAll(t, u)
	e.clock.Advance(time.Hour)
	waitFor(t, "the alarm to fire in the woken vault", func() bool {
		v, err := e.m.Vault(context.Background(), u.w.Address())
		if err != nil {
			return false
		}
		st, _ := v.State(context.Background())
		return len(st.Intents) == 1
	})
}

func TestIndexRebuiltAtStartWithoutOpeningVaults(t *testing.T) {
	e := newHibernatingEnv(t)
	e.latest["ETH/USD"] = 2600
	var users []*user
	for i := 0; i < 5; i++ {
		u := e.newUser()
		u.create(t, protocol.TriggerSpec{Name: "dip", Condition: below("ETH/USD", 2500-float64(i)*100), Action: swap})
		users = append(users, u)
	}
	e.restart()
	if n := e.m.OpenVaults(); n != 0 {
		t.Fatalf("%d vaults open after start, want 0 (all hibernated)", n)
	}
	if n := e.m.Interested("ETH/USD"); n != 5 {
		t.Fatalf("index holds %d vaults on ETH/USD after restart, want 5", n)
	}
	// 2250 crosses the thresholds 2500, 2400 and 2300 only.
	if n := e.m.Signal("ETH/USD", 2250); n != 3 {
		t.Fatalf("2250 reached %d vaults, want 3", n)
	}
	for i, u := range users {
		v, _ := e.m.Vault(context.Background(), u.w.Address())
		st, _ := v.State(context.Background())
		if want := map[bool]int{true: 1, false: 0}[i < 3]; len(st.Intents) != want {
			t.Fatalf("vault %d: %d intents, want %d", i, len(st.Intents), want)
		}
	}
}

func TestLRUEvictionKeepsOpenVaultsBounded(t *testing.T) {
	e := newBoundedEnv(t, 2, map[string]float64{})
	var users []*user
	for i := 0; i < 4; i++ {
		u := e.newUser()
		u.v.Detach(u.sub)
		u.state(t)
		users = append(users, u)
	}
	e.restart()
	for _, u := range users {
		if _, err := e.m.Vault(context.Background(), u.w.Address()); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "eviction down to MaxOpen", func() bool { return e.m.OpenVaults() <= 2 })
}

// TestCrossingReachesEveryVaultBeyondMaxOpen: a tick that crosses the
// thresholds of more hibernated vaults than may be open at once still
// reaches every one of them; they are woken as others close (one at a time
// at MaxOpen 3, in batches of MaxOpen/32 at 64), none is lost, and no more
// than MaxOpen files are ever open.
func TestCrossingReachesEveryVaultBeyondMaxOpen(t *testing.T) {
	for _, c := range []struct{ maxOpen, vaults int }{{3, 12}, {64, 100}} {
		t.Run(fmt.Sprintf("%d of %d", c.maxOpen, c.vaults), func(t *testing.T) {
			e := newBoundedEnv(t, c.maxOpen, map[string]float64{"ETH/USD": 2600})
			users := e.dippers(t, c.vaults, true)
			e.restart() // every vault hibernated
			if n := e.m.Signal("ETH/USD", 2400); n != c.vaults {
				t.Fatalf("the crossing reached %d vaults, want %d", n, c.vaults)
			}
			waitFor(t, "every vault to record its firing", func() bool {
				return testutil.ToFloat64(e.m.metrics.Actor.Intents) == float64(c.vaults) && e.firedAndApplied()
			})
			e.m.mu.Lock()
			peak := e.m.peak
			e.m.mu.Unlock()
			if peak > c.maxOpen {
				t.Fatalf("files open peaked at %d, MaxOpen is %d", peak, c.maxOpen)
			}
			for _, u := range users {
				v, err := e.m.Vault(context.Background(), u.w.Address())
				if err != nil {
					t.Fatal(err)
				}
				if st, _ := v.State(context.Background()); len(st.Intents) != 1 {
					t.Fatalf("vault %s has %d intents", u.w.Address().Hex(), len(st.Intents))
				}
			}
			if open := e.m.OpenVaults(); open > c.maxOpen {
				t.Fatalf("%d vaults open, MaxOpen is %d", open, c.maxOpen)
			}
		})
	}
}

// A vault with a dashboard cannot hibernate, but when idle it closes its
// file (dozes) and reopens it for the next signal or command, with its
// subscriber still attached.
func TestDashboardVaultDozesAndWakesOnUse(t *testing.T) {
	e := newHibernatingEnv(t)
	e.latest["ETH/USD"] = 2600
	u := e.dippers(t, 1, false)[0]
	u.sub.nextOf(t, protocol.TypeDiff)
	version := u.state(t).Version
	e.clock.Advance(3 * time.Minute)
	waitFor(t, "the vault to doze", func() bool { return e.m.FilesOpen() == 0 })
	if e.m.OpenVaults() != 1 || testutil.ToFloat64(e.m.metrics.Dozes) != 1 || testutil.ToFloat64(e.m.metrics.Dozing) != 1 {
		t.Fatalf("open %d, dozes %g, dozing %g; want 1, 1, 1", e.m.OpenVaults(),
			testutil.ToFloat64(e.m.metrics.Dozes), testutil.ToFloat64(e.m.metrics.Dozing))
	}
	// A crossing reaches it and its dashboard sees the firing.
	if n := e.m.Signal("ETH/USD", 2400); n != 1 {
		t.Fatalf("the crossing reached %d vaults, want 1", n)
	}
	if ch := u.sub.diffWith(t, "intent"); len(ch) != 1 {
		t.Fatalf("dashboard got %d intent changes, want 1", len(ch))
	}
	if e.m.FilesOpen() != 1 || testutil.ToFloat64(e.m.metrics.Dozing) != 0 {
		t.Fatalf("after waking: %d files open, %g dozing", e.m.FilesOpen(), testutil.ToFloat64(e.m.metrics.Dozing))
	}
	// And a command after another doze.
	e.clock.Advance(3 * time.Minute)
	waitFor(t, "the vault to doze again", func() bool { return e.m.FilesOpen() == 0 })
	ack := u.mustCmd(t, protocol.OpTriggerPause, protocol.IDArgs{ID: u.state(t).Triggers[0].ID})
	if ack.Version != version+2 {
		t.Fatalf("pause acked at version %d, want %d", ack.Version, version+2)
	}
}

// At MaxOpen, vaults whose dashboards are connected doze (least recently
// used first) so that the open files stay bounded; each still answers.
func TestEvictionDozesWatchedVaults(t *testing.T) {
	e := newBoundedEnv(t, 2, map[string]float64{})
	var users []*user
	for i := 0; i < 5; i++ {
		users = append(users, e.newUser())
	}
	waitFor(t, "open files down to MaxOpen", func() bool { return e.m.FilesOpen() <= 2 })
	if e.m.OpenVaults() != 5 {
		t.Fatalf("%d vaults running, want all 5 (each has a dashboard)", e.m.OpenVaults())
	}
	for _, u := range users {
		u.create(t, protocol.TriggerSpec{Name: "t", Condition: below("X", 1), Action: swap})
		if ch := u.sub.diffWith(t, "trigger"); len(ch) != 1 {
			t.Fatalf("dashboard got %d trigger changes, want 1", len(ch))
		}
	}
	waitFor(t, "open files down to MaxOpen again", func() bool { return e.m.FilesOpen() <= 2 })
}

// A node that crashed leaves committed transactions in a vault's WAL. The
// start-up scan must see them (it reads cleanly closed files the cheap
// way, and these the full way).
func TestStartReadsTheWALACrashLeft(t *testing.T) {
	e := newHibernatingEnv(t)
	u := e.newUser()
	e.restart() // closed cleanly: the file is complete, with no WAL
	u = e.signIn(u.w)
	u.create(t, protocol.TriggerSpec{Name: "dip", Condition: below("ETH/USD", 2500), Action: swap})
	// Copy the vault's files while it is open: what a crash leaves. The
	// trigger is only in the WAL.
	crashed := t.TempDir()
	src := actor.Path(e.dir, u.v.ID())
	dst := actor.Path(crashed, u.v.ID())
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		t.Fatal(err)
	}
	for _, suffix := range []string{"", "-wal"} {
		b, err := os.ReadFile(src + suffix)
		if err != nil {
			t.Fatal(err)
		}
		if suffix == "-wal" && len(b) == 0 {
			t.Fatal("the open vault has an empty WAL; the test needs one with the commits")
		}
		if err := os.WriteFile(dst+suffix, b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	e2 := &env{t: t, dir: crashed, clock: e.clock, latest: map[string]float64{}, nonces: e.nonces, idleAfter: time.Minute}
	e2.start()
	if n := e2.m.Interested("ETH/USD"); n != 1 {
		t.Fatalf("after the crash the index holds %d vaults on ETH/USD, want 1", n)
	}
}

// A crossing that reaches more dozing vaults (dashboards connected, files
// closed) than may have files open wakes them a few at a time, as for
// hibernated ones: every firing lands and reaches its dashboard, and the
// open files never pass MaxOpen.
func TestCrossingWakesDozingVaultsWithinMaxOpen(t *testing.T) {
	e := newBoundedEnv(t, 3, map[string]float64{"ETH/USD": 2600})
	users := e.dippers(t, 12, false)
	waitFor(t, "the watched vaults to doze down to MaxOpen", func() bool { return e.m.FilesOpen() <= 3 })
	// A vault reports its thresholds after it answered the command that
	// made them.
	waitFor(t, "every vault's threshold in the index", func() bool { return e.m.index.watchers("ETH/USD") == 12 })
	e.m.mu.Lock()
	e.m.peak = 0
	e.m.mu.Unlock()
	if n := e.m.Signal("ETH/USD", 2400); n != 12 {
		t.Fatalf("the crossing reached %d vaults, want 12", n)
	}
	for i, u := range users {
		if ch := u.sub.diffWith(t, "intent"); len(ch) != 1 {
			t.Fatalf("dashboard %d got %d intent changes, want 1", i, len(ch))
		}
		if u.sub.gone.Load() {
			t.Fatalf("dashboard %d was told its vault ended", i)
		}
	}
	e.m.mu.Lock()
	peak := e.m.peak
	e.m.mu.Unlock()
	if peak > 3 || e.m.OpenVaults() != 12 {
		t.Fatalf("files open peaked at %d (MaxOpen 3); %d vaults running (want 12)", peak, e.m.OpenVaults())
	}
}

// TestClosingFileKeepsItsSlot: a vault evicted to make room still holds
// its descriptors until its file is closed, so the slot it frees is counted
// as taken until then; a burst of wake-ups cannot open files past MaxOpen
// while evicted ones are still closing.
func TestClosingFileKeepsItsSlot(t *testing.T) {
	e := newBoundedEnv(t, 1, map[string]float64{"ETH/USD": 2600})
	e.dippers(t, 3, true)
	e.restart() // every vault hibernated, no vault goroutine running
	var counted []int
	var mu sync.Mutex
	closing := func(_ common.Address, hasFile bool) {
		if !hasFile {
			return
		}
		mu.Lock()
		counted = append(counted, e.m.FilesOpen())
		mu.Unlock()
		time.Sleep(5 * time.Millisecond) // a slow close: a wake-up must not take its slot meanwhile
	}
	e.hooks.Actor.Closing.Store(&closing)
	if n := e.m.Signal("ETH/USD", 2400); n != 3 {
		t.Fatalf("the crossing reached %d vaults, want 3", n)
	}
	waitFor(t, "every vault to record its firing", func() bool {
		return testutil.ToFloat64(e.m.metrics.Actor.Intents) == 3 && e.firedAndApplied()
	})
	e.m.Close(context.Background())
	e.hooks.Actor.Closing.Store(nil)
	e.m.mu.Lock()
	peak := e.m.peak
	e.m.mu.Unlock()
	mu.Lock()
	defer mu.Unlock()
	if len(counted) < 2 {
		t.Fatalf("%d evictions closed a file, want at least 2", len(counted))
	}
	for i, n := range counted {
		if n < 1 {
			t.Fatalf("close %d: the closing file was not counted (%d files open)", i, n)
		}
	}
	if peak > 1 {
		t.Fatalf("files open peaked at %d, MaxOpen is 1", peak)
	}
}

// TestDozingVaultWhoseFileVanishedIsNotRecreated: a dozing vault holds its
// state in memory, but its file is the truth; if the file is gone when the
// vault must reopen it, the vault ends (its dashboard is told to
// reconnect) instead of SQLite creating an empty file under it.
func TestDozingVaultWhoseFileVanishedIsNotRecreated(t *testing.T) {
	e := newHibernatingEnv(t)
	e.latest["ETH/USD"] = 2600
	u := e.dippers(t, 1, false)[0]
	e.clock.Advance(3 * time.Minute)
	waitFor(t, "the vault to doze", func() bool { return e.m.FilesOpen() == 0 })
	p := actor.Path(e.dir, actor.ID(u.w.Address()))
	if err := os.Remove(p); err != nil {
		t.Fatal(err)
	}
	if n := e.m.Signal("ETH/USD", 2400); n != 1 {
		t.Fatalf("the crossing reached %d vaults, want 1", n)
	}
	waitFor(t, "the dashboard to be told its vault ended", u.sub.gone.Load)
	if _, err := os.Stat(p); !os.IsNotExist(err) {
		t.Fatalf("the vault file was recreated (stat: %v)", err)
	}
}

// hibernateHeld lets the janitor hibernate u's vault and holds it in the
// middle of that: retired, its file still open. The vault finishes
// closing once release is closed.
func (e *env) hibernateHeld(t *testing.T, u *user) (release chan struct{}) {
	t.Helper()
	closing, release := make(chan struct{}), make(chan struct{})
	hook := func(vault common.Address, _ bool) {
		if vault == u.v.Address() {
			close(closing)
			<-release
		}
	}
	e.hooks.Actor.Closing.Store(&hook)
	t.Cleanup(func() { e.hooks.Actor.Closing.Store(nil) })
	e.clock.Advance(3 * time.Minute) // the janitor hibernates it
	<-closing
	return release
}

// TestReopenWaitsForTheClosingInstance: a vault that hibernates is gone
// from the open vaults before its file is closed. A wake-up in between
// must wait for that close instead of opening the same file a second time:
// without SQLite's file locks (vaultVFS) the closing checkpoint would
// truncate the WAL under the new connection ("disk I/O error", seen under
// eviction churn by BenchmarkCrossingWakesHibernated).
func TestReopenWaitsForTheClosingInstance(t *testing.T) {
	e := newHibernatingEnv(t)
	u := e.newUser()
	u.create(t, protocol.TriggerSpec{Name: "dip", Condition: below("ETH/USD", 2500), Action: swap})
	u.v.Detach(u.sub)
	u.state(t)
	release := e.hibernateHeld(t, u)
	type result struct {
		v   *actor.Vault
		err error
	}
	got := make(chan result, 1)
	go func() {
		v, err := e.m.Vault(context.Background(), u.w.Address())
		got <- result{v, err}
	}()
	select {
	case r := <-got:
		close(release)
		t.Fatalf("the vault was opened again (%v) while its previous instance still had the file open", r.err)
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	r := <-got
	if r.err != nil {
		t.Fatal(r.err)
	}
	if r.v == u.v {
		t.Fatal("got the retired instance back")
	}
	st, err := r.v.State(context.Background())
	if err != nil || len(st.Triggers) != 1 {
		t.Fatalf("reopened vault: %d triggers, %v", len(st.Triggers), err)
	}
}

// TestCloseWaitsForClosingVaults: Manager.Close releases the data
// directory, so it must not return while a hibernating vault is still
// closing its file.
func TestCloseWaitsForClosingVaults(t *testing.T) {
	e := newHibernatingEnv(t)
	u := e.newUser()
	u.v.Detach(u.sub)
	u.state(t)
	release := e.hibernateHeld(t, u)
	closed := make(chan struct{})
	go func() {
		e.m.Close(context.Background())
		close(closed)
	}()
	select {
	case <-closed:
		close(release)
		t.Fatal("Close returned while a vault was still closing its file")
	case <-time.After(100 * time.Millisecond):
	}
	close(release)
	<-closed
}

// BenchmarkCrossingWakesHibernated is the 1 % tick of the bench's baseline
// inside this package: a tick crosses a trigger in each of k hibernated
// vaults while the node is at its open-file limit with k idle vaults
// holding files, so every wake-up also closes one of them. One op is one
// tick, until all k intents are written; each tick is on its own signal
// (one of ticks), so every op is a first crossing.
func BenchmarkCrossingWakesHibernated(b *testing.B) {
	const k, ticks = 300, 20
	e := &env{t: b, dir: b.TempDir(), clock: clock.NewFake(t0), latest: map[string]float64{},
		nonces: protocol.NewNonceIssuer([]byte("test-node-key-0123456789abcdef!!")), maxOpen: k,
		log: zerolog.New(os.Stderr).Level(zerolog.WarnLevel)}
	for s := 0; s < ticks; s++ {
		e.latest[fmt.Sprint("S", s)] = 2600 // so the triggers start from a known value
	}
	e.start()
	for i := 0; i < 2*k; i++ {
		u := e.newUser()
		if i < k { // the ones the ticks cross
			for s := 0; s < ticks; s++ {
				u.create(b, protocol.TriggerSpec{Name: "dip", Condition: below(fmt.Sprint("S", s), 2500), Action: swap})
			}
		} else { // then k that are not crossed, and hold the files
			u.create(b, protocol.TriggerSpec{Name: "dip", Condition: below("ETH/USD", 2500), Action: swap})
		}
		u.v.Detach(u.sub)
	}
	s := 0
	cpu0 := cpuTime()
	for b.Loop() {
		if s == ticks {
			b.Fatalf("more than %d ticks: run it with -benchtime %dx or less", ticks, ticks)
		}
		before := testutil.ToFloat64(e.m.metrics.Actor.Intents)
		if n := e.m.Signal(fmt.Sprint("S", s), 2400); n != k {
			b.Fatalf("the tick reached %d vaults, want %d", n, k)
		}
		s++
		for testutil.ToFloat64(e.m.metrics.Actor.Intents)-before < k {
			time.Sleep(100 * time.Microsecond)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*k), "µs/vault")
	b.ReportMetric(float64((cpuTime()-cpu0).Microseconds())/float64(b.N*k), "cpu-µs/vault")
}

// TestJanitorPacesItsCloses: the janitor does not ask every idle vault
// to close at once (a burst of checkpoints and syncs that starves
// wake-ups); at most janitorParallel files are closing at any time, and
// all of them still close.
func TestJanitorPacesItsCloses(t *testing.T) {
	e := newHibernatingEnv(t)
	n := 3 * janitorParallel
	for _, u := range e.dippers(t, n, true) {
		u.state(t) // the detach has run: the vault may hibernate
	}
	entered, release := make(chan struct{}, n), make(chan struct{})
	var inflight, peak atomic.Int32
	hook := func(common.Address, bool) {
		in := inflight.Add(1)
		for p := peak.Load(); in > p && !peak.CompareAndSwap(p, in); p = peak.Load() {
		}
		entered <- struct{}{}
		<-release
		inflight.Add(-1)
	}
	e.hooks.Actor.Closing.Store(&hook)
	waiting := make(chan struct{}, n)
	wait := func() { waiting <- struct{}{} }
	e.hooks.JanitorWait.Store(&wait)
	t.Cleanup(func() { e.hooks.Actor.Closing.Store(nil); e.hooks.JanitorWait.Store(nil) })
	e.clock.Advance(3 * time.Minute) // every vault is idle
	for i := 0; i < n; i++ {
		if i >= janitorParallel {
			select {
			case <-waiting:
			case <-time.After(5 * time.Second):
				t.Fatalf("%d files closing and the janitor did not wait for one to finish", i)
			}
			release <- struct{}{} // one close ends, so the next may start
		}
		<-entered
	}
	for i := 0; i < janitorParallel; i++ {
		release <- struct{}{}
	}
	waitFor(t, "every vault to hibernate", func() bool { return e.m.OpenVaults() == 0 })
	if p := peak.Load(); p != janitorParallel {
		t.Fatalf("%d files were closing at once, want %d", p, janitorParallel)
	}
}
