package vault

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math"
	"regexp"
	"strings"
	"time"

	"zombiezen.com/go/sqlite"

	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/vault/store"
)

// trigger is a stored trigger with the evaluation state of its condition.
type trigger struct {
	protocol.Trigger
	state triggerState
	// firedTotal counts the trigger's firings over its whole life (Fires
	// starts again at an update); the n of its intents' idempotency key
	// <id>/<n>, so no key repeats.
	firedTotal int64
}

// triggerState is the per-leaf memory of a condition, leaves numbered in
// depth-first order.
type triggerState struct {
	Leaves []leafState `json:"leaves"`
}

// leafState remembers what a leaf saw last:
//   - threshold: Known once a value was seen, Met if it satisfied the
//     threshold; a crossing is Known && !Met → Met;
//   - every: NextDue, the next tick (unix ms);
//   - at: Done once it ticked.
type leafState struct {
	Known   bool  `json:"k,omitempty"`
	Met     bool  `json:"m,omitempty"`
	NextDue int64 `json:"n,omitempty"`
	Done    bool  `json:"d,omitempty"`
}

// Limits on trigger definitions.
const (
	maxNameLen    = 100
	maxLeaves     = 16
	maxDepth      = 4
	maxParamsSize = 4096
	minEvery      = time.Second
	maxEvery      = 366 * 24 * time.Hour
)

var signalNameRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9/_.:\-]{0,63}$`)

func invalid(format string, args ...any) error {
	return protocol.Errorf(protocol.CodeInvalidTrigger, format, args...)
}

// validateSpec refuses a trigger definition that cannot work, at time now.
func validateSpec(s *protocol.TriggerSpec, now time.Time) error {
	s.Name = strings.TrimSpace(s.Name)
	if s.Name == "" || len(s.Name) > maxNameLen {
		return invalid("name must be 1 to %d characters", maxNameLen)
	}
	leaves := 0
	if err := validateCondition(&s.Condition, now, 1, &leaves); err != nil {
		return err
	}
	if !validKind(s.Action.Kind) {
		return invalid("action kind %q is not one of %s", s.Action.Kind, strings.Join(protocol.ActionKinds, ", "))
	}
	if len(s.Action.Params) > 0 {
		if len(s.Action.Params) > maxParamsSize {
			return invalid("action params larger than %d bytes", maxParamsSize)
		}
		var obj map[string]any
		if err := json.Unmarshal(s.Action.Params, &obj); err != nil || obj == nil {
			return invalid("action params must be a JSON object")
		}
	}
	if s.CooldownMs < 0 {
		return invalid("cooldownMs must not be negative")
	}
	if s.MaxFires < 0 {
		return invalid("maxFires must not be negative")
	}
	if s.ExpiresAt != 0 && s.ExpiresAt <= now.UnixMilli() {
		return invalid("expiresAt is in the past")
	}
	return nil
}

func validKind(k string) bool {
	for _, a := range protocol.ActionKinds {
		if a == k {
			return true
		}
	}
	return false
}

func validateCondition(c *protocol.Condition, now time.Time, depth int, leaves *int) error {
	if depth > maxDepth {
		return invalid("condition nested deeper than %d", maxDepth)
	}
	forms := 0
	for _, set := range []bool{c.Signal != "" || c.Op != "" || c.Threshold != nil, c.EveryMs != 0, c.AtMs != 0, c.All != nil, c.Any != nil} {
		if set {
			forms++
		}
	}
	if forms != 1 {
		return invalid("a condition needs exactly one of signal/op/threshold, everyMs, atMs, all, any")
	}
	if c.All != nil || c.Any != nil {
		kids := append(c.All, c.Any...)
		if len(kids) == 0 {
			return invalid("all/any needs at least one condition")
		}
		for i := range kids {
			if err := validateCondition(&kids[i], now, depth+1, leaves); err != nil {
				return err
			}
		}
		return nil
	}
	if *leaves++; *leaves > maxLeaves {
		return invalid("more than %d conditions in one trigger", maxLeaves)
	}
	return validateLeaf(c, now)
}

func validateLeaf(c *protocol.Condition, now time.Time) error {
	switch {
	case c.EveryMs != 0:
		if d := time.Duration(c.EveryMs) * time.Millisecond; d < minEvery || d > maxEvery {
			return invalid("everyMs must be between %d and %d", minEvery.Milliseconds(), maxEvery.Milliseconds())
		}
	case c.AtMs != 0:
		if c.AtMs <= now.UnixMilli() {
			return invalid("atMs is in the past")
		}
	default:
		if !signalNameRe.MatchString(c.Signal) {
			return invalid("signal %q is not a valid signal name", c.Signal)
		}
		if c.Op != protocol.OpBelow && c.Op != protocol.OpAbove {
			return invalid("unknown signal operator %q (use %q or %q)", c.Op, protocol.OpBelow, protocol.OpAbove)
		}
		if c.Threshold == nil || math.IsNaN(*c.Threshold) || math.IsInf(*c.Threshold, 0) {
			return invalid("threshold must be a finite number")
		}
	}
	return nil
}

// walkLeaves calls fn for every leaf of c in depth-first order.
func walkLeaves(c *protocol.Condition, fn func(c *protocol.Condition)) {
	if c.All != nil || c.Any != nil {
		for i := range c.All {
			walkLeaves(&c.All[i], fn)
		}
		for i := range c.Any {
			walkLeaves(&c.Any[i], fn)
		}
		return
	}
	fn(c)
}

// initialState sets up leaf state for a new or redefined trigger: schedules
// start counting now, thresholds start from the latest known value (so a
// trigger created below its threshold does not fire until a new crossing).
func initialState(c *protocol.Condition, now time.Time, latest func(string) (float64, bool)) triggerState {
	var st triggerState
	walkLeaves(c, func(l *protocol.Condition) {
		var ls leafState
		switch {
		case l.EveryMs != 0:
			ls.NextDue = now.UnixMilli() + l.EveryMs
		case l.AtMs != 0:
			ls.NextDue = l.AtMs
		default:
			if val, ok := latest(l.Signal); ok {
				ls.Known, ls.Met = true, thresholdMet(l, val)
			}
		}
		st.Leaves = append(st.Leaves, ls)
	})
	return st
}

func thresholdMet(c *protocol.Condition, v float64) bool {
	if c.Op == protocol.OpBelow {
		return v < *c.Threshold
	}
	return v > *c.Threshold
}

// signals lists the signals the trigger's condition watches.
func (t *trigger) signals() []string {
	var out []string
	walkLeaves(&t.Condition, func(l *protocol.Condition) {
		if l.Signal != "" {
			out = append(out, l.Signal)
		}
	})
	return out
}

// scheduleDue is the next schedule tick of the trigger (0: none).
func (t *trigger) scheduleDue() int64 {
	var next int64
	i := 0
	walkLeaves(&t.Condition, func(l *protocol.Condition) {
		ls := t.state.Leaves[i]
		i++
		if (l.EveryMs != 0 || (l.AtMs != 0 && !ls.Done)) && ls.NextDue > 0 && (next == 0 || ls.NextDue < next) {
			next = ls.NextDue
		}
	})
	return next
}

// wakeAt is when the vault must wake for this trigger (0: never): its next
// schedule tick while active, or its expiry while active or paused.
func (t *trigger) wakeAt() int64 {
	var next int64
	if t.Status == protocol.StatusActive {
		next = t.NextDueAt
	}
	if t.ExpiresAt > 0 && (t.Status == protocol.StatusActive || t.Status == protocol.StatusPaused) && (next == 0 || t.ExpiresAt < next) {
		next = t.ExpiresAt
	}
	return next
}

func (t *trigger) clone() *trigger {
	c := *t
	c.state.Leaves = append([]leafState(nil), t.state.Leaves...)
	return &c
}

func newID(prefix string) string {
	b := make([]byte, 8)
	_, _ = rand.Read(b)
	return prefix + hex.EncodeToString(b)
}

// apply runs one authenticated command inside a write transaction.
func (v *Vault) apply(t *store.Tx, cmd protocol.Command) (any, error) {
	switch cmd.Op {
	case protocol.OpTriggerCreate, protocol.OpTriggerUpdate, protocol.OpTriggerPause, protocol.OpTriggerResume, protocol.OpTriggerDelete:
		tr, err := v.applyTrigger(t, cmd)
		if err != nil {
			return nil, err
		}
		// The owner's own changes are in the activity too.
		ev := event{cause: "command", now: t.Now}
		if err := v.putEvaluation(t, ev, tr.ID, commandOutcomes[cmd.Op], tr.Name); err != nil {
			return nil, err
		}
		return map[string]string{"id": tr.ID}, nil
	case protocol.OpTriggerList:
		if err := decodeNoArgs(cmd.Args); err != nil {
			return nil, err
		}
		return map[string]any{"triggers": v.sortedTriggers()}, nil
	case protocol.OpActivityList:
		var a protocol.ActivityArgs
		if err := decodeArgs(cmd.Args, &a); err != nil {
			return nil, err
		}
		return v.activity(a)
	case protocol.OpSessionEnd:
		if err := decodeNoArgs(cmd.Args); err != nil {
			return nil, err
		}
		return v.endSession(t, cmd.Session)
	case protocol.OpKeyRotate:
		if err := decodeNoArgs(cmd.Args); err != nil {
			return nil, err
		}
		return v.rotateKey(t)
	case protocol.OpGrantAdd:
		return v.addGrant(t, cmd.Args)
	case protocol.OpGrantRevoke:
		return v.revokeGrant(t, cmd.Args)
	default:
		return nil, protocol.Errorf(protocol.CodeUnknownOp, "unknown op %q", truncateID(cmd.Op))
	}
}

// commandOutcomes names what each trigger command did, for its entry in
// the activity.
var commandOutcomes = map[string]string{
	protocol.OpTriggerCreate: protocol.OutcomeCreated,
	protocol.OpTriggerUpdate: protocol.OutcomeEdited,
	protocol.OpTriggerPause:  protocol.OutcomePaused,
	protocol.OpTriggerResume: protocol.OutcomeResumed,
	protocol.OpTriggerDelete: protocol.OutcomeDeleted,
}

// applyTrigger runs a trigger command and returns the trigger it changed
// (as it was, for a delete).
func (v *Vault) applyTrigger(t *store.Tx, cmd protocol.Command) (*trigger, error) {
	switch cmd.Op {
	case protocol.OpTriggerCreate:
		var spec protocol.TriggerSpec
		if err := decodeArgs(cmd.Args, &spec); err != nil {
			return nil, err
		}
		return v.createTrigger(t, spec)
	case protocol.OpTriggerUpdate:
		var a protocol.UpdateArgs
		if err := decodeArgs(cmd.Args, &a); err != nil {
			return nil, err
		}
		return v.updateTrigger(t, a)
	default:
		var a protocol.IDArgs
		if err := decodeArgs(cmd.Args, &a); err != nil {
			return nil, err
		}
		return v.changeTrigger(t, cmd.Op, a.ID)
	}
}

// decodeNoArgs accepts absent args or an empty object.
func decodeNoArgs(raw json.RawMessage) error {
	if len(raw) == 0 {
		return nil
	}
	return decodeArgs(raw, &struct{}{})
}

func decodeArgs(raw json.RawMessage, into any) error {
	if len(raw) == 0 {
		return protocol.Errorf(protocol.CodeBadCommand, "args are missing")
	}
	if raw[0] != '{' {
		return protocol.Errorf(protocol.CodeBadCommand, "args must be a JSON object")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(into); err != nil {
		return protocol.Errorf(protocol.CodeBadCommand, "args: %s", protocol.DescribeJSONError(err))
	}
	return nil
}

func (v *Vault) createTrigger(t *store.Tx, spec protocol.TriggerSpec) (*trigger, error) {
	if err := validateSpec(&spec, t.Now); err != nil {
		return nil, err
	}
	if err := v.checkAction(spec.Action, t.Now.UnixMilli()); err != nil {
		return nil, err
	}
	if len(v.triggers) >= v.m.cfg.MaxTriggers {
		return nil, invalid("this vault already has %d triggers, the limit", v.m.cfg.MaxTriggers)
	}
	now := t.Now.UnixMilli()
	tr := &trigger{Trigger: protocol.Trigger{ID: newID("t_"), TriggerSpec: spec, Status: protocol.StatusActive, CreatedAt: now, UpdatedAt: now}}
	if spec.Paused {
		tr.Status = protocol.StatusPaused
	}
	tr.state = initialState(&tr.Condition, t.Now, v.m.latest)
	tr.NextDueAt = tr.scheduleDue()
	if err := v.putTrigger(t, tr); err != nil {
		return nil, err
	}
	return tr, nil
}

func (v *Vault) updateTrigger(t *store.Tx, a protocol.UpdateArgs) (*trigger, error) {
	old, ok := v.triggers[a.ID]
	if !ok {
		return nil, protocol.Errorf(protocol.CodeNotFound, "no trigger %q", truncateID(a.ID))
	}
	if err := validateSpec(&a.Spec, t.Now); err != nil {
		return nil, err
	}
	if err := v.checkAction(a.Spec.Action, t.Now.UnixMilli()); err != nil {
		return nil, err
	}
	tr := old.clone()
	tr.TriggerSpec = a.Spec
	tr.Status = protocol.StatusActive
	if a.Spec.Paused {
		tr.Status = protocol.StatusPaused
	}
	tr.Fires, tr.LastFiredAt, tr.UpdatedAt = 0, 0, t.Now.UnixMilli()
	tr.state = initialState(&tr.Condition, t.Now, v.m.latest)
	tr.NextDueAt = tr.scheduleDue()
	return tr, v.putTrigger(t, tr)
}

func (v *Vault) changeTrigger(t *store.Tx, op, id string) (*trigger, error) {
	old, ok := v.triggers[id]
	if !ok {
		return nil, protocol.Errorf(protocol.CodeNotFound, "no trigger %q", truncateID(id))
	}
	if op == protocol.OpTriggerDelete {
		if err := store.DeleteTrigger(v.conn, id); err != nil {
			return nil, err
		}
		t.Del(protocol.KindTrigger, id)
		t.Then(func() { delete(v.triggers, id) })
		return old, nil
	}
	tr := old.clone()
	switch {
	case op == protocol.OpTriggerPause && tr.Status == protocol.StatusActive:
		tr.Status, tr.Paused = protocol.StatusPaused, true
	case op == protocol.OpTriggerResume && tr.Status == protocol.StatusPaused:
		tr.Status, tr.Paused = protocol.StatusActive, false
		// Inputs moved while paused: start again from the latest values,
		// and a schedule that came due while paused ticks once.
		fresh := initialState(&tr.Condition, t.Now, v.m.latest)
		i := 0
		walkLeaves(&tr.Condition, func(l *protocol.Condition) {
			if l.Signal != "" {
				tr.state.Leaves[i] = fresh.Leaves[i]
			}
			i++
		})
	default:
		return nil, protocol.Errorf(protocol.CodeInvalidTrigger, "trigger %s is %s; cannot %s", id, tr.Status, strings.TrimPrefix(op, "trigger."))
	}
	tr.UpdatedAt = t.Now.UnixMilli()
	return tr, v.putTrigger(t, tr)
}

// loadTriggers reads the vault's triggers with their conditions' state.
func loadTriggers(conn *sqlite.Conn) (map[string]*trigger, error) {
	rows, err := store.LoadTriggers(conn)
	if err != nil {
		return nil, err
	}
	out := make(map[string]*trigger, len(rows))
	for _, r := range rows {
		t := &trigger{Trigger: r.Trigger, firedTotal: r.FiredTotal}
		if err := json.Unmarshal(r.State, &t.state); err != nil {
			return nil, fmt.Errorf("load triggers: trigger %s state: %w", t.ID, err)
		}
		t.NextDueAt = t.scheduleDue()
		out[t.ID] = t
	}
	return out, nil
}

// saveTrigger writes a trigger with its condition's state.
func saveTrigger(conn *sqlite.Conn, t *trigger) error {
	state, err := json.Marshal(t.state)
	if err != nil {
		return err
	}
	return store.SaveTrigger(conn, store.TriggerRow{Trigger: t.Trigger, State: state, FiredTotal: t.firedTotal})
}

// putTrigger writes tr and records the change; memory follows on commit.
func (v *Vault) putTrigger(t *store.Tx, tr *trigger) error {
	if err := saveTrigger(v.conn, tr); err != nil {
		return err
	}
	if err := t.Put(protocol.KindTrigger, tr.ID, tr.Trigger); err != nil {
		return err
	}
	t.Then(func() { v.triggers[tr.ID] = tr })
	return nil
}
