package vault

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"zombiezen.com/go/sqlite"
	"zombiezen.com/go/sqlite/sqlitex"

	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/vault/store"
)

func TestInvalidTriggersRefused(t *testing.T) {
	e := newEnv(t)
	u := e.newUser()
	past := t0.Add(-time.Minute).UnixMilli()
	cases := map[string]protocol.TriggerSpec{
		"unknown operator":   {Name: "x", Condition: protocol.Condition{Signal: "ETH/USD", Op: "sideways", Threshold: f64(1)}, Action: swap},
		"no threshold":       {Name: "x", Condition: protocol.Condition{Signal: "ETH/USD", Op: "below"}, Action: swap},
		"bad signal name":    {Name: "x", Condition: below("ETH USD!", 1), Action: swap},
		"negative cooldown":  {Name: "x", Condition: below("ETH/USD", 1), Action: swap, CooldownMs: -1},
		"negative max fires": {Name: "x", Condition: below("ETH/USD", 1), Action: swap, MaxFires: -1},
		"expiry in the past": {Name: "x", Condition: below("ETH/USD", 1), Action: swap, ExpiresAt: past},
		"at in the past":     {Name: "x", Condition: protocol.Condition{AtMs: past}, Action: swap},
		"every too short":    {Name: "x", Condition: protocol.Condition{EveryMs: 10}, Action: swap},
		"two forms":          {Name: "x", Condition: protocol.Condition{EveryMs: 60000, Signal: "ETH/USD"}, Action: swap},
		"empty condition":    {Name: "x", Action: swap},
		"empty all":          {Name: "x", Condition: protocol.Condition{All: []protocol.Condition{}}, Action: swap},
		"no name":            {Name: "  ", Condition: below("ETH/USD", 1), Action: swap},
		"unknown action":     {Name: "x", Condition: below("ETH/USD", 1), Action: protocol.Action{Kind: "rugpull"}},
		"params not object":  {Name: "x", Condition: below("ETH/USD", 1), Action: protocol.Action{Kind: "swap", Params: json.RawMessage(`[1]`)}},
	}
	deep := below("ETH/USD", 1)
	for i := 0; i < 5; i++ {
		deep = protocol.Condition{All: []protocol.Condition{deep}}
	}
	cases["too deep"] = protocol.TriggerSpec{Name: "x", Condition: deep, Action: swap}
	before := u.state(t).Version
	for name, spec := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := u.cmd(t, protocol.OpTriggerCreate, spec)
			wantCode(t, err, protocol.CodeInvalidTrigger)
		})
	}
	if st := u.state(t); st.Version != before || len(st.Triggers) != 0 {
		t.Fatalf("invalid triggers changed the vault: v%d→v%d, %d triggers", before, st.Version, len(st.Triggers))
	}
}

func TestTriggerCRUD(t *testing.T) {
	e := newEnv(t)
	u := e.newUser()
	id := u.create(t, protocol.TriggerSpec{Name: "dip", Condition: below("ETH/USD", 2500), Action: swap})
	if ch := u.sub.diffWith(t, protocol.KindTrigger); ch[0].ID != id || ch[0].Op != protocol.ChangePut {
		t.Fatalf("create diff %+v", ch)
	}
	u.mustCmd(t, protocol.OpTriggerPause, protocol.IDArgs{ID: id})
	if st := u.state(t); st.Triggers[0].Status != protocol.StatusPaused {
		t.Fatalf("status %s after pause", st.Triggers[0].Status)
	}
	if e.m.Interested("ETH/USD") != 0 {
		t.Fatal("a paused trigger still receives signals")
	}
	_, err := u.cmd(t, protocol.OpTriggerPause, protocol.IDArgs{ID: id})
	wantCode(t, err, protocol.CodeInvalidTrigger)
	u.mustCmd(t, protocol.OpTriggerResume, protocol.IDArgs{ID: id})
	u.mustCmd(t, protocol.OpTriggerUpdate, protocol.UpdateArgs{ID: id, Spec: protocol.TriggerSpec{Name: "deeper dip", Condition: below("ETH/USD", 2000), Action: swap}})
	if st := u.state(t); st.Triggers[0].Name != "deeper dip" || *st.Triggers[0].Condition.Threshold != 2000 {
		t.Fatalf("update not applied: %+v", st.Triggers[0])
	}
	u.mustCmd(t, protocol.OpTriggerDelete, protocol.IDArgs{ID: id})
	if st := u.state(t); len(st.Triggers) != 0 {
		t.Fatal("trigger not deleted")
	}
	var del []protocol.Change
	for del == nil || del[0].Op != protocol.ChangeDelete {
		del = u.sub.diffWith(t, protocol.KindTrigger)
	}
	if e.m.Interested("ETH/USD") != 0 {
		t.Fatal("a deleted trigger still receives signals")
	}
}

