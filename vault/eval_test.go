package vault

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/ethereum/go-ethereum/common"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"zombiezen.com/go/sqlite"
	"zombiezen.com/go/sqlite/sqlitemigration"
	"zombiezen.com/go/sqlite/sqlitex"

	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/vault/actor"
	"github.com/spells-dev/spells/vault/store"
)

// intentKeys returns the idempotency keys of u's intents, oldest first.
func intentKeys(t testing.TB, u *user) []string {
	t.Helper()
	var keys []string
	for _, in := range u.state(t).Intents {
		keys = append(keys, in.IdempotencyKey)
	}
	return keys
}

// cross moves signal X above 10 and back below, a crossing of "below 10".
func (e *env) cross(t testing.TB, u *user) {
	t.Helper()
	e.signal(t, u, "X", 15)
	e.signal(t, u, "X", 5)
}

// TestUpdatedTriggerKeepsUniqueIntentKeys: trigger.update starts a
// trigger's fires again, but the n of its idempotency keys <id>/<n> counts
// its whole life, so the firings after an update (and after a restart)
// still record their intents.
func TestUpdatedTriggerKeepsUniqueIntentKeys(t *testing.T) {
	e := newEnv(t)
	e.latest["X"] = 15
	u := e.newUser()
	spec := protocol.TriggerSpec{Name: "x", Condition: below("X", 10), Action: swap}
	id := u.create(t, spec)
	e.cross(t, u)
	u.mustCmd(t, protocol.OpTriggerUpdate, protocol.UpdateArgs{ID: id, Spec: spec})
	if st := u.state(t); st.Triggers[0].Fires != 0 {
		t.Fatalf("fires after the update: %d, want 0 (counters start again)", st.Triggers[0].Fires)
	}
	e.cross(t, u)
	e.restart()
	u = e.signIn(u.w)
	e.cross(t, u)
	want := []string{id + "/1", id + "/2", id + "/3"}
	if got := intentKeys(t, u); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("intent keys %v, want %v", got, want)
	}
	if f := testutil.ToFloat64(e.m.metrics.Actor.EvaluationFailures); f != 0 {
		t.Fatalf("%g evaluations failed", f)
	}
}

// TestOneTriggersFailureKeepsTheOthersFirings: when one trigger's outcome
// cannot be written (here its next intent key is already taken), only that
// trigger's part of the evaluation rolls back: the other trigger on the
// same value fires, and the failure is logged, counted and shown to the
// owner as a failed evaluation. The next crossing evaluates it again.
func TestOneTriggersFailureKeepsTheOthersFirings(t *testing.T) {
	e := newEnv(t)
	e.latest["X"] = 15
	u := e.newUser()
	blocked := u.create(t, protocol.TriggerSpec{Name: "blocked", Condition: below("X", 10), Action: swap})
	other := u.create(t, protocol.TriggerSpec{Name: "other", Condition: below("X", 10), Action: swap})
	block := func(sql string) {
		t.Helper()
		if err := u.v.Inspect(context.Background(), func(conn *sqlite.Conn) error { return sqlitex.ExecuteTransient(conn, sql, nil) }); err != nil {
			t.Fatal(err)
		}
	}
	block(fmt.Sprintf(`INSERT INTO intents (id, trigger_id, idem_key, action, status, created_at) VALUES ('i_x', 'elsewhere', '%s/1', '{}', 'pending', 0);`, blocked))
	e.signal(t, u, "X", 5)
	st := u.state(t)
	var fired, failed int
	for _, ev := range st.Evaluations {
		switch {
		case ev.TriggerID == other && ev.Outcome == protocol.OutcomeFired:
			fired++
		case ev.TriggerID == blocked && ev.Outcome == protocol.OutcomeFailed:
			failed++
		case ev.TriggerID == blocked && ev.Cause != "command":
			t.Fatalf("the blocked trigger recorded %+v", ev)
		}
	}
	if fired != 1 || failed != 1 {
		t.Fatalf("%d firings of the other trigger, %d failed evaluations of the blocked one; want 1 and 1", fired, failed)
	}
	if got := intentKeys(t, u); len(got) != 2 || got[1] != other+"/1" {
		t.Fatalf("intents %v: want the other trigger's", got)
	}
	for _, tr := range st.Triggers {
		if tr.ID == blocked && tr.Fires != 0 {
			t.Fatalf("the blocked trigger counts %d fires, want 0 (its state rolled back)", tr.Fires)
		}
	}
	if f := testutil.ToFloat64(e.m.metrics.Actor.EvaluationFailures); f != 1 {
		t.Fatalf("%g evaluation failures counted, want 1", f)
	}
	block(`DELETE FROM intents WHERE id = 'i_x';`)
	e.cross(t, u)
	want := fmt.Sprint([]string{other + "/1", blocked + "/1", other + "/2"})
	if got := intentKeys(t, u); fmt.Sprint(got) != want && fmt.Sprint(got) != fmt.Sprint([]string{other + "/1", other + "/2", blocked + "/1"}) {
		t.Fatalf("after the next crossing: intents %v, want both triggers' firings %s", got, want)
	}
}

