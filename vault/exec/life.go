package exec

import (
	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/vault/store"
)

// An intent's life, as the vault drives it: a firing starts it, a vault
// that opens carries on those that have not ended, and each chain result
// takes the step it allows (status.go has the table).

// Start takes a new intent's first step, after the firing that recorded it
// committed: a notify has nothing to execute; anything else is prepared,
// if this node executes.
func (r *Runner) Start(in protocol.Intent) {
	if in.Action.Kind == "notify" {
		r.settle(in, Finish, "nothing to execute: its alert is in the delivery log")
		return
	}
	if r.executes() {
		r.prepare(in)
	}
}

// Resume picks up, when the vault opens, every intent that has not ended:
// a pending notify ends, a pending one is prepared, a signed one sent again (the same bytes), and
// the transactions of a submitted, included or confirmed one followed.
func (r *Runner) Resume() {
	ins, err := store.IntentsWith(r.v.Conn(), OpenStatuses()...)
	if err != nil {
		r.v.Fault("read open intents", err)
		return
	}
	for _, in := range ins {
		switch {
		case in.Action.Kind == "notify" && in.Status == Pending.String():
			// Recorded by a firing whose vault stopped before the notify
			// ended: it has nothing to execute, here as at its start.
			r.settle(in, Finish, "nothing to execute: its alert is in the delivery log")
		case r.executes():
			r.step(in)
		}
	}
}

// step takes the intent's next step from where it is.
func (r *Runner) step(in protocol.Intent) {
	switch in.Status {
	case Pending.String():
		r.prepare(in)
	case Signed.String():
		r.send(in)
	case Submitted.String():
		// The chain's node may have lost it (a restart empties its pool):
		// sending the same bytes again costs nothing if it has it.
		r.node.Executor.track(r.vaultID, in.ID, hashesOf(in))
		r.send(in)
	case Included.String(), Confirmed.String():
		r.node.Executor.track(r.vaultID, in.ID, hashesOf(in))
	}
}

// On handles a chain result for one of the vault's intents: each is taken
// only from the statuses it answers (a late or repeated one is dropped).
func (r *Runner) On(res *Result) {
	if !r.executes() || res.Kind == ResumeIntents {
		return // (opening the vault resumed its intents)
	}
	if res.Kind == DelegationDisabled {
		r.onDisabled(res)
		return
	}
	in, ok, err := store.LoadIntent(r.v.Conn(), res.Intent)
	if err != nil {
		r.v.Fault("read intent "+res.Intent, err)
		return
	}
	if !ok {
		return
	}
	switch st, _ := ParseStatus(in.Status); {
	case res.Kind == RetryStep:
		r.step(in)
	case res.Kind == PrepareDone && st == Pending:
		r.onPrepared(in, res)
	case res.Kind == SendDone && (st == Signed || st == Submitted):
		r.onSent(in, res)
	case res.Kind == ReceiptSeen && (st == Submitted || st == Included || st == Confirmed):
		r.onReceipt(in, res)
	}
}

// CheckAction validates a trigger's action when it is created or changed:
// with a chain, its parameters must resolve and a grant must allow it now
// or once it starts, so a trigger that could never run is refused at once.
func (r *Runner) CheckAction(a protocol.Action, nowMs int64) error {
	if r.node.Chain == nil || a.Kind == "notify" {
		return nil
	}
	act, err := resolve(r.node.Chain, a, r.v.Owner())
	if err != nil {
		return err
	}
	if err := r.plan(act, nowMs, true); err != nil {
		if rf, ok := err.(refusal); ok {
			return invalidAction("this trigger could never run: %s", rf.Error())
		}
		return err
	}
	return nil
}
