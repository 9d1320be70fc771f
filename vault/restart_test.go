package vault

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/spells-dev/spells/protocol"
)

func TestRestartKeepsStateAndVersions(t *testing.T) {
	e := newEnv(t)
	e.latest["ETH/USD"] = 2600
	u := e.newUser()
	u.create(t, protocol.TriggerSpec{Name: "dip", Condition: below("ETH/USD", 2500), Action: swap})
	e.signal(t, u, "ETH/USD", 2400)
	before := u.state(t)
	e.restart()
	v, err := e.m.Vault(context.Background(), u.w.Address())
	if err != nil {
		t.Fatal(err)
	}
	after, err := v.State(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if after.Version != before.Version || len(after.Triggers) != 1 || len(after.Intents) != 1 || len(after.Evaluations) != len(before.Evaluations) {
		t.Fatalf("after restart %+v, before %+v", after, before)
	}
	// The trigger remembers it is below: no new firing without a crossing.
	e.m.Signal("ETH/USD", 2300)
	if st, _ := v.State(context.Background()); len(st.Intents) != 1 {
		t.Fatalf("fired again after restart without a crossing: %d intents", len(st.Intents))
	}
	if e.m.Interested("ETH/USD") != 1 {
		t.Fatal("signal interest not rebuilt at start-up")
	}
}

// TestMissedAlarmFiresOnceAfterRestart stops the node, lets three hours
// pass, and starts it again: the hourly trigger fires once, not three
// times, and then keeps its schedule from now.
func TestMissedAlarmFiresOnceAfterRestart(t *testing.T) {
	e := newEnv(t)
	u := e.newUser()
	u.create(t, protocol.TriggerSpec{Name: "dca", Condition: protocol.Condition{EveryMs: time.Hour.Milliseconds()}, Action: swap})
	e.m.Close(context.Background())
	e.clock.Advance(3 * time.Hour)
	e.start()
	v, err := e.m.Vault(context.Background(), u.w.Address())
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the missed alarm to fire", func() bool {
		st, _ := v.State(context.Background())
		return len(st.Intents) == 1
	})
	st, _ := v.State(context.Background())
	if next := st.Triggers[0].NextDueAt; next != e.clock.Now().Add(time.Hour).UnixMilli() {
		t.Fatalf("next due %d, want an hour from now", next)
	}
	if len(st.Intents) != 1 {
		t.Fatalf("%d intents after restart, want exactly 1", len(st.Intents))
	}
}

// TestSecondNodeOnTheSameDataIsRefused: vault files are opened without
// SQLite's per-file locks, so the data directory's lock is what keeps a
// second node from writing the same files.
func TestSecondNodeOnTheSameDataIsRefused(t *testing.T) {
	e := newEnv(t)
	_, err := NewManager(Config{Dir: e.dir, Nonces: e.nonces, KEK: testKEK})
	if err == nil || !strings.Contains(err.Error(), "in use by another node") {
		t.Fatalf("a second manager on %s: err = %v, want in use by another node", e.dir, err)
	}
	e.restart() // the first one's Close released it
}
