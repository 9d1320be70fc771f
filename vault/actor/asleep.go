package actor

import (
	"encoding/json"
	"fmt"
	"sort"
	"time"

	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/vault/rules"
	"github.com/spells-dev/spells/vault/store"
)

// Firing a hibernated vault without opening it. The node keeps, for a
// vault that sleeps, the triggers a signal can fire (Asleep). A value that
// crosses one is evaluated there, by the same rules the vault applies
// (rules.EvaluateAll), into a Fired record: the triggers' new states and
// the intents they fired. The node makes the record durable in its firing
// journal (package journal) with many others in one sync, and then the
// vault applies it to its own file (applyJournaled) as the first thing its
// next instance does, before any other letter or event: the vault stays
// the only writer of its file, and the journal record holds each firing
// with its intent in one piece.

// Asleep is what the node keeps of a hibernated vault's triggers to fire
// them without opening its file: the active triggers a signal value can
// change, in the order of their ids, as the file holds them but for what
// an evaluation does not read (the action, the name: the vault takes them
// from its file when it applies a firing), and the vault's next alarm
// without them (its other triggers' schedules and expiries, its backup).
type Asleep struct {
	Triggers []*rules.Trigger
	Rest     int64
}

// asleepOf is the vault's Asleep as it hibernates, or nil if no signal can
// fire it.
func asleepOf(ts map[string]*rules.Trigger, backupDue int64) *Asleep {
	a := &Asleep{Rest: backupDue}
	others := map[string]*rules.Trigger{}
	for id, t := range ts {
		if t.Status == protocol.StatusActive && len(t.Signals()) > 0 {
			slim := t.Clone()
			slim.Name, slim.Action = "", protocol.Action{}
			a.Triggers = append(a.Triggers, slim)
		} else {
			others[id] = t
		}
	}
	if a.Triggers == nil {
		return nil
	}
	sort.Slice(a.Triggers, func(i, j int) bool { return a.Triggers[i].ID < a.Triggers[j].ID })
	if next, _ := rules.Report("", others); next > 0 && (a.Rest == 0 || next < a.Rest) {
		a.Rest = next
	}
	return a
}

// Fired is one event evaluated for a hibernated vault: what it did to
// each trigger it changed. Seq is its number in the node's journal.
type Fired struct {
	Seq      uint64                `json:"-"`
	At       int64                 `json:"at"` // the event's time (unix ms)
	Signal   string                `json:"signal"`
	Value    float64               `json:"value"`
	Origin   protocol.SignalOrigin `json:"origin"`
	Outcomes []FiredOutcome        `json:"outcomes"`
}

// FiredOutcome is one trigger's outcome: the part of the trigger an
// evaluation changes, and the id of the intent it fired. The trigger's
// definition (its condition, its action) is not in the record: the vault
// takes it from its own file.
type FiredOutcome struct {
	Trigger     string      `json:"trigger"`
	Status      string      `json:"status"`
	Fires       int64       `json:"fires"`
	FiredTotal  int64       `json:"firedTotal"`
	LastFiredAt int64       `json:"lastFiredAt,omitempty"`
	NextDueAt   int64       `json:"nextDueAt,omitempty"`
	UpdatedAt   int64       `json:"updatedAt"`
	State       rules.State `json:"state"`
	Kind        string      `json:"kind,omitempty"`
	Detail      string      `json:"detail,omitempty"`
	Intent      string      `json:"intent,omitempty"` // the fired intent's id
}

// Intents returns how many intents the record fired.
func (f *Fired) Intents() int {
	n := 0
	for _, o := range f.Outcomes {
		if o.Intent != "" {
			n++
		}
	}
	return n
}

// Encode is the record as the journal keeps it.
func (f *Fired) Encode() ([]byte, error) { return json.Marshal(f) }

// DecodeFired reads a record the journal kept.
func DecodeFired(seq uint64, b []byte) (*Fired, error) {
	f := &Fired{Seq: seq}
	if err := json.Unmarshal(b, f); err != nil {
		return nil, fmt.Errorf("firing journal record %d: %w", seq, err)
	}
	return f, nil
}

func (f *Fired) event() rules.Event {
	return rules.SignalEvent(f.Signal, f.Value, f.Origin, time.UnixMilli(f.At))
}

