package rules

import (
	"crypto/rand"
	"encoding/hex"
	"strings"
	"time"

	"github.com/spells-dev/spells/protocol"
)

// Latest returns the newest value of a signal known to the node.
type Latest func(signal string) (float64, bool)

// NewID returns a random id with prefix ("t_" for a trigger, "i_" for an
// intent).
func NewID(prefix string) string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// Initial sets up the leaf state of a new or redefined condition:
// schedules start counting now, thresholds start from the latest known
// value (so a trigger created below its threshold does not fire until a
// new crossing).
func Initial(c *protocol.Condition, now time.Time, latest Latest) State {
	var st State
	WalkLeaves(c, func(l *protocol.Condition) {
		var ls LeafState
		switch {
		case l.EveryMs != 0:
			ls.NextDue = now.UnixMilli() + l.EveryMs
		case l.AtMs != 0:
			ls.NextDue = l.AtMs
		case l.Event != nil:
			// Its cursor starts before its fromBlock (EventAfter).
		default:
			// The node's latest value has no origin: a leaf that takes
			// only verified values waits for one.
			if val, ok := latest(l.Signal); ok && l.From == "" {
				ls.Known, ls.Met = true, met(l.Op, *l.Threshold, val)
			}
		}
		st.Leaves = append(st.Leaves, ls)
	})
	return st
}

// New makes a trigger of a validated spec (Validate), at now.
func New(spec protocol.TriggerSpec, now time.Time, latest Latest) *Trigger {
	ms := now.UnixMilli()
	t := &Trigger{Trigger: protocol.Trigger{ID: NewID("t_"), TriggerSpec: spec, Status: protocol.StatusActive, CreatedAt: ms, UpdatedAt: ms}}
	if spec.Paused {
		t.Status = protocol.StatusPaused
	}
	t.State = Initial(&t.Condition, now, latest)
	t.NextDueAt = t.ScheduleDue()
	return t
}

// Redefine gives old a new validated spec at now: it starts again, active
// (or paused), with fresh state and no firings counted (FiredTotal goes on).
func Redefine(old *Trigger, spec protocol.TriggerSpec, now time.Time, latest Latest) *Trigger {
	t := old.Clone()
	t.TriggerSpec = spec
	t.Status = protocol.StatusActive
	if spec.Paused {
		t.Status = protocol.StatusPaused
	}
	t.Fires, t.LastFiredAt, t.UpdatedAt = 0, 0, now.UnixMilli()
	t.State = Initial(&t.Condition, now, latest)
	t.NextDueAt = t.ScheduleDue()
	return t
}

// Pause pauses an active trigger.
func Pause(old *Trigger, now time.Time) (*Trigger, error) {
	if old.Status != protocol.StatusActive {
		return nil, refused(old, protocol.OpTriggerPause)
	}
	t := old.Clone()
	t.Status, t.Paused, t.UpdatedAt = protocol.StatusPaused, true, now.UnixMilli()
	return t, nil
}

// Resume resumes a paused trigger. Its inputs moved while it was paused:
// its thresholds start again from the latest values, and a schedule that
// came due meanwhile ticks once.
func Resume(old *Trigger, now time.Time, latest Latest) (*Trigger, error) {
	if old.Status != protocol.StatusPaused {
		return nil, refused(old, protocol.OpTriggerResume)
	}
	t := old.Clone()
	t.Status, t.Paused, t.UpdatedAt = protocol.StatusActive, false, now.UnixMilli()
	fresh := Initial(&t.Condition, now, latest)
	i := 0
	WalkLeaves(&t.Condition, func(l *protocol.Condition) {
		if l.Signal != "" {
			t.State.Leaves[i] = fresh.Leaves[i]
		}
		i++
	})
	return t, nil
}

func refused(t *Trigger, op string) error {
	return protocol.Errorf(protocol.CodeInvalidTrigger, "trigger %s is %s; cannot %s", t.ID, t.Status, strings.TrimPrefix(op, "trigger."))
}

// CommandOutcomes names what each trigger command did, for its entry in
// the activity.
var CommandOutcomes = map[string]string{
	protocol.OpTriggerCreate: protocol.OutcomeCreated,
	protocol.OpTriggerUpdate: protocol.OutcomeEdited,
	protocol.OpTriggerPause:  protocol.OutcomePaused,
	protocol.OpTriggerResume: protocol.OutcomeResumed,
	protocol.OpTriggerDelete: protocol.OutcomeDeleted,
}
