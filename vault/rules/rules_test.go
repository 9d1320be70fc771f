package rules

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/spells-dev/spells/protocol"
)

var t0 = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

func f64(v float64) *float64 { return &v }

func below(signal string, v float64) protocol.Condition {
	return protocol.Condition{Signal: signal, Op: protocol.OpBelow, Threshold: f64(v)}
}

func above(signal string, v float64) protocol.Condition {
	return protocol.Condition{Signal: signal, Op: protocol.OpAbove, Threshold: f64(v)}
}

var notify = protocol.Action{Kind: "notify"}

func none(string) (float64, bool) { return 0, false }

func latestOf(m map[string]float64) Latest {
	return func(s string) (float64, bool) { v, ok := m[s]; return v, ok }
}

func mustNew(t *testing.T, spec protocol.TriggerSpec, latest Latest) *Trigger {
	t.Helper()
	if err := Validate(&spec, t0); err != nil {
		t.Fatal(err)
	}
	return New(spec, t0, latest)
}

// step applies ev to *tr and returns the outcome.
func step(tr **Trigger, ev Event) Outcome {
	o := Evaluate(*tr, ev)
	*tr = o.Next
	return o
}

func sig(name string, v float64, at time.Duration) Event {
	return SignalEvent(name, v, protocol.SignalOrigin{}, t0.Add(at))
}

// A threshold fires on the crossing from not met to met, never on the
// first value it sees, nor again while it stays met.
func TestThresholdFiresOnTheCrossingOnly(t *testing.T) {
	tr := mustNew(t, protocol.TriggerSpec{Name: "dip", Condition: below("X", 10), Action: notify}, none)
	for i, c := range []struct {
		v     float64
		fired bool
		kind  string
	}{
		{5, false, protocol.OutcomeUpdated}, // first value: learned, not a crossing
		{4, false, ""},                      // still below: nothing changed
		{12, false, protocol.OutcomeUpdated},
		{9, true, protocol.OutcomeFired},
		{8, false, ""},
		{10, false, protocol.OutcomeUpdated}, // not below 10
		{9.99, true, protocol.OutcomeFired},
	} {
		o := step(&tr, sig("X", c.v, time.Duration(i)*time.Second))
		if o.Fired != c.fired || o.Kind != c.kind {
			t.Fatalf("value %g: fired %v kind %q, want %v %q", c.v, o.Fired, o.Kind, c.fired, c.kind)
		}
	}
	if tr.Fires != 2 || tr.FiredTotal != 2 {
		t.Fatalf("fires %d, total %d", tr.Fires, tr.FiredTotal)
	}
	if o := step(&tr, sig("Y", 1, time.Minute)); o.Changed {
		t.Fatal("another signal changed the trigger")
	}
}

// A trigger created with the market already past its threshold starts
// from there: it fires only on a new crossing.
func TestNewTriggerStartsFromTheLatestValue(t *testing.T) {
	tr := mustNew(t, protocol.TriggerSpec{Name: "dip", Condition: below("X", 10), Action: notify}, latestOf(map[string]float64{"X": 5}))
	if o := step(&tr, sig("X", 4, time.Second)); o.Fired {
		t.Fatal("fired without a crossing")
	}
	step(&tr, sig("X", 11, 2*time.Second))
	if o := step(&tr, sig("X", 9, 3*time.Second)); !o.Fired {
		t.Fatal("the crossing did not fire")
	}
}

func TestCooldownAndMaxFires(t *testing.T) {
	tr := mustNew(t, protocol.TriggerSpec{Name: "c", Condition: above("X", 10), Action: notify, CooldownMs: 60_000, MaxFires: 2},
		latestOf(map[string]float64{"X": 0}))
	cross := func(at time.Duration) Outcome {
		step(&tr, sig("X", 0, at))
		return step(&tr, sig("X", 20, at+time.Millisecond))
	}
	if o := cross(time.Second); !o.Fired {
		t.Fatal("first crossing did not fire")
	}
	if o := cross(30 * time.Second); o.Fired || o.Kind != protocol.OutcomeCooldown || !strings.Contains(o.Detail, "cooldown until") {
		t.Fatalf("within the cooldown: %+v", o)
	}
	o := cross(2 * time.Minute)
	if !o.Fired || tr.Status != protocol.StatusDone || !strings.Contains(o.Detail, "2 of 2") {
		t.Fatalf("second firing: %+v, status %s", o, tr.Status)
	}
	if o := cross(10 * time.Minute); o.Fired || o.Changed {
		t.Fatalf("a done trigger changed: %+v", o)
	}
}

