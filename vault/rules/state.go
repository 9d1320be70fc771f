package rules

import (
	"encoding/json"
	"fmt"

	"github.com/spells-dev/spells/protocol"
)

// Trigger is a trigger with the evaluation state of its condition.
type Trigger struct {
	protocol.Trigger
	State State
	// FiredTotal counts the trigger's firings over its whole life (Fires
	// starts again at an update): the n of its intents' idempotency key
	// <id>/<n>, so no key repeats.
	FiredTotal int64
}

// State is the per-leaf memory of a condition, leaves numbered in
// depth-first order.
type State struct {
	Leaves []LeafState `json:"leaves"`
}

// LeafState remembers what a leaf saw last:
//   - threshold: Known once a value was seen, Met if it satisfied the
//     threshold; a crossing is Known && !Met → Met;
//   - every: NextDue, the next tick (unix ms);
//   - at: Done once it ticked;
//   - a threshold that takes only a publisher's values: At, the time of
//     the last one it took (a value signed earlier is a replay);
//   - an event: P, its cursor (EventAfter).
type LeafState struct {
	Known   bool   `json:"k,omitempty"`
	Met     bool   `json:"m,omitempty"`
	NextDue int64  `json:"n,omitempty"`
	Done    bool   `json:"d,omitempty"`
	At      int64  `json:"t,omitempty"` // the publisher's time of the last signed value taken
	P       uint64 `json:"p,omitempty"` // an event leaf's cursor (LogPos of the last log taken, or BlockEnd)
}

// Decode makes a Trigger of what the store holds: the trigger, its
// state's encoding (EncodeState) and its firings over its life.
func Decode(t protocol.Trigger, state []byte, firedTotal int64) (*Trigger, error) {
	tr := &Trigger{Trigger: t, FiredTotal: firedTotal}
	if err := json.Unmarshal(state, &tr.State); err != nil {
		return nil, fmt.Errorf("trigger %s state: %w", t.ID, err)
	}
	tr.NextDueAt = tr.ScheduleDue()
	return tr, nil
}

// EncodeState is the state as the store keeps it.
func (t *Trigger) EncodeState() ([]byte, error) { return json.Marshal(t.State) }

// WalkLeaves calls fn for every leaf of c in depth-first order.
func WalkLeaves(c *protocol.Condition, fn func(c *protocol.Condition)) {
	if c.All != nil || c.Any != nil {
		for i := range c.All {
			WalkLeaves(&c.All[i], fn)
		}
		for i := range c.Any {
			WalkLeaves(&c.Any[i], fn)
		}
		return
	}
	fn(c)
}

// met is whether value v satisfies a threshold op thr.
func met(op string, thr, v float64) bool {
	if op == protocol.OpBelow {
		return v < thr
	}
	return v > thr
}

// Signals lists the signals the trigger's condition watches.
func (t *Trigger) Signals() []string {
	var out []string
	WalkLeaves(&t.Condition, func(l *protocol.Condition) {
		if l.Signal != "" {
			out = append(out, l.Signal)
		}
	})
	return out
}

// ScheduleDue is the next schedule tick of the trigger (0: none).
func (t *Trigger) ScheduleDue() int64 {
	var next int64
	i := 0
	WalkLeaves(&t.Condition, func(l *protocol.Condition) {
		ls := t.State.Leaves[i]
		i++
		if (l.EveryMs != 0 || (l.AtMs != 0 && !ls.Done)) && ls.NextDue > 0 && (next == 0 || ls.NextDue < next) {
			next = ls.NextDue
		}
	})
	return next
}

// WakeAt is when the vault must wake for this trigger (0: never): its next
// schedule tick while active, or its expiry while active or paused.
func (t *Trigger) WakeAt() int64 {
	var next int64
	if t.Status == protocol.StatusActive {
		next = t.NextDueAt
	}
	if t.ExpiresAt > 0 && (t.Status == protocol.StatusActive || t.Status == protocol.StatusPaused) && (next == 0 || t.ExpiresAt < next) {
		next = t.ExpiresAt
	}
	return next
}

// Clone copies t, its leaf states too.
func (t *Trigger) Clone() *Trigger {
	c := *t
	c.State.Leaves = append([]LeafState(nil), t.State.Leaves...)
	return &c
}
