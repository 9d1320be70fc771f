package vault

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/rs/zerolog"

	"github.com/spells-dev/spells/internal/clock"
	"github.com/spells-dev/spells/internal/tmpfstest"
	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/vault/actor"
	"github.com/spells-dev/spells/vault/journal"
)

// intentsOf opens the vault of each user and returns how many intents
// each holds, and the status of its trigger's leaf (met or not).
func (e *env) intentsOf(t *testing.T, users []*user) (intents []int, met []bool, versions []uint64) {
	t.Helper()
	for _, u := range users {
		v, err := e.m.Vault(context.Background(), u.w.Address())
		if err != nil {
			t.Fatal(err)
		}
		st, err := v.State(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		intents = append(intents, len(st.Intents))
		versions = append(versions, st.Version)
		for _, tr := range st.Triggers {
			met = append(met, tr.Fires > 0)
		}
	}
	return intents, met, versions
}

func copyDir(t *testing.T, from, to string) {
	t.Helper()
	os.RemoveAll(to)
	if err := os.MkdirAll(to, 0o700); err != nil {
		t.Fatal(err)
	}
	names, _ := filepath.Glob(filepath.Join(from, "*"))
	for _, n := range names {
		b, err := os.ReadFile(n)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, filepath.Base(n)), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// TestJournaledFiringsSurviveAStop: a crossing fires hibernated vaults
// into the node's firing journal while no file slot is free to open them;
// the node stops before any of them applied its firing. At the next start
// each vault applies its firing exactly once, and a journal that still
// holds records a vault applied before a crash (its segments not yet
// marked done) never makes a vault apply one twice.
func TestJournaledFiringsSurviveAStop(t *testing.T) {
	e := newBoundedEnv(t, 1, map[string]float64{"ETH/USD": 2600})
	users := e.dippers(t, 5, true)
	e.restart() // every vault hibernated
	busy := e.newUser()
	release := holdVault(t, busy.v) // holds the only slot
	if n := e.m.Signal("ETH/USD", 2400); n != 5 {
		t.Fatalf("the crossing reached %d vaults, want 5", n)
	}
	waitFor(t, "the firings journaled", func() bool { return testutil.ToFloat64(e.m.metrics.Actor.Intents) == 5 })
	snapshot := filepath.Join(t.TempDir(), "journal")
	copyDir(t, journalDir(e.dir), snapshot)

	// Stop the node with every firing still unapplied.
	closed := make(chan error, 1)
	m := e.m
	go func() { closed <- m.Close(context.Background()) }()
	waitFor(t, "the node to begin closing", func() bool { m.mu.Lock(); defer m.mu.Unlock(); return m.closed })
	release()
	if err := <-closed; err != nil {
		t.Fatal(err)
	}
	if n := testutil.ToFloat64(m.metrics.Actor.JournalApplied); n != 0 {
		t.Fatalf("%g firings applied before the stop, want none", n)
	}

	e.start()
	waitFor(t, "the journaled firings applied", e.firedAndApplied)
	intents, met, versions := e.intentsOf(t, users)
	for i := range users {
		if intents[i] != 1 || !met[i] {
			t.Fatalf("vault %d: %d intents, fired %t; want 1 intent, fired", i, intents[i], met[i])
		}
	}
	// The same value again crosses nothing: the index holds what the
	// vaults applied.
	if n := e.m.Signal("ETH/USD", 2400); n != 0 {
		t.Fatalf("the same value reached %d vaults after the replay", n)
	}
	if p := e.m.journal.Pending(); p != 0 {
		t.Fatalf("%d journal records pending once every vault applied them", p)
	}

	// A crash after the vaults applied their records but before the
	// journal dropped them: the records are read again and skipped.
	e.m.Close(context.Background())
	j, left, err := journal.Open(journalDir(e.dir), t0)
	if err != nil {
		t.Fatal(err)
	}
	j.Close()
	if len(left) != 0 {
		t.Fatalf("the journal holds %d records after every vault applied them and the node stopped", len(left))
	}
	copyDir(t, snapshot, journalDir(e.dir))
	e.start()
	waitFor(t, "the old records read and skipped", e.firedAndApplied)
	intents, _, again := e.intentsOf(t, users)
	for i, n := range intents {
		if n != 1 || again[i] != versions[i] {
			t.Fatalf("vault %d holds %d intents at version %d after its journal record was read again, want 1 at %d", i, n, again[i], versions[i])
		}
	}
	if p := e.m.journal.Pending(); p != 0 {
		t.Fatalf("%d journal records pending after the skipped replay", p)
	}
}

// TestAsleepFiringMatchesAnOpenOne: a vault fired asleep ends up exactly as
// one that was open when the value came: the same trigger state, the
// same intent (its idempotency key, action and grant), the same
// evaluation; and a trigger with MaxFires 1 is done and no longer in the
// index.
func TestAsleepFiringMatchesAnOpenOne(t *testing.T) {
	e := newHibernatingEnv(t)
	e.latest["ETH/USD"] = 2600
	spec := protocol.TriggerSpec{Name: "once", Condition: below("ETH/USD", 2500), Action: swap, MaxFires: 1}
	awake, asleep := e.newUser(), e.newUser()
	awake.create(t, spec)
	asleep.create(t, spec)
	// One hibernates (its instance gives the node its triggers as it
	// ends); the other keeps its dashboard, so its firing takes the
	// usual way.
	asleep.v.Detach(asleep.sub)
	asleep.state(t)
	e.clock.Advance(3 * time.Minute)
	waitFor(t, "one vault to hibernate, its goroutine ended", func() bool {
		e.m.mu.Lock()
		defer e.m.mu.Unlock()
		return e.m.asleep[actor.ID(asleep.w.Address())] != nil && len(e.m.vaults) == 1
	})
	if n := e.m.Signal("ETH/USD", 2400); n != 2 {
		t.Fatalf("the crossing reached %d vaults, want 2", n)
	}
	waitFor(t, "both fired", func() bool {
		return testutil.ToFloat64(e.m.metrics.Actor.Intents) == 2 && e.firedAndApplied()
	})
	if n := testutil.ToFloat64(e.m.metrics.Actor.JournalApplied); n != 1 {
		t.Fatalf("%g firings went through the journal, want 1 (the hibernated vault's)", n)
	}
	states := make([]protocol.State, 2)
	for i, u := range []*user{awake, asleep} {
		v, err := e.m.Vault(context.Background(), u.w.Address())
		if err != nil {
			t.Fatal(err)
		}
		if states[i], err = v.State(context.Background()); err != nil {
			t.Fatal(err)
		}
	}
	a, b := states[0], states[1]
	if len(a.Intents) != 1 || len(b.Intents) != 1 || len(a.Triggers) != 1 || len(b.Triggers) != 1 {
		t.Fatalf("intents %d/%d, triggers %d/%d; want 1 each", len(a.Intents), len(b.Intents), len(a.Triggers), len(b.Triggers))
	}
	ta, tb := a.Triggers[0], b.Triggers[0]
	if ta.Status != protocol.StatusDone || tb.Status != ta.Status || tb.Fires != ta.Fires || tb.LastFiredAt != ta.LastFiredAt {
		t.Fatalf("triggers differ: open %+v, asleep %+v", ta, tb)
	}
	ia, ib := a.Intents[0], b.Intents[0]
	if ib.IdempotencyKey != tb.ID+"/1" || ia.IdempotencyKey != ta.ID+"/1" || string(ib.Action.Params) != string(ia.Action.Params) ||
		ib.Action.Kind != ia.Action.Kind || ib.Status != ia.Status || ib.CreatedAt != ia.CreatedAt {
		t.Fatalf("intents differ: open %+v, asleep %+v", ia, ib)
	}
	if len(b.Evaluations) == 0 || b.Evaluations[len(b.Evaluations)-1].Outcome != protocol.OutcomeFired {
		t.Fatalf("the asleep vault's evaluations: %+v", b.Evaluations)
	}
	if n := e.m.index.watchers("ETH/USD"); n != 0 {
		t.Fatalf("%d vaults still watch ETH/USD after their only trigger is done", n)
	}
}

// BenchmarkMassCrossing is the bench's mass crossing inside this package:
// one tick crosses the trigger of each of k hibernated vaults (read by the
// start-up scan); one op is one tick, until every intent is durable (in
// the firing journal). The vaults then apply their firings, outside the
// timing.
func BenchmarkMassCrossing(b *testing.B) {
	const k = 2000
	e := &env{t: b, dir: b.TempDir(), clock: clock.NewFake(t0), latest: map[string]float64{},
		nonces: protocol.NewNonceIssuer([]byte("test-node-key-0123456789abcdef!!")), maxOpen: 256,
		log: zerolog.New(os.Stderr).Level(zerolog.WarnLevel)}
	e.latest["ETH/USD"] = 2600
	e.start()
	for i := 0; i < k; i++ {
		u := e.newUser()
		u.create(b, protocol.TriggerSpec{Name: "dip", Condition: below("ETH/USD", 2500), Action: swap})
		u.v.Detach(u.sub)
	}
	var evaluated, cpu time.Duration
	crossed := 0
	for b.Loop() {
		b.StopTimer()
		e.restart()                 // every vault hibernated, applied, and read by the scan
		e.m.Signal("ETH/USD", 2600) // above the thresholds again: the next tick crosses them
		waitForWithin(b, "settle", time.Minute, e.firedAndApplied)
		before := testutil.ToFloat64(e.m.metrics.Actor.Intents)
		b.StartTimer()
		t0, cpu0 := time.Now(), cpuTime()
		n := e.m.Signal("ETH/USD", 2400)
		evaluated += time.Since(t0)
		for testutil.ToFloat64(e.m.metrics.Actor.Intents)-before < float64(n) {
			time.Sleep(100 * time.Microsecond)
		}
		b.StopTimer()
		cpu += cpuTime() - cpu0
		crossed += n
		waitForWithin(b, "every firing applied", 5*time.Minute, e.firedAndApplied)
		b.StartTimer()
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(crossed), "µs/vault")
	b.ReportMetric(float64(evaluated.Microseconds())/float64(crossed), "evaluated-µs/vault")
	b.ReportMetric(float64(cpu.Microseconds())/float64(crossed), "cpu-µs/vault")
	var mm dto.Metric
	e.m.metrics.JournalSync.Write(&mm) // the last tick's node
	b.ReportMetric(float64(mm.Histogram.GetSampleCount()), "journal-writes/tick")
}

// TestFiringsInFlightAreBounded: values that cross a hibernated vault's
// threshold back and forth while it cannot open (no file slot) are
// journaled up to maxFiredPerVault records per vault; the ones after take
// the usual way (the vault's inbox). Once a slot is free every vault
// applies its records, then its events, in order: each fires once per
// crossing down, and ends where the last value left it.
func TestFiringsInFlightAreBounded(t *testing.T) {
	e := newBoundedEnv(t, 1, map[string]float64{"ETH/USD": 2600})
	users := e.dippers(t, 3, true)
	e.restart()
	busy := e.newUser()
	release := holdVault(t, busy.v)
	const rounds = 10
	for i := 0; i < rounds; i++ {
		e.m.Signal("ETH/USD", 2400)
		e.m.Signal("ETH/USD", 2600)
	}
	e.m.mu.Lock()
	for _, u := range users {
		id := actor.ID(u.w.Address())
		if n := len(e.m.fired[id]); n != maxFiredPerVault {
			e.m.mu.Unlock()
			t.Fatalf("vault %s holds %d journal records, want the bound %d", id, n, maxFiredPerVault)
		}
		if e.m.waiting[id] == nil || e.m.waiting[id].Len() != 2*rounds-maxFiredPerVault {
			e.m.mu.Unlock()
			t.Fatalf("vault %s: the values past the bound did not wait in its inbox", id)
		}
	}
	e.m.mu.Unlock()
	release()
	busy.v.Detach(busy.sub)
	waitFor(t, "every vault to apply its records and evaluate its events", func() bool {
		return e.firedAndApplied() && testutil.ToFloat64(e.m.metrics.Actor.Intents) == 3*rounds
	})
	intents, fired, _ := e.intentsOf(t, users)
	for i := range users {
		if intents[i] != rounds || !fired[i] {
			t.Fatalf("vault %d: %d intents, want %d", i, intents[i], rounds)
		}
	}
	if n := e.m.Signal("ETH/USD", 2600); n != 0 {
		t.Fatalf("the last value again reached %d vaults: the index does not hold where the vaults ended", n)
	}
}

// TestFiringsOnAFullDisk: a crossing whose journal batch cannot be written
// (the disk is full) counts no intent, and the vaults cannot apply the
// firings to their files either; once there is room, the janitor has the
// vaults open again, each applies its firing once, and only then are the
// intents counted.
func TestFiringsOnAFullDisk(t *testing.T) {
	dir := tmpfstest.Mount(t, "16m")
	e := newEnvWith(t, func(e *env) {
		e.dir = dir
		e.latest["ETH/USD"] = 2600
	})
	users := e.dippers(t, 3, true)
	e.restart()
	filler, err := os.Create(filepath.Join(dir, "filler"))
	if err != nil {
		t.Fatal(err)
	}
	for {
		if _, err := filler.Write(make([]byte, 64<<10)); err != nil {
			break
		}
	}
	filler.Sync()
	filler.Close()
	if n := e.m.Signal("ETH/USD", 2400); n != 3 {
		t.Fatalf("the crossing reached %d vaults, want 3", n)
	}
	waitFor(t, "the journal write to fail", func() bool { return testutil.ToFloat64(e.m.metrics.JournalErrors) >= 1 })
	waitFor(t, "the vaults to try and fail to apply", func() bool {
		e.m.mu.Lock()
		defer e.m.mu.Unlock()
		return len(e.m.applyQ) == 0 && len(e.m.vaults) == 0 && len(e.m.leaving) == 0
	})
	if n := testutil.ToFloat64(e.m.metrics.Actor.Intents); n != 0 {
		t.Fatalf("%g intents counted while nothing could be written", n)
	}
	if e.firedAndApplied() {
		t.Fatal("the firings were dropped on a full disk: they must wait for their vaults")
	}
	os.Remove(filepath.Join(dir, "filler"))
	e.clock.Advance(rescanEvery + time.Second) // the janitor probes the disk and opens the vaults again
	waitFor(t, "every firing applied once there is room", func() bool {
		if e.firedAndApplied() {
			return true
		}
		e.clock.Advance(time.Second)
		return false
	})
	if n := testutil.ToFloat64(e.m.metrics.Actor.Intents); n != 3 {
		t.Fatalf("%g intents counted, want 3", n)
	}
	intents, _, _ := e.intentsOf(t, users)
	for i, n := range intents {
		if n != 1 {
			t.Fatalf("vault %d holds %d intents, want 1", i, n)
		}
	}
}

// TestARefusedPublisherValueLeavesTheIndexRight: a hibernated vault's leaf
// that takes only one publisher's values is reached by a value of that
// publisher too old to take. Fired asleep, nothing changes, and the index
// is set back to what the vault holds, so the next fresh value that
// crosses the threshold still reaches the vault and fires it.
func TestARefusedPublisherValueLeavesTheIndexRight(t *testing.T) {
	e := newHibernatingEnv(t)
	const pub = "0x00000000000000000000000000000000000000bb"
	u := e.newUser()
	cond := below("ETH/USD", 2500)
	cond.From = pub
	u.create(t, protocol.TriggerSpec{Name: "dip", Condition: cond, Action: swap})
	e.restart() // hibernated, read by the scan
	now := e.clock.Now()
	from := func(at time.Time) protocol.SignalOrigin {
		return protocol.SignalOrigin{Publisher: pub, At: at.UnixMilli()}
	}
	if n := e.m.SignalReceived("ETH/USD", 2600, now, from(now.Add(-2*time.Second))); n != 1 {
		t.Fatalf("the first value reached %d vaults, want 1", n)
	}
	// Below the threshold, but signed ten minutes ago: not taken.
	if n := e.m.SignalReceived("ETH/USD", 2400, now, from(now.Add(-10*time.Minute))); n != 1 {
		t.Fatalf("the stale value reached %d vaults, want 1 (it crosses the leaf)", n)
	}
	// The index holds the leaf as the vault left it, unmet: at once when
	// the node evaluated the sleeping vault, or once an instance (the
	// waker may have started one to apply the first value's record)
	// reports its leaves.
	waitFor(t, "the index to hold the leaf unmet, as the vault does", func() bool {
		e.m.index.mu.Lock()
		defer e.m.index.mu.Unlock()
		for _, ls := range e.m.index.byVault {
			for _, l := range ls {
				if l.Signal == "ETH/USD" {
					return l.Known && !l.Met
				}
			}
		}
		return false
	})
	if n := e.m.SignalReceived("ETH/USD", 2400, now, from(now.Add(-time.Second))); n != 1 {
		t.Fatalf("the fresh crossing reached %d vaults, want 1: the index took the refused value as seen", n)
	}
	waitFor(t, "the fresh crossing to fire", func() bool {
		return testutil.ToFloat64(e.m.metrics.Actor.Intents) == 1 && e.firedAndApplied()
	})
}
