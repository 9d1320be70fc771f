package rules

import (
	"fmt"
	"sort"
	"time"

	"github.com/spells-dev/spells/protocol"
)

// Event is what makes a vault evaluate its triggers: a signal value or an
// alarm.
type Event struct {
	Cause    string // "signal:NAME" or "alarm"
	Signal   string // set for signals
	Value    float64
	HasValue bool
	Origin   protocol.SignalOrigin // where the value came from
	Log      *Log                  // a log of event signal Signal
	Through  uint64                // every log of event signal Signal up to this place was handed over
	Now      time.Time
}

// SignalEvent is the event of a value of signal name, from origin, at now.
func SignalEvent(name string, value float64, origin protocol.SignalOrigin, now time.Time) Event {
	return Event{Cause: "signal:" + name, Signal: name, Value: value, HasValue: true, Origin: origin, Now: now}
}

// Publisher values older than maxSignalAge, or more than maxSignalAhead
// ahead of the vault's clock, are not taken.
const (
	maxSignalAge   = 5 * time.Minute
	maxSignalAhead = time.Minute
)

// takes reports whether a leaf that takes values only from from (and has
// taken a publisher's value of time ls.At) takes the event's value: a
// feed's, or the publisher's, signed no longer than maxSignalAge ago and
// after the last it took (a replayed or reordered value is not taken).
func (e *evaluator) takes(from string, ls *LeafState) bool {
	o := e.ev.Origin
	if from == "" || from == protocol.SignalFeed {
		return o.Accepts(from)
	}
	now := e.ev.Now
	return o.Accepts(from) && o.At > ls.At && o.At >= now.Add(-maxSignalAge).UnixMilli() && o.At <= now.Add(maxSignalAhead).UnixMilli()
}

// AlarmEvent is the event of an alarm ringing at now.
func AlarmEvent(now time.Time) Event { return Event{Cause: "alarm", Now: now} }

// Outcome is what one event did to one trigger.
type Outcome struct {
	Next    *Trigger // the trigger after the event
	Changed bool     // Next differs from the trigger before
	Kind    string   // protocol.Outcome*, empty when nothing worth recording happened
	Detail  string
	Fired   bool
}

// Evaluate computes, without side effects, what ev does to t.
func Evaluate(t *Trigger, ev Event) Outcome {
	now := ev.Now.UnixMilli()
	out := Outcome{Next: t.Clone()}
	n := out.Next
	if n.ExpiresAt > 0 && now >= n.ExpiresAt && (n.Status == protocol.StatusActive || n.Status == protocol.StatusPaused) {
		n.Status, n.UpdatedAt = protocol.StatusExpired, now
		out.Changed, out.Kind, out.Detail = true, protocol.OutcomeExpired, "expiry reached"
		return out
	}
	if n.Status != protocol.StatusActive {
		return out
	}
	e := evaluator{ev: ev, st: n.State.Leaves}
	value, edge := e.eval(&n.Condition)
	out.Changed = e.changed
	if value && edge {
		out.Changed = true
		if n.CooldownMs > 0 && n.LastFiredAt > 0 && now < n.LastFiredAt+n.CooldownMs {
			out.Kind = protocol.OutcomeCooldown
			out.Detail = fmt.Sprintf("cooldown until %s", time.UnixMilli(n.LastFiredAt+n.CooldownMs).UTC().Format(time.RFC3339))
		} else {
			n.Fires++
			n.FiredTotal++
			n.LastFiredAt = now
			out.Fired, out.Kind = true, protocol.OutcomeFired
			out.Detail = e.log
			if n.MaxFires > 0 && n.Fires >= n.MaxFires {
				n.Status = protocol.StatusDone
				done := fmt.Sprintf("fired %d of %d times; done", n.Fires, n.MaxFires)
				if out.Detail != "" {
					done = out.Detail + "; " + done
				}
				out.Detail = done
			}
		}
	} else if e.changed && e.detail != "" {
		out.Kind = protocol.OutcomeUpdated
		out.Detail = e.detail
	}
	if out.Changed {
		n.NextDueAt = n.ScheduleDue()
		n.UpdatedAt = now
	}
	return out
}

