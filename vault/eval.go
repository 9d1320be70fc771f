package vault

import (
	"fmt"
	"sort"
	"time"

	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/vault/store"
)

// event is what makes a vault evaluate its triggers: a signal value or an
// alarm.
type event struct {
	cause    string // "signal:NAME" or "alarm"
	signal   string // set for signals
	value    float64
	hasValue bool
	now      time.Time
}

// outcome of evaluating one trigger on one event.
type outcome struct {
	next    *trigger // the trigger after the event
	changed bool     // next differs from the stored trigger
	kind    string   // protocol.Outcome*, empty when nothing worth recording happened
	detail  string
	fired   bool
}

// evaluate computes, without side effects, what ev does to t.
func evaluate(t *trigger, ev event) outcome {
	now := ev.now.UnixMilli()
	out := outcome{next: t.clone()}
	n := out.next
	if n.ExpiresAt > 0 && now >= n.ExpiresAt && (n.Status == protocol.StatusActive || n.Status == protocol.StatusPaused) {
		n.Status, n.UpdatedAt = protocol.StatusExpired, now
		out.changed, out.kind, out.detail = true, protocol.OutcomeExpired, "expiry reached"
		return out
	}
	if n.Status != protocol.StatusActive {
		return out
	}
	e := evaluator{ev: ev, st: n.state.Leaves}
	value, edge := e.eval(&n.Condition)
	out.changed = e.changed
	if value && edge {
		out.changed = true
		if n.CooldownMs > 0 && n.LastFiredAt > 0 && now < n.LastFiredAt+n.CooldownMs {
			out.kind = protocol.OutcomeCooldown
			out.detail = fmt.Sprintf("cooldown until %s", time.UnixMilli(n.LastFiredAt+n.CooldownMs).UTC().Format(time.RFC3339))
		} else {
			n.Fires++
			n.firedTotal++
			n.LastFiredAt = now
			out.fired, out.kind = true, protocol.OutcomeFired
			if n.MaxFires > 0 && n.Fires >= n.MaxFires {
				n.Status = protocol.StatusDone
				out.detail = fmt.Sprintf("fired %d of %d times; done", n.Fires, n.MaxFires)
			}
		}
	} else if e.changed {
		out.kind = protocol.OutcomeUpdated
		out.detail = e.detail
	}
	if out.changed {
		n.NextDueAt = n.scheduleDue()
		n.UpdatedAt = now
	}
	return out
}

// evaluator walks a condition tree once, updating leaf states in order.
type evaluator struct {
	ev      event
	st      []leafState
	i       int
	changed bool
	detail  string
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
	now := e.ev.now.UnixMilli()
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
	default:
		return e.threshold(c, ls)
	}
	return false, false
}

func (e *evaluator) threshold(c *protocol.Condition, ls *leafState) (value, edge bool) {
	if e.ev.hasValue && e.ev.signal == c.Signal {
		met := thresholdMet(c, e.ev.value)
		edge = ls.Known && !ls.Met && met
		if !ls.Known || ls.Met != met {
			e.changed = true
			e.detail = fmt.Sprintf("%s %s %g is now %t", c.Signal, c.Op, *c.Threshold, met)
		}
		ls.Known, ls.Met = true, met
	}
	return ls.Known && ls.Met, edge
}

