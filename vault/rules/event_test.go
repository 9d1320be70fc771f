package rules

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/spells-dev/spells/protocol"
)

// eventLeaf is an event leaf as a vault resolves it (exec.ResolveEvents).
func eventLeaf(fromBlock uint64) protocol.Condition {
	key := EventKey("0x00000000000000000000000000000000000000aa", "Ping(uint256 indexed)", [3]string{})
	return protocol.Condition{Signal: EventSignal(key), Event: &protocol.ChainEvent{Contract: "0x00000000000000000000000000000000000000aA", Signature: "Ping(uint256 indexed i)", FromBlock: fromBlock, Key: key}}
}

func logAt(name string, block uint64, index uint, at time.Duration) Event {
	return LogEvent(name, Log{Pos: LogPos(block, index), Detail: "Ping(1) in block"}, t0.Add(at))
}

// An event leaf holds at each log past its cursor, once: a log at or
// before the cursor (handed over again after a restart) does nothing, and
// a log before its fromBlock is not taken.
func TestEventFiresOncePerLog(t *testing.T) {
	c := eventLeaf(100)
	tr := mustNew(t, protocol.TriggerSpec{Name: "ping", Condition: c, Action: notify}, none)
	name := c.Signal
	if o := step(&tr, logAt(name, 99, 5, time.Second)); o.Fired || o.Changed {
		t.Fatalf("a log before fromBlock: %+v", o)
	}
	for i, c := range []struct {
		block uint64
		index uint
		fired bool
	}{
		{100, 0, true},
		{100, 3, true},
		{100, 3, false}, // the same log again
		{100, 1, false}, // an earlier one
		{101, 0, true},
	} {
		o := step(&tr, logAt(name, c.block, c.index, time.Duration(i+2)*time.Second))
		if o.Fired != c.fired {
			t.Fatalf("log %d (block %d index %d): fired %v, want %v", i, c.block, c.index, o.Fired, c.fired)
		}
		if c.fired && !strings.Contains(o.Detail, "Ping(1)") {
			t.Fatalf("a firing's detail is %q, not the log", o.Detail)
		}
	}
	if tr.Fires != 3 {
		t.Fatalf("fired %d times, want 3", tr.Fires)
	}
	// Handing over every log up to block 105 moves the cursor without an
	// evaluation; a late log of block 104 is then not taken.
	o := step(&tr, ThroughEvent(name, BlockEnd(105), t0.Add(time.Minute)))
	if !o.Changed || o.Kind != "" || o.Fired {
		t.Fatalf("through: %+v", o)
	}
	if o := step(&tr, logAt(name, 104, 9, time.Minute)); o.Fired {
		t.Fatal("a log behind the cursor fired")
	}
	if after, ok := EventCursor(map[string]*Trigger{tr.ID: tr}, name); !ok || after != BlockEnd(105) {
		t.Fatalf("cursor %d (%v), want the end of block 105", after, ok)
	}
	// The cursor is in the state the file keeps.
	b, _ := tr.EncodeState()
	back, err := Decode(tr.Trigger, b, tr.FiredTotal)
	if err != nil || EventAfter(&back.Condition, back.State.Leaves[0]) != BlockEnd(105) {
		t.Fatalf("decoded state %s: %v", b, err)
	}
}

// An event with another condition holds when the log comes while the
// other holds; the leaf is false between logs.
func TestEventInAll(t *testing.T) {
	c := eventLeaf(1)
	tr := mustNew(t, protocol.TriggerSpec{Name: "both", Condition: protocol.Condition{All: []protocol.Condition{c, below("X", 10)}}, Action: notify},
		latestOf(map[string]float64{"X": 20}))
	if o := step(&tr, logAt(c.Signal, 5, 0, time.Second)); o.Fired || o.Kind != protocol.OutcomeUpdated {
		t.Fatalf("a log while X is above: %+v", o)
	}
	if o := step(&tr, sig("X", 5, 2*time.Second)); o.Fired {
		t.Fatal("X's crossing fired without a log")
	}
	if o := step(&tr, logAt(c.Signal, 6, 0, 3*time.Second)); !o.Fired {
		t.Fatal("a log while X is below did not fire")
	}
}

// An event leaf reports its cursor and its filter, not a threshold; a
// condition mixing an event with an op, or naming its own signal, is
// refused.
func TestEventLeavesAndValidation(t *testing.T) {
	c := eventLeaf(7)
	tr := mustNew(t, protocol.TriggerSpec{Name: "ping", Condition: c, Action: notify}, none)
	_, leaves := Report("v", map[string]*Trigger{tr.ID: tr})
	if len(leaves) != 1 || leaves[0].Made != c.Event.Key || leaves[0].Cursor != BlockEnd(6) {
		t.Fatalf("leaves %+v", leaves)
	}
	for _, bad := range []func(c *protocol.Condition){
		func(c *protocol.Condition) { c.Op = protocol.OpAbove },
		func(c *protocol.Condition) { c.Threshold = f64(1) },
		func(c *protocol.Condition) { c.Signal = "ETH/USD" },
		func(c *protocol.Condition) { c.Event.FromBlock = 0 },
		func(c *protocol.Condition) { c.Event.Key = "" },
	} {
		c := eventLeaf(7)
		ev := *c.Event
		c.Event = &ev
		bad(&c)
		spec := protocol.TriggerSpec{Name: "bad", Condition: c, Action: notify}
		if err := Validate(&spec, t0); err == nil {
			b, _ := json.Marshal(c)
			t.Fatalf("accepted %s", b)
		}
	}
	if _, _, _, ok := ParseEventKey(c.Event.Key); !ok {
		t.Fatal("key does not parse back")
	}
	if LogPos(3, 1<<30) >= BlockEnd(3) || PosBlock(BlockEnd(3)) != 3 || LogPos(3, 0) <= BlockEnd(2) {
		t.Fatal("places out of order")
	}
}