// EvaluateAll evaluates every trigger on ev and returns the outcomes that
// changed something, in the order of the triggers' ids.
func EvaluateAll(ts map[string]*Trigger, ev Event) []Outcome {
	ids := make([]string, 0, len(ts))
	for id := range ts {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	var outs []Outcome
	for _, id := range ids {
		if o := Evaluate(ts[id], ev); o.Changed {
			outs = append(outs, o)
		}
	}
	return outs
}

// Intent is the intent a firing records: the trigger's action, with the
// idempotency key <trigger>/<n> of its n-th firing over its whole life.
func (o Outcome) Intent(now time.Time) protocol.Intent { return o.IntentWithID(NewID("i_"), now) }

// IntentWithID is Intent with the intent's id given.
func (o Outcome) IntentWithID(id string, now time.Time) protocol.Intent {
	t := o.Next
	return protocol.Intent{ID: id, TriggerID: t.ID, IdempotencyKey: fmt.Sprintf("%s/%d", t.ID, t.FiredTotal),
		Action: t.Action, Grant: t.Grant, Status: protocol.IntentPending, CreatedAt: now.UnixMilli()}
}

// evaluator walks a condition tree once, updating leaf states in order.
type evaluator struct {
	ev      Event
	st      []LeafState
	i       int
	changed bool
	detail  string
	log     string // the log an event leaf took, in words
}

// eval returns the condition's value now and whether one of its true
// leaves has an edge now (a crossing or a schedule tick). A trigger fires
// when both hold.
func (e *evaluator) eval(c *protocol.Condition) (value, edge bool) {
	switch {
	case c.All != nil:
		value = true
		for i := range c.All {
			v, ed := e.eval(&c.All[i])
			value, edge = value && v, edge || ed
		}
		return value, edge
	case c.Any != nil:
		for i := range c.Any {
			v, ed := e.eval(&c.Any[i])
			value, edge = value || v, edge || (v && ed)
		}
		return value, edge
	}
	ls := &e.st[e.i]
	e.i++
	now := e.ev.Now.UnixMilli()
	switch {
	case c.EveryMs != 0:
		if ls.NextDue > 0 && now >= ls.NextDue {
			ls.NextDue = now + c.EveryMs
			e.changed, e.detail = true, "schedule ticked"
			return true, true
		}
	case c.AtMs != 0:
		if !ls.Done && now >= c.AtMs {
			ls.Done, ls.NextDue = true, 0
			e.changed, e.detail = true, "time reached"
			return true, true
		}
	case c.Event != nil:
		return e.event(c, ls)
	default:
		return e.threshold(c, ls)
	}
	return false, false
}

// event takes a log past the leaf's cursor (the leaf holds, with an edge,
// for this log only), or moves the cursor over logs handed over.
func (e *evaluator) event(c *protocol.Condition, ls *LeafState) (value, edge bool) {
	if e.ev.Signal != c.Signal {
		return false, false
	}
	after := EventAfter(c, *ls)
	switch {
	case e.ev.Log != nil && e.ev.Log.Pos > after:
		ls.P = e.ev.Log.Pos
		e.changed, e.log = true, e.ev.Log.Detail
		e.detail = e.ev.Log.Detail + ": taken"
		return true, true
	case e.ev.Log == nil && e.ev.Through > after:
		ls.P = e.ev.Through
		e.changed = true // the cursor moved: written, nothing to show
	}
	return false, false
}

func (e *evaluator) threshold(c *protocol.Condition, ls *LeafState) (value, edge bool) {
	if e.ev.HasValue && e.ev.Signal == c.Signal && e.takes(NormFrom(c.From), ls) {
		if c.From != "" && c.From != protocol.SignalFeed {
			ls.At = e.ev.Origin.At
		}
		m := met(c.Op, *c.Threshold, e.ev.Value)
		edge = ls.Known && !ls.Met && m
		if !ls.Known || ls.Met != m {
			e.changed = true
			e.detail = fmt.Sprintf("%s %s %g is now %t", c.Signal, c.Op, *c.Threshold, m)
		}
		ls.Known, ls.Met = true, m
	}
	return ls.Known && ls.Met, edge
}