// all fires when its last leaf becomes true (an edge of a true leaf, all
// true); any fires on an edge of one of its true leaves.
func TestAllAndAny(t *testing.T) {
	all := mustNew(t, protocol.TriggerSpec{Name: "all", Condition: protocol.Condition{All: []protocol.Condition{below("A", 10), below("B", 10)}}, Action: notify},
		latestOf(map[string]float64{"A": 20, "B": 20}))
	if o := step(&all, sig("A", 5, time.Second)); o.Fired {
		t.Fatal("all fired with one leaf of two")
	}
	if o := step(&all, sig("B", 5, 2*time.Second)); !o.Fired {
		t.Fatal("all did not fire when both held")
	}
	any := mustNew(t, protocol.TriggerSpec{Name: "any", Condition: protocol.Condition{Any: []protocol.Condition{below("A", 10), below("B", 10)}}, Action: notify},
		latestOf(map[string]float64{"A": 20, "B": 20}))
	if o := step(&any, sig("A", 5, time.Second)); !o.Fired {
		t.Fatal("any did not fire on one leaf")
	}
	if o := step(&any, sig("B", 5, 2*time.Second)); !o.Fired {
		t.Fatal("any did not fire on the other leaf's crossing")
	}
}

// A schedule ticks when its time comes and counts on from the tick; a
// one-off time fires once; an expiry ends the trigger.
func TestSchedulesAndExpiry(t *testing.T) {
	every := mustNew(t, protocol.TriggerSpec{Name: "dca", Condition: protocol.Condition{EveryMs: 3_600_000}, Action: notify}, none)
	if every.NextDueAt != t0.Add(time.Hour).UnixMilli() || every.WakeAt() != every.NextDueAt {
		t.Fatalf("next due %d", every.NextDueAt)
	}
	if o := step(&every, AlarmEvent(t0.Add(59*time.Minute))); o.Changed {
		t.Fatal("ticked early")
	}
	late := t0.Add(3 * time.Hour) // a node that was down ticks once, from now
	if o := step(&every, AlarmEvent(late)); !o.Fired || every.NextDueAt != late.Add(time.Hour).UnixMilli() {
		t.Fatalf("tick: %+v, next %d", o, every.NextDueAt)
	}

	at := mustNew(t, protocol.TriggerSpec{Name: "once", Condition: protocol.Condition{AtMs: t0.Add(time.Minute).UnixMilli()}, Action: notify}, none)
	if o := step(&at, AlarmEvent(t0.Add(time.Minute))); !o.Fired {
		t.Fatal("at did not fire")
	}
	if o := step(&at, AlarmEvent(t0.Add(time.Hour))); o.Fired || at.ScheduleDue() != 0 {
		t.Fatal("at fired twice")
	}

	exp := mustNew(t, protocol.TriggerSpec{Name: "e", Condition: below("X", 1), Action: notify, ExpiresAt: t0.Add(time.Minute).UnixMilli()}, none)
	if exp.WakeAt() != exp.ExpiresAt {
		t.Fatal("a trigger does not wake for its expiry")
	}
	o := step(&exp, AlarmEvent(t0.Add(time.Minute)))
	if o.Kind != protocol.OutcomeExpired || exp.Status != protocol.StatusExpired || exp.WakeAt() != 0 {
		t.Fatalf("expiry: %+v, status %s", o, exp.Status)
	}
}

// A firing's intent is keyed by the trigger's firings over its whole life,
// so a redefined trigger never repeats a key.
func TestIntentKeysNeverRepeat(t *testing.T) {
	tr := mustNew(t, protocol.TriggerSpec{Name: "x", Condition: above("X", 10), Action: notify}, latestOf(map[string]float64{"X": 0}))
	o := step(&tr, sig("X", 20, time.Second))
	first := o.Intent(t0)
	spec := tr.TriggerSpec
	tr = Redefine(tr, spec, t0.Add(time.Minute), latestOf(map[string]float64{"X": 0}))
	if tr.Fires != 0 || tr.FiredTotal != 1 {
		t.Fatalf("redefined: fires %d, total %d", tr.Fires, tr.FiredTotal)
	}
	o = step(&tr, sig("X", 20, 2*time.Minute))
	second := o.Intent(t0)
	if first.IdempotencyKey == second.IdempotencyKey || second.IdempotencyKey != tr.ID+"/2" || second.Status != protocol.IntentPending {
		t.Fatalf("keys %q then %q", first.IdempotencyKey, second.IdempotencyKey)
	}
}