// TestMigratedTriggerStartsAboveItsUsedKeys: a vault file from before the
// lifetime count, whose trigger was updated after it fired (fires reset to
// 0, key <id>/1 taken), fires with a key it never used once migrated.
func TestMigratedTriggerStartsAboveItsUsedKeys(t *testing.T) {
	e := newEnv(t)
	e.latest["X"] = 15
	u := e.newUser()
	id := u.create(t, protocol.TriggerSpec{Name: "x", Condition: below("X", 10), Action: swap})
	e.cross(t, u)
	e.m.Close(context.Background())
	// Rewrite the file as the first schema left it: no fired_total, and
	// the trigger's fires reset by an update.
	p := actor.Path(e.dir, actor.ID(u.w.Address()))
	old := filepath.Join(t.TempDir(), "old.db")
	conn, err := sqlite.OpenConn(old, sqlite.OpenReadWrite|sqlite.OpenCreate)
	if err != nil {
		t.Fatal(err)
	}
	first := store.SchemaAt(1)
	if err := sqlitemigration.Migrate(context.Background(), conn, first); err != nil {
		t.Fatal(err)
	}
	for _, q := range []string{
		fmt.Sprintf(`ATTACH DATABASE '%s' AS cur;`, p),
		`INSERT INTO main.vault SELECT id, address, owner, version, created_at FROM cur.vault;`,
		`INSERT INTO main.sessions SELECT * FROM cur.sessions;`,
		`INSERT INTO main.intents SELECT id, trigger_id, idem_key, action, status, created_at FROM cur.intents;`,
		`INSERT INTO main.changes SELECT * FROM cur.changes;`,
		`INSERT INTO main.triggers SELECT id, spec, status, 0, 0, state, created_at, updated_at FROM cur.triggers;`,
		`DETACH DATABASE cur;`,
	} {
		if err := sqlitex.ExecuteTransient(conn, q, nil); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	if err := conn.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(old)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	os.Remove(p + "-wal")
	e.start()
	u = e.signIn(u.w)
	e.cross(t, u)
	if got := intentKeys(t, u); fmt.Sprint(got) != fmt.Sprint([]string{id + "/1", id + "/2"}) {
		t.Fatalf("intent keys after the migration %v, want %s/1 then %s/2", got, id, id)
	}
	// A file from before vaults held keys gets its keys when opened.
	if st := u.state(t); st.Account == nil || !common.IsHexAddress(st.Account.SessionKey) {
		t.Fatalf("account after the migration %+v, want a session key", st.Account)
	}
}

// TestAckNamesItsCommandsVersion: a command's write can be followed at once
// by an evaluation the index asks for (it knows a newer value than the
// trigger started from), which commits the next version; the ack still
// names the version its command produced.
func TestAckNamesItsCommandsVersion(t *testing.T) {
	e := newEnv(t)
	e.latest["X"] = 15 // what the new trigger starts from
	u := e.newUser()
	e.m.Signal("X", 5) // the index's latest value: it crosses
	before := u.state(t).Version
	ack := u.mustCmd(t, protocol.OpTriggerCreate, protocol.TriggerSpec{Name: "x", Condition: below("X", 10), Action: swap})
	st := u.state(t)
	if len(st.Intents) != 1 || st.Version != before+2 {
		t.Fatalf("version %d with %d intents, want %d and 1 (the create, then the firing)", st.Version, len(st.Intents), before+2)
	}
	if ack.Version != before+1 {
		t.Fatalf("ack names version %d, want %d (its own, not the firing's)", ack.Version, before+1)
	}
}