// signal sends a value and waits until the vault has processed it.
func (e *env) signal(t testing.TB, u *user, name string, v float64) {
	t.Helper()
	e.latest[name] = v
	e.m.Signal(name, v)
	u.state(t) // the mailbox is FIFO: once this returns, the signal was handled
}

func firedCount(t testing.TB, u *user) int {
	return len(u.state(t).Intents)
}

func TestThresholdFiresOnCrossingOnly(t *testing.T) {
	e := newEnv(t)
	e.latest["ETH/USD"] = 2600
	u := e.newUser()
	id := u.create(t, protocol.TriggerSpec{Name: "dip", Condition: below("ETH/USD", 2500), Action: swap})
	e.signal(t, u, "ETH/USD", 2550)
	if n := firedCount(t, u); n != 0 {
		t.Fatalf("fired %d times above the threshold", n)
	}
	e.signal(t, u, "ETH/USD", 2400) // crossing
	e.signal(t, u, "ETH/USD", 2300) // still below: no new firing
	if n := firedCount(t, u); n != 1 {
		t.Fatalf("fired %d times, want 1", n)
	}
	st := u.state(t)
	in := st.Intents[0]
	if in.TriggerID != id || in.IdempotencyKey != id+"/1" || in.Action.Kind != "swap" {
		t.Fatalf("intent %+v", in)
	}
	last := st.Evaluations[len(st.Evaluations)-1]
	if last.Outcome != protocol.OutcomeFired || *last.Value != 2400 || last.Cause != "signal:ETH/USD" {
		t.Fatalf("evaluation %+v", last)
	}
	e.signal(t, u, "ETH/USD", 2600) // back up
	e.signal(t, u, "ETH/USD", 2450) // crosses again
	if n := firedCount(t, u); n != 2 {
		t.Fatalf("fired %d times after a second crossing, want 2", n)
	}
}

func TestFiringPushesEvaluationAndIntentInOneDiff(t *testing.T) {
	e := newEnv(t)
	e.latest["ETH/USD"] = 2600
	u := e.newUser()
	u.create(t, protocol.TriggerSpec{Name: "dip", Condition: below("ETH/USD", 2500), Action: swap})
	u.sub.diffWith(t, protocol.KindTrigger)
	e.signal(t, u, "ETH/USD", 2400)
	f := u.sub.nextOf(t, protocol.TypeDiff)
	kinds := map[string]int{}
	for _, c := range f.Changes {
		kinds[c.Kind]++
	}
	if kinds[protocol.KindTrigger] != 1 || kinds[protocol.KindEvaluation] != 1 || kinds[protocol.KindIntent] != 1 {
		t.Fatalf("firing diff has %v, want one trigger, evaluation and intent", kinds)
	}
}

func TestSignalsReachOnlyInterestedVaults(t *testing.T) {
	e := newEnv(t)
	a, b := e.newUser(), e.newUser()
	a.create(t, protocol.TriggerSpec{Name: "dip", Condition: below("ETH/USD", 2500), Action: swap})
	b.create(t, protocol.TriggerSpec{Name: "btc", Condition: above("BTC/USD", 100000), Action: swap})
	if n := e.m.Signal("ETH/USD", 2600); n != 1 {
		t.Fatalf("ETH/USD dispatched to %d vaults, want 1", n)
	}
	if n := e.m.Signal("SOL/USD", 10); n != 0 {
		t.Fatalf("SOL/USD dispatched to %d vaults, want 0", n)
	}
	vb := b.state(t).Version
	e.signal(t, a, "ETH/USD", 2400)
	if got := b.state(t).Version; got != vb {
		t.Fatal("a vault without an ETH/USD trigger changed on an ETH/USD signal")
	}
}