// handle evaluates every trigger affected by ev and records, in one
// transaction, the evaluations, firings and intents it causes. Each
// trigger's outcome is written in a savepoint of its own: one that cannot
// be written rolls back alone and is recorded as a failed evaluation, so it
// never takes the other triggers' firings with it.
func (v *Vault) handle(ev event) error {
	if v.conn == nil {
		return nil
	}
	ids := make([]string, 0, len(v.triggers))
	for id := range v.triggers {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	var outs []outcome
	for _, id := range ids {
		if o := evaluate(v.triggers[id], ev); o.changed {
			outs = append(outs, o)
		}
	}
	if len(outs) == 0 {
		return nil
	}
	_, err := v.write(func(t *store.Tx) error {
		for _, o := range outs {
			if err := t.Isolate(v.conn, func() error { return v.record(t, ev, o) }); err != nil {
				v.recordFailure(t, ev, o.next.ID, err)
			}
		}
		return nil
	})
	return err
}

// record writes one trigger's outcome: the trigger, an evaluation when
// something worth showing happened, and the intent when it fired.
func (v *Vault) record(t *store.Tx, ev event, o outcome) error {
	if err := v.putTrigger(t, o.next); err != nil {
		return err
	}
	if o.kind == "" {
		return nil
	}
	if err := v.putEvaluation(t, ev, o.next.ID, o.kind, o.detail); err != nil {
		return err
	}
	if !o.fired {
		return nil
	}
	in := protocol.Intent{ID: newID("i_"), TriggerID: o.next.ID, IdempotencyKey: fmt.Sprintf("%s/%d", o.next.ID, o.next.firedTotal),
		Action: o.next.Action, Status: "pending", CreatedAt: ev.now.UnixMilli()}
	if err := store.InsertIntent(v.conn, in); err != nil {
		return fmt.Errorf("record intent %s: %w", in.IdempotencyKey, err)
	}
	t.Then(func() {
		v.m.metrics.Intents.Inc()
		v.fresh = append(v.fresh, in)
	})
	return t.Put(protocol.KindIntent, in.ID, in)
}

// putEvaluation writes an evaluation row and records it in the diff.
func (v *Vault) putEvaluation(t *store.Tx, ev event, trigger, kind, detail string) error {
	e := protocol.Evaluation{TriggerID: trigger, At: ev.now.UnixMilli(), Cause: ev.cause, Outcome: kind, Detail: detail}
	if ev.hasValue {
		val := ev.value
		e.Value = &val
	}
	if err := store.InsertEvaluation(v.conn, &e, v.m.cfg.EvaluationsKeep); err != nil {
		return fmt.Errorf("record evaluation: %w", err)
	}
	t.Then(v.m.metrics.Evaluations.WithLabelValues(kind).Inc)
	return t.Put(protocol.KindEvaluation, fmt.Sprint(e.ID), e)
}

// recordFailure logs and counts an outcome that could not be written, and
// shows it to the owner as a failed evaluation. The trigger keeps its state
// from before the event, so a later crossing evaluates it again.
func (v *Vault) recordFailure(t *store.Tx, ev event, trigger string, cause error) {
	v.m.metrics.EvaluationFailures.Inc()
	v.log.Error().Err(cause).Str("trigger", trigger).Str("cause", ev.cause).Msg("trigger evaluation could not be recorded; the other triggers' outcomes are kept")
	detail := "this evaluation could not be recorded (the node logged why); the trigger is evaluated again on the next event"
	if err := t.Isolate(v.conn, func() error { return v.putEvaluation(t, ev, trigger, protocol.OutcomeFailed, detail) }); err != nil {
		v.log.Error().Err(err).Str("trigger", trigger).Msg("record failed evaluation")
	}
}

// afterChange tells the manager when to wake the vault next and which
// signal thresholds it reacts to. If the index knows a newer value than
// one of the thresholds has seen, the vault evaluates it now.
func (v *Vault) afterChange() {
	resend := v.report()
	if v.resending {
		return
	}
	v.resending = true
	for name, value := range resend {
		if last, ok := v.evaluated[name]; !ok || last != value {
			v.signal(name, value)
		}
	}
	v.resending = false
}

// report gives the manager the vault's next alarm and its threshold
// leaves, and returns the signal values the index says it has not seen.
func (v *Vault) report() map[string]float64 {
	var next int64
	var leaves []leaf
	for _, t := range v.triggers {
		if due := t.wakeAt(); due > 0 && (next == 0 || due < next) {
			next = due
		}
		if t.Status != protocol.StatusActive {
			continue
		}
		i := 0
		walkLeaves(&t.Condition, func(c *protocol.Condition) {
			if c.Signal != "" {
				ls := t.state.Leaves[i]
				leaves = append(leaves, leaf{vault: v.id, trigger: t.ID, n: i, signal: c.Signal, op: c.Op,
					thr: *c.Threshold, known: ls.Known, met: ls.Met})
			}
			i++
		})
	}
	v.next = next
	v.m.setAlarm(v, next)
	return v.m.index.set(v.id, leaves)
}

// signal evaluates the vault's triggers on a signal value.
func (v *Vault) signal(name string, value float64) {
	if v.evaluated == nil {
		v.evaluated = map[string]float64{}
	}
	v.evaluated[name] = value
	if err := v.handle(event{cause: "signal:" + name, signal: name, value: value, hasValue: true, now: v.m.now()}); err != nil {
		v.fault("signal evaluation ("+name+")", err)
	}
	v.startFresh()
}

// startFresh starts the intents the last evaluations recorded.
func (v *Vault) startFresh() {
	for len(v.fresh) > 0 && !v.forget && v.conn != nil {
		in := v.fresh[0]
		v.fresh = v.fresh[1:]
		v.startIntent(in)
	}
	v.fresh = nil
}
