package vault

import (
	"fmt"

	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/vault/rules"
	"github.com/spells-dev/spells/vault/store"
)

// Evaluating the vault's triggers on an event (rules.EvaluateAll) and
// writing what it did.

// handle evaluates every trigger affected by ev and records, in one
// transaction, the evaluations, firings and intents it causes. Each
// trigger's outcome is written in a savepoint of its own: one that cannot
// be written rolls back alone and is recorded as a failed evaluation, so it
// never takes the other triggers' firings with it.
func (v *Vault) handle(ev rules.Event) error {
	if v.conn == nil {
		return nil
	}
	outs := rules.EvaluateAll(v.triggers, ev)
	if len(outs) == 0 {
		return nil
	}
	_, err := v.write(func(t *store.Tx) error {
		for _, o := range outs {
			if err := t.Isolate(v.conn, func() error { return v.record(t, ev, o) }); err != nil {
				v.recordFailure(t, ev, o.Next.ID, err)
			}
		}
		return nil
	})
	return err
}

// record writes one trigger's outcome: the trigger, an evaluation when
// something worth showing happened, and the intent when it fired.
func (v *Vault) record(t *store.Tx, ev rules.Event, o rules.Outcome) error {
	if err := v.putTrigger(t, o.Next); err != nil {
		return err
	}
	if o.Kind == "" {
		return nil
	}
	if err := v.putEvaluation(t, ev, o.Next.ID, o.Kind, o.Detail); err != nil {
		return err
	}
	if !o.Fired {
		return nil
	}
	in := o.Intent(ev.Now)
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
func (v *Vault) putEvaluation(t *store.Tx, ev rules.Event, trigger, kind, detail string) error {
	e := protocol.Evaluation{TriggerID: trigger, At: ev.Now.UnixMilli(), Cause: ev.Cause, Outcome: kind, Detail: detail}
	if ev.HasValue {
		val := ev.Value
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
func (v *Vault) recordFailure(t *store.Tx, ev rules.Event, trigger string, cause error) {
	v.m.metrics.EvaluationFailures.Inc()
	v.log.Error().Err(cause).Str("trigger", trigger).Str("cause", ev.Cause).Msg("trigger evaluation could not be recorded; the other triggers' outcomes are kept")
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
	next, leaves := rules.Report(v.id, v.triggers)
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
	if err := v.handle(rules.SignalEvent(name, value, v.m.now())); err != nil {
		v.fault("signal evaluation ("+name+")", err)
	}
	v.startFresh()
}

// startFresh starts the intents the last evaluations recorded.
func (v *Vault) startFresh() {
	for len(v.fresh) > 0 && !v.forget && v.conn != nil {
		in := v.fresh[0]
		v.fresh = v.fresh[1:]
		v.intents.Start(in)
	}
	v.fresh = nil
}