func TestCooldownAndMaxFires(t *testing.T) {
	e := newEnv(t)
	e.latest["ETH/USD"] = 2600
	u := e.newUser()
	id := u.create(t, protocol.TriggerSpec{Name: "dip", Condition: below("ETH/USD", 2500), Action: swap,
		CooldownMs: time.Minute.Milliseconds(), MaxFires: 2})
	e.signal(t, u, "ETH/USD", 2400) // fires (1)
	e.signal(t, u, "ETH/USD", 2600)
	e.signal(t, u, "ETH/USD", 2400) // crossing within cooldown
	st := u.state(t)
	if len(st.Intents) != 1 || st.Evaluations[len(st.Evaluations)-1].Outcome != protocol.OutcomeCooldown {
		t.Fatalf("within cooldown: %d intents, last outcome %s", len(st.Intents), st.Evaluations[len(st.Evaluations)-1].Outcome)
	}
	e.clock.Advance(time.Minute)
	e.signal(t, u, "ETH/USD", 2600)
	e.signal(t, u, "ETH/USD", 2400) // fires (2): done
	st = u.state(t)
	if len(st.Intents) != 2 || st.Triggers[0].Status != protocol.StatusDone || st.Triggers[0].Fires != 2 {
		t.Fatalf("after cooldown: %d intents, trigger %+v", len(st.Intents), st.Triggers[0])
	}
	e.signal(t, u, "ETH/USD", 2600)
	e.signal(t, u, "ETH/USD", 2400)
	if n := firedCount(t, u); n != 2 {
		t.Fatalf("a done trigger fired again: %d intents", n)
	}
	if e.m.Interested("ETH/USD") != 0 {
		t.Fatalf("done trigger %s still watches its signal", id)
	}
}

func TestAllAndAny(t *testing.T) {
	e := newEnv(t)
	e.latest["ETH/USD"], e.latest["GAS"] = 2600, 50
	u := e.newUser()
	hook := newHookReceiver(t)
	u.mustCmd(t, protocol.OpAlertsSet, protocol.AlertsArgs{Webhook: &protocol.WebhookChannel{URL: hook.URL}})
	u.create(t, protocol.TriggerSpec{Name: "both", Action: swap,
		Condition: protocol.Condition{All: []protocol.Condition{below("ETH/USD", 2500), below("GAS", 20)}}})
	u.create(t, protocol.TriggerSpec{Name: "either", Action: protocol.Action{Kind: "notify"},
		Condition: protocol.Condition{Any: []protocol.Condition{below("ETH/USD", 2500), below("GAS", 20)}}})
	e.signal(t, u, "ETH/USD", 2400) // any fires; all waits for gas
	intents := u.state(t).Intents
	if len(intents) != 1 || intents[0].Action.Kind != "notify" {
		t.Fatalf("after ETH crossing: %+v", intents)
	}
	e.signal(t, u, "GAS", 10) // all fires now; any fires again (a second leaf crossed)
	intents = u.state(t).Intents
	if len(intents) != 3 {
		t.Fatalf("after GAS crossing: %d intents, want 3", len(intents))
	}
}

