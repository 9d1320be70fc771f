package main

import (
	"strings"
	"testing"
	"time"

	"github.com/spells-dev/spells/protocol"
)

// TestMoveConditions: "ETH/USD falls 5 % within an hour" fires when the
// price stands 5 % below the hour's highest, not before; the stored
// condition names its move's signal; a move the vault cannot take is
// refused, saying why.
func TestMoveConditions(t *testing.T) {
	tn := startNode(t, testOptions(t), nil)
	s := tn.signIn(t, nil)
	s.alertsTo(t, newWebhook(t).url)
	tn.mustPublish(t, "ETH/USD", 2600)
	tn.mustPublish(t, "ETH/USD", 2580)
	id, v := s.create(t, protocol.TriggerSpec{Name: "crash", Action: protocol.Action{Kind: "notify"},
		Condition: protocol.Condition{Signal: "ETH/USD", Op: protocol.OpBelow, Move: &protocol.Move{Pct: 5, WindowMs: 3_600_000}}})
	s.untilVersion(t, v)
	tr := s.mirror.Triggers[id]
	if c := tr.Condition; !strings.HasPrefix(c.Signal, protocol.MovePrefix) || c.Threshold == nil || *c.Threshold != -5 || c.Move == nil || c.Move.Of != "ETH/USD" {
		t.Fatalf("stored condition %+v", c)
	}
	// The window's highest (2,600, published before the trigger) counts.
	s.mirrorUntil(t, "the move known", func() bool {
		for _, e := range s.mirror.Evaluations {
			if e.TriggerID == id && e.Outcome == protocol.OutcomeUpdated && e.Value != nil && *e.Value < -0.7 && *e.Value > -0.8 {
				return true
			}
		}
		return false
	})
	// -3.85 % does not fire it: the one alert names -5.38.
	tn.mustPublish(t, "ETH/USD", 2500)
	tn.mustPublish(t, "ETH/USD", 2460) // -5.38 %
	a := s.alertWith(t, "the move's alert", func(a protocol.Alert) bool { return a.TriggerID == id })
	n := 0
	for _, x := range s.mirror.AlertLog {
		if x.TriggerID == id {
			n++
		}
	}
	if a.Detail != "ETH/USD's move (%) within 1h0m0s at -5.384615" || n != 1 {
		t.Fatalf("alert %+v, %d alerts for the trigger", a, n)
	}

	for _, c := range []struct {
		cond protocol.Condition
		says string
	}{
		{protocol.Condition{Signal: "ETH/USD", Op: protocol.OpBelow, Move: &protocol.Move{Pct: 0, WindowMs: 3_600_000}}, "pct must be above 0"},
		{protocol.Condition{Signal: "ETH/USD", Op: protocol.OpBelow, Move: &protocol.Move{Pct: 150, WindowMs: 3_600_000}}, "at most 100"},
		{protocol.Condition{Signal: "ETH/USD", Op: protocol.OpBelow, Move: &protocol.Move{Pct: 5, WindowMs: 1000}}, "windowMs must be between"},
		{protocol.Condition{Signal: "ETH/USD", Move: &protocol.Move{Pct: 5, WindowMs: 3_600_000}}, "a move's op"},
		{protocol.Condition{Signal: "ETH/USD", Op: protocol.OpAbove, From: protocol.SignalFeed, Move: &protocol.Move{Pct: 5, WindowMs: 3_600_000}}, "no from"},
		{protocol.Condition{Op: protocol.OpAbove, Move: &protocol.Move{Pct: 5, WindowMs: 3_600_000}}, "needs the signal that moves"},
	} {
		_, err := s.cmd(t, protocol.OpTriggerCreate, protocol.TriggerSpec{Name: "bad", Action: protocol.Action{Kind: "notify"}, Condition: c.cond})
		if err == nil || !strings.Contains(err.Error(), c.says) {
			t.Errorf("move %+v: %v; want it refused saying %q", c.cond.Move, err, c.says)
		}
	}
}

// TestMoveWindow: a window's extreme is the highest (a fall's) or lowest
// (a rise's) value within its span, and values older than the span drop
// out of it.
func TestMoveWindow(t *testing.T) {
	w := &window{drop: true, span: time.Minute}
	at := int64(1_000_000)
	for _, c := range []struct {
		dt   int64
		v    float64
		want float64
	}{
		{0, 100, 0},
		{10_000, 110, 0},
		{20_000, 99, -10},
		{65_000, 104.5, -5},     // 110 (at 10 s) is still within the minute
		{71_000, 99, -5.263158}, // 110 is out; 104.5 is the highest
		{200_000, 50, 0},        // all else is out
	} {
		got, ok := w.push(protocol.Point{Value: c.v, At: at + c.dt})
		if !ok || got != c.want {
			t.Fatalf("at +%d ms, %v: %v %v; want %v", c.dt, c.v, got, ok, c.want)
		}
	}
	r := &window{span: time.Minute}
	r.push(protocol.Point{Value: 100, At: at})
	if got, _ := r.push(protocol.Point{Value: 105, At: at + 1000}); got != 5 {
		t.Fatalf("a rise: %v", got)
	}
}