// Pause and resume: a paused trigger only expires; a resumed one starts
// its thresholds from the latest values.
func TestPauseAndResume(t *testing.T) {
	tr := mustNew(t, protocol.TriggerSpec{Name: "x", Condition: below("X", 10), Action: notify}, latestOf(map[string]float64{"X": 20}))
	p, err := Pause(tr, t0)
	if err != nil || p.Status != protocol.StatusPaused {
		t.Fatalf("pause: %v %s", err, p.Status)
	}
	if _, err := Pause(p, t0); err == nil {
		t.Fatal("paused twice")
	}
	if o := Evaluate(p, sig("X", 5, time.Second)); o.Changed {
		t.Fatal("a paused trigger evaluated a value")
	}
	r, err := Resume(p, t0.Add(time.Minute), latestOf(map[string]float64{"X": 5}))
	if err != nil || r.Status != protocol.StatusActive {
		t.Fatalf("resume: %v", err)
	}
	if o := step(&r, sig("X", 4, 2*time.Minute)); o.Fired {
		t.Fatal("fired on a crossing that happened while paused")
	}
	if _, err := Resume(r, t0, none); err == nil {
		t.Fatal("resumed an active trigger")
	}
}

func TestValidate(t *testing.T) {
	deep := below("X", 1)
	for i := 0; i < 4; i++ {
		deep = protocol.Condition{All: []protocol.Condition{deep}}
	}
	many := protocol.Condition{}
	for i := 0; i < 17; i++ {
		many.Any = append(many.Any, below("X", float64(i)))
	}
	for _, c := range []struct {
		spec protocol.TriggerSpec
		want string
	}{
		{protocol.TriggerSpec{Name: " ", Condition: below("X", 1), Action: notify}, "name"},
		{protocol.TriggerSpec{Name: "x", Condition: protocol.Condition{Signal: "X", Op: "near", Threshold: f64(1)}, Action: notify}, "operator"},
		{protocol.TriggerSpec{Name: "x", Condition: protocol.Condition{Signal: "X", Op: protocol.OpBelow}, Action: notify}, "threshold"},
		{protocol.TriggerSpec{Name: "x", Condition: protocol.Condition{Signal: "bad name!", Op: protocol.OpBelow, Threshold: f64(1)}, Action: notify}, "signal"},
		{protocol.TriggerSpec{Name: "x", Condition: protocol.Condition{EveryMs: 10}, Action: notify}, "everyMs"},
		{protocol.TriggerSpec{Name: "x", Condition: protocol.Condition{AtMs: t0.UnixMilli()}, Action: notify}, "atMs"},
		{protocol.TriggerSpec{Name: "x", Condition: protocol.Condition{EveryMs: 1000, AtMs: t0.Add(time.Hour).UnixMilli()}, Action: notify}, "exactly one"},
		{protocol.TriggerSpec{Name: "x", Condition: protocol.Condition{All: []protocol.Condition{}}, Action: notify}, "at least one"},
		{protocol.TriggerSpec{Name: "x", Condition: deep, Action: notify}, "deeper"},
		{protocol.TriggerSpec{Name: "x", Condition: many, Action: notify}, "more than 16"},
		{protocol.TriggerSpec{Name: "x", Condition: below("X", 1), Action: protocol.Action{Kind: "launch"}}, "action kind"},
		{protocol.TriggerSpec{Name: "x", Condition: below("X", 1), Action: protocol.Action{Kind: "notify", Params: json.RawMessage(`[1]`)}}, "JSON object"},
		{protocol.TriggerSpec{Name: "x", Condition: below("X", 1), Action: notify, CooldownMs: -1}, "cooldownMs"},
		{protocol.TriggerSpec{Name: "x", Condition: below("X", 1), Action: notify, ExpiresAt: t0.UnixMilli()}, "expiresAt"},
	} {
		err := Validate(&c.spec, t0)
		if pe := protocol.AsError(err); pe == nil || pe.Code != protocol.CodeInvalidTrigger || !strings.Contains(pe.Message, c.want) {
			t.Errorf("%+v: err = %v, want invalid_trigger about %q", c.spec.Condition, err, c.want)
		}
	}
}

// Report gives the earliest wake-up and the active triggers' threshold
// leaves with what they last saw; the index applies a value to a leaf by
// the rule the vault uses.
func TestReportAndLeaves(t *testing.T) {
	a := mustNew(t, protocol.TriggerSpec{Name: "a", Condition: protocol.Condition{Any: []protocol.Condition{below("X", 10), {EveryMs: 60_000}}}, Action: notify},
		latestOf(map[string]float64{"X": 20}))
	b := mustNew(t, protocol.TriggerSpec{Name: "b", Condition: above("Y", 5), Action: notify, Paused: true, ExpiresAt: t0.Add(time.Hour).UnixMilli()}, none)
	next, leaves := Report("v", map[string]*Trigger{a.ID: a, b.ID: b})
	if next != t0.Add(time.Minute).UnixMilli() {
		t.Fatalf("next %d", next)
	}
	if len(leaves) != 1 || leaves[0] != (Leaf{Vault: "v", Trigger: a.ID, N: 0, Signal: "X", Op: protocol.OpBelow, Thr: 10, Known: true}) {
		t.Fatalf("leaves %+v", leaves)
	}
	l := leaves[0]
	if l.Flips(15) || !l.Flips(5) || l.After(5).Flips(4) || !l.After(5).Met {
		t.Fatal("a leaf does not follow the vault's rule")
	}
	if !(Leaf{Op: protocol.OpAbove, Thr: 1}).Flips(0) {
		t.Fatal("a leaf that saw nothing flips on any value")
	}
}