// Fire evaluates a signal value on the sleeping vault's triggers, as the
// vault would, and returns the record of what it did (nil: nothing), the
// vault's next alarm and its threshold leaves after it. The triggers in a
// are updated: a stays what the vault's file will hold once it applies
// the record.
func (a *Asleep) Fire(id string, o rules.Offer, now time.Time) (f *Fired, next int64, leaves []rules.Leaf) {
	ev := rules.SignalEvent(o.Signal, o.Value, o.Origin, now)
	kept := a.Triggers[:0]
	for _, t := range a.Triggers {
		out := rules.Evaluate(t, ev)
		if !out.Changed {
			kept = append(kept, t)
			continue
		}
		if f == nil {
			f = &Fired{At: now.UnixMilli(), Signal: o.Signal, Value: o.Value, Origin: o.Origin}
		}
		{
			n := out.Next
			fo := FiredOutcome{Trigger: n.ID, Status: n.Status, Fires: n.Fires, FiredTotal: n.FiredTotal, LastFiredAt: n.LastFiredAt,
				NextDueAt: n.NextDueAt, UpdatedAt: n.UpdatedAt, State: n.State, Kind: out.Kind, Detail: out.Detail}
			if out.Fired {
				fo.Intent = rules.NewID("i_")
			}
			f.Outcomes = append(f.Outcomes, fo)
			if n.Status == protocol.StatusActive {
				kept = append(kept, n)
			} else if w := n.WakeAt(); w > 0 && (a.Rest == 0 || w < a.Rest) {
				a.Rest = w // done or expired: no signal changes it again
			}
		}
	}
	clear(a.Triggers[len(kept):])
	a.Triggers = kept
	next, leaves = rules.ReportOf(id, a.Triggers)
	if a.Rest > 0 && (next == 0 || a.Rest < next) {
		next = a.Rest
	}
	return f, next, leaves
}

// Journaled hands the vault, before its goroutine runs, the records of the
// node's journal it has not applied yet, oldest first: it applies them as
// soon as its file is open.
func (v *Vault) Journaled(fs []*Fired) { v.journaled = fs }

// applyJournaled writes the journal's records for this vault into its
// file, each in a transaction of its own with the journal number it
// applies, so a record applied before a crash is never applied again. The
// node hears of each once it is committed (or found applied already).
func (v *Vault) applyJournaled() error {
	fs := v.journaled
	v.journaled = nil
	if len(fs) == 0 {
		return nil
	}
	applied, err := store.JournalSeq(v.conn)
	if err != nil {
		return err
	}
	for _, f := range fs {
		if f.Seq > applied {
			if _, err := v.write(func(t *store.Tx) error { return v.applyFired(t, f) }); err != nil {
				return fmt.Errorf("apply firing journal record %d: %w", f.Seq, err)
			}
			v.cfg.Metrics.JournalApplied.Inc()
		}
		v.host.Applied(f.Seq)
	}
	return nil
}

// applyFired writes one record: each trigger's new state, its evaluation,
// and the intent it fired, as handle would have.
func (v *Vault) applyFired(t *store.Tx, f *Fired) error {
	ev := f.event()
	for _, fo := range f.Outcomes {
		cur := v.triggers[fo.Trigger]
		if cur == nil {
			v.log.Error().Str("trigger", fo.Trigger).Uint64("journal", f.Seq).Msg("a journaled firing names a trigger the vault does not have; skipped")
			continue
		}
		n := cur.Clone()
		n.Status, n.Fires, n.FiredTotal, n.LastFiredAt = fo.Status, fo.Fires, fo.FiredTotal, fo.LastFiredAt
		n.NextDueAt, n.UpdatedAt = fo.NextDueAt, fo.UpdatedAt
		if len(fo.State.Leaves) != len(cur.State.Leaves) {
			v.log.Error().Str("trigger", fo.Trigger).Uint64("journal", f.Seq).Msg("a journaled firing does not match the trigger's condition; skipped")
			continue
		}
		n.State = fo.State
		out := rules.Outcome{Next: n, Changed: true, Kind: fo.Kind, Detail: fo.Detail, Fired: fo.Intent != ""}
		var in *protocol.Intent
		if out.Fired {
			i := out.IntentWithID(fo.Intent, ev.Now)
			in = &i
		}
		if err := t.Isolate(v.conn, func() error { return v.record(t, ev, out, in) }); err != nil {
			v.recordFailure(t, ev, fo.Trigger, err)
		}
	}
	return store.SetJournalSeq(v.conn, f.Seq)
}