func TestIntervalAlarmFiresWhenClockMoves(t *testing.T) {
	e := newEnv(t)
	u := e.newUser()
	id := u.create(t, protocol.TriggerSpec{Name: "dca", Condition: protocol.Condition{EveryMs: time.Hour.Milliseconds()}, Action: swap})
	e.clock.Advance(59 * time.Minute)
	if n := firedCount(t, u); n != 0 {
		t.Fatalf("fired %d times before the hour", n)
	}
	e.clock.Advance(time.Minute)
	ch := u.sub.diffWith(t, protocol.KindIntent)
	var in protocol.Intent
	_ = json.Unmarshal(ch[0].Data, &in)
	if in.TriggerID != id {
		t.Fatalf("intent %+v", in)
	}
	e.clock.Advance(time.Hour)
	u.sub.diffWith(t, protocol.KindIntent)
	if n := firedCount(t, u); n != 2 {
		t.Fatalf("%d intents after two hours, want 2", n)
	}
}

func TestExpiryAlarm(t *testing.T) {
	e := newEnv(t)
	u := e.newUser()
	u.create(t, protocol.TriggerSpec{Name: "dip", Condition: below("ETH/USD", 2500), Action: swap, ExpiresAt: t0.Add(time.Hour).UnixMilli()})
	u.sub.diffWith(t, protocol.KindEvaluation) // the creation's own entry
	e.clock.Advance(time.Hour)
	ch := u.sub.diffWith(t, protocol.KindEvaluation)
	var ev protocol.Evaluation
	_ = json.Unmarshal(ch[0].Data, &ev)
	if ev.Outcome != protocol.OutcomeExpired || ev.Cause != "alarm" {
		t.Fatalf("evaluation %+v", ev)
	}
	if st := u.state(t); st.Triggers[0].Status != protocol.StatusExpired {
		t.Fatalf("status %s", st.Triggers[0].Status)
	}
}

func TestOneOffAtFiresOnce(t *testing.T) {
	e := newEnv(t)
	u := e.newUser()
	u.create(t, protocol.TriggerSpec{Name: "once", Condition: protocol.Condition{AtMs: t0.Add(time.Minute).UnixMilli()}, Action: swap})
	e.clock.Advance(time.Minute)
	u.sub.diffWith(t, protocol.KindIntent)
	e.clock.Advance(time.Hour)
	if n := firedCount(t, u); n != 1 {
		t.Fatalf("%d intents, want 1", n)
	}
}

// TestEvaluationLogTrimmed: the evaluation log keeps the newest
// EvaluationsKeep rows, trimmed every store.TrimEvery rows, so it never holds
// fewer than keep once it had them, nor more than keep+store.TrimEvery-1.
func TestEvaluationLogTrimmed(t *testing.T) {
	e := newEnvWith(t, func(e *env) { e.evalKeep, e.latest["X"] = 5, 15 })
	u := e.newUser()
	u.create(t, protocol.TriggerSpec{Name: "x", Condition: below("X", 10), Action: swap})
	deferred := false
	for i := 0; ; i++ {
		e.signal(t, u, "X", float64(5+10*(i%2))) // crosses down, then up, ...
		var count, lo, hi int64
		if err := u.v.Inspect(context.Background(), func(conn *sqlite.Conn) error {
			return sqlitex.ExecuteTransient(conn, "SELECT COUNT(*), MIN(id), MAX(id) FROM evaluations;", &sqlitex.ExecOptions{
				ResultFunc: func(s *sqlite.Stmt) error {
					count, lo, hi = s.ColumnInt64(0), s.ColumnInt64(1), s.ColumnInt64(2)
					return nil
				}})
		}); err != nil {
			t.Fatal(err)
		}
		if hi < 5 {
			continue
		}
		if count < 5 || count > 5+store.TrimEvery-1 || hi-lo+1 != count {
			t.Fatalf("after evaluation %d the log holds %d rows (%d..%d), want the newest 5 to %d", hi, count, lo, hi, 5+store.TrimEvery-1)
		}
		if hi%store.TrimEvery == 0 && count != 5 {
			t.Fatalf("evaluation %d should have trimmed the log to 5 rows, it holds %d", hi, count)
		}
		deferred = deferred || count > 5
		if hi > 3*store.TrimEvery {
			break
		}
		if i > 10*store.TrimEvery {
			t.Fatalf("%d signals made only %d evaluations", i, hi)
		}
	}
	if !deferred {
		t.Fatal("the log was trimmed at every evaluation, want every store.TrimEvery")
	}
}
