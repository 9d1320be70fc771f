package actor

import (
	"fmt"

	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/vault/rules"
	"github.com/spells-dev/spells/vault/store"
)

// Evaluating the vault's triggers on an event (rules.EvaluateAll) and
// writing what it did; telling the host what the vault waits for.

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
			if err := t.Isolate(v.conn, func() error { return v.record(t, ev, o, nil) }); err != nil {
				v.recordFailure(t, ev, o.Next.ID, err)
			}
		}
		return nil
	})
	return err
}

// record writes one trigger's outcome: the trigger, an evaluation when
// something worth showing happened, and the intent when it fired: the
// one given (a journaled firing's, counted when the journal made it
// durable), or a new one.
func (v *Vault) record(t *store.Tx, ev rules.Event, o rules.Outcome, journaled *protocol.Intent) error {
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
	var in protocol.Intent
	if journaled != nil {
		in = *journaled
	} else {
		in = o.Intent(ev.Now)
	}
	if ev.HasValue && in.FiredValue == nil {
		val := ev.Value
		in.FiredValue = &val
	}
	if err := store.InsertIntent(v.conn, in); err != nil {
		return fmt.Errorf("record intent %s: %w", in.IdempotencyKey, err)
	}
	if in.Action.Kind == "notify" {
		if err := v.raiseFired(t, ev, o.Next, in); err != nil {
			return fmt.Errorf("raise the alert of intent %s: %w", in.IdempotencyKey, err)
		}
	}
	t.Then(func() {
		if journaled == nil {
			v.cfg.Metrics.Intents.Inc()
		}
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
	if err := store.InsertEvaluation(v.conn, &e, v.cfg.EvaluationsKeep); err != nil {
		return fmt.Errorf("record evaluation: %w", err)
	}
	t.Then(v.cfg.Metrics.Evaluations.WithLabelValues(kind).Inc)
	return t.Put(protocol.KindEvaluation, fmt.Sprint(e.ID), e)
}

// recordFailure logs and counts an outcome that could not be written, and
// shows it to the owner as a failed evaluation. The trigger keeps its state
// from before the event, so a later crossing evaluates it again.
func (v *Vault) recordFailure(t *store.Tx, ev rules.Event, trigger string, cause error) {
	v.cfg.Metrics.EvaluationFailures.Inc()
	v.log.Error().Err(cause).Str("trigger", trigger).Str("cause", ev.Cause).Msg("trigger evaluation could not be recorded; the other triggers' outcomes are kept")
	detail := "this evaluation could not be recorded (the node logged why); the trigger is evaluated again on the next event"
	if err := t.Isolate(v.conn, func() error { return v.putEvaluation(t, ev, trigger, protocol.OutcomeFailed, detail) }); err != nil {
		v.log.Error().Err(err).Str("trigger", trigger).Msg("record failed evaluation")
	}
}

// report gives the host the vault's next alarm and its threshold leaves,
// and returns the signal values the node knows that a leaf has not seen,
// by index key.
func (v *Vault) report() map[string]rules.Offer {
	next, leaves := rules.Report(v.id, v.triggers)
	if v.backupDue != 0 && (next == 0 || v.backupDue < next) {
		next = v.backupDue // its changes are given to the backup then
	}
	v.next = next
	return v.host.Report(next, leaves)
}

// signal evaluates the vault's triggers on a signal value.
func (v *Vault) signal(o rules.Offer) {
	if v.evaluated == nil {
		v.evaluated = map[string]float64{}
	}
	for _, k := range rules.Keys(o.Signal, o.Origin) {
		v.evaluated[k] = o.Value
	}
	if err := v.handle(rules.SignalEvent(o.Signal, o.Value, o.Origin, v.now())); err != nil {
		v.fault("signal evaluation ("+o.Signal+")", err)
	}
	if o.Origin.Publisher != "" {
		// A publisher's value a leaf did not take (a replay, too old) left
		// the index ahead of the vault: report the leaves as they are.
		v.dirty = true
	}
}

// alarm evaluates the vault's triggers on its alarm ringing.
func (v *Vault) alarm() {
	if err := v.handle(rules.AlarmEvent(v.now())); err != nil {
		v.fault("alarm evaluation", err)
	}
	v.dirty = true // the alarm is set again even when nothing changed
}

// settle runs after every letter and event: it starts the intents the
// evaluations recorded; then, if anything committed, it tells the host
// when to wake the vault next and which thresholds it reacts to, and at
// once evaluates a value the node knows that one of them has not seen (a
// report can race with a value the vault was not sent).
func (v *Vault) settle() {
	v.backupChanges(false)
	v.startFresh()
	if !v.dirty || v.forget {
		return
	}
	v.askNewEvents()
	v.dirty = false
	for key, o := range v.report() {
		if last, ok := v.evaluated[key]; !ok || last != o.Value {
			v.signal(o)
			v.startFresh()
		}
	}
	if v.dirty && !v.forget {
		v.dirty = false
		v.report()
	}
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

// readFailed records, for each trigger with a leaf on read signal name, an
// evaluation that failed and why: the node's read of the chain did (a
// call that reverts, a contract that is not there). The triggers keep
// their state and wait for a value.
func (v *Vault) readFailed(name, why string) {
	var ids []string
	for _, tr := range v.triggers {
		on := false
		rules.WalkLeaves(&tr.Condition, func(c *protocol.Condition) { on = on || c.Signal == name })
		if on && tr.Status == protocol.StatusActive {
			ids = append(ids, tr.ID)
		}
	}
	if len(ids) == 0 {
		return
	}
	_, err := v.write(func(t *store.Tx) error {
		ev := rules.Event{Cause: "signal:" + name, Now: t.Now}
		for _, id := range ids {
			if err := v.putEvaluation(t, ev, id, protocol.OutcomeFailed, "the node's read of the chain failed: "+why+"; the trigger waits for a value"); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		v.fault("record a failed chain read", err)
	}
}