// What the store keeps comes back as it was.
func TestStateEncoding(t *testing.T) {
	tr := mustNew(t, protocol.TriggerSpec{Name: "x", Condition: protocol.Condition{All: []protocol.Condition{below("X", 10), {EveryMs: 1000}}}, Action: notify},
		latestOf(map[string]float64{"X": 5}))
	b, err := tr.EncodeState()
	if err != nil {
		t.Fatal(err)
	}
	back, err := Decode(tr.Trigger, b, 7)
	if err != nil || back.FiredTotal != 7 || len(back.State.Leaves) != 2 || back.State.Leaves[0] != tr.State.Leaves[0] || back.NextDueAt != tr.NextDueAt {
		t.Fatalf("decoded %+v, %v", back, err)
	}
	if _, err := Decode(tr.Trigger, []byte("{"), 0); err == nil {
		t.Fatal("a damaged state decoded")
	}
}

// A leaf that takes only verified values ignores every other: from the
// feed, only the feed's values; from a publisher, only values that
// publisher signed, each after the last it took, none older than five
// minutes nor more than a minute ahead.
func TestVerifiedLeavesTakeOnlyTheirSource(t *testing.T) {
	pub := "0x00000000000000000000000000000000000000AA"
	other := protocol.SignalOrigin{Publisher: "0x00000000000000000000000000000000000000bb", At: t0.UnixMilli()}
	ev := func(v float64, o protocol.SignalOrigin, at time.Duration) Event {
		return SignalEvent("X", v, o, t0.Add(at))
	}
	signed := func(at time.Duration) protocol.SignalOrigin {
		return protocol.SignalOrigin{Publisher: strings.ToLower(pub), At: t0.Add(at).UnixMilli()}
	}
	feedLeaf := below("X", 10)
	feedLeaf.From = protocol.SignalFeed
	tr := mustNew(t, protocol.TriggerSpec{Name: "feed", Condition: feedLeaf, Action: notify}, func(string) (float64, bool) { return 5, true })
	if tr.State.Leaves[0].Known {
		t.Fatal("a leaf that takes only the feed's values took the node's latest value")
	}
	for i, c := range []struct {
		ev    Event
		fired bool
	}{
		{ev(12, protocol.SignalOrigin{}, 1), false},           // a publisher's value: not taken
		{ev(12, protocol.SignalOrigin{Feed: true}, 2), false}, // learned
		{ev(5, other, 3), false},                              // signed, but not the feed's
		{ev(5, protocol.SignalOrigin{Feed: true}, 4), true},   // the feed crossed
	} {
		if o := step(&tr, c.ev); o.Fired != c.fired {
			t.Fatalf("feed leaf, event %d: fired %v", i, o.Fired)
		}
	}
	pubLeaf := below("X", 10)
	pubLeaf.From = pub
	tr = mustNew(t, protocol.TriggerSpec{Name: "pub", Condition: pubLeaf, Action: notify}, none)
	for i, c := range []struct {
		ev    Event
		fired bool
		known bool
	}{
		{ev(12, protocol.SignalOrigin{Feed: true}, time.Second), false, false}, // the feed's: not this leaf's
		{ev(12, other, 2*time.Second), false, false},                           // another publisher
		{ev(12, signed(-6*time.Minute), 3*time.Second), false, false},          // too old
		{ev(12, signed(2*time.Minute), 4*time.Second), false, false},           // too far ahead
		{ev(12, signed(5*time.Second), 5*time.Second), false, true},            // learned
		{ev(5, signed(5*time.Second), 6*time.Second), false, true},             // a replay of its time: not taken
		{ev(5, signed(4*time.Second), 7*time.Second), false, true},             // signed before the last: not taken
		{ev(5, signed(8*time.Second), 8*time.Second), true, true},              // crossed
	} {
		o := step(&tr, c.ev)
		if o.Fired != c.fired || tr.State.Leaves[0].Known != c.known {
			t.Fatalf("publisher leaf, event %d: fired %v, known %v", i, o.Fired, tr.State.Leaves[0].Known)
		}
	}
	bad := below("X", 1)
	bad.From = "somebody"
	if err := Validate(&protocol.TriggerSpec{Name: "bad", Condition: bad, Action: notify}, t0); err == nil || !strings.Contains(err.Error(), "publisher's 0x address") {
		t.Fatalf("from %q: %v", bad.From, err)
	}
}
