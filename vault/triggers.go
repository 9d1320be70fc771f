package vault

import (
	"bytes"
	"encoding/json"
	"fmt"

	"zombiezen.com/go/sqlite"

	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/vault/rules"
	"github.com/spells-dev/spells/vault/store"
)

// The owner's commands, and the trigger commands among them: each is
// checked by the rules and written in the command's transaction.

// apply runs one authenticated command inside a write transaction.
func (v *Vault) apply(t *store.Tx, cmd protocol.Command) (any, error) {
	switch cmd.Op {
	case protocol.OpTriggerCreate, protocol.OpTriggerUpdate, protocol.OpTriggerPause, protocol.OpTriggerResume, protocol.OpTriggerDelete:
		tr, err := v.applyTrigger(t, cmd)
		if err != nil {
			return nil, err
		}
		// The owner's own changes are in the activity too.
		ev := rules.Event{Cause: "command", Now: t.Now}
		if err := v.putEvaluation(t, ev, tr.ID, rules.CommandOutcomes[cmd.Op], tr.Name); err != nil {
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

// applyTrigger runs a trigger command and returns the trigger it changed
// (as it was, for a delete).
func (v *Vault) applyTrigger(t *store.Tx, cmd protocol.Command) (*rules.Trigger, error) {
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

func (v *Vault) createTrigger(t *store.Tx, spec protocol.TriggerSpec) (*rules.Trigger, error) {
	if err := rules.Validate(&spec, t.Now); err != nil {
		return nil, err
	}
	if err := v.intents.CheckAction(spec.Action, t.Now.UnixMilli()); err != nil {
		return nil, err
	}
	if len(v.triggers) >= v.m.cfg.MaxTriggers {
		return nil, rules.Invalid("this vault already has %d triggers, the limit", v.m.cfg.MaxTriggers)
	}
	tr := rules.New(spec, t.Now, v.m.latest)
	return tr, v.putTrigger(t, tr)
}

func (v *Vault) updateTrigger(t *store.Tx, a protocol.UpdateArgs) (*rules.Trigger, error) {
	old, ok := v.triggers[a.ID]
	if !ok {
		return nil, protocol.Errorf(protocol.CodeNotFound, "no trigger %q", truncateID(a.ID))
	}
	if err := rules.Validate(&a.Spec, t.Now); err != nil {
		return nil, err
	}
	if err := v.intents.CheckAction(a.Spec.Action, t.Now.UnixMilli()); err != nil {
		return nil, err
	}
	tr := rules.Redefine(old, a.Spec, t.Now, v.m.latest)
	return tr, v.putTrigger(t, tr)
}

func (v *Vault) changeTrigger(t *store.Tx, op, id string) (*rules.Trigger, error) {
	old, ok := v.triggers[id]
	if !ok {
		return nil, protocol.Errorf(protocol.CodeNotFound, "no trigger %q", truncateID(id))
	}
	var tr *rules.Trigger
	var err error
	switch op {
	case protocol.OpTriggerDelete:
		if err := store.DeleteTrigger(v.conn, id); err != nil {
			return nil, err
		}
		t.Del(protocol.KindTrigger, id)
		t.Then(func() { delete(v.triggers, id) })
		return old, nil
	case protocol.OpTriggerPause:
		tr, err = rules.Pause(old, t.Now)
	default:
		tr, err = rules.Resume(old, t.Now, v.m.latest)
	}
	if err != nil {
		return nil, err
	}
	return tr, v.putTrigger(t, tr)
}

// loadTriggers reads the vault's triggers with their conditions' state.
func loadTriggers(conn *sqlite.Conn) (map[string]*rules.Trigger, error) {
	rows, err := store.LoadTriggers(conn)
	if err != nil {
		return nil, err
	}
	out := make(map[string]*rules.Trigger, len(rows))
	for _, r := range rows {
		t, err := rules.Decode(r.Trigger, r.State, r.FiredTotal)
		if err != nil {
			return nil, fmt.Errorf("load triggers: %w", err)
		}
		out[t.ID] = t
	}
	return out, nil
}

// saveTrigger writes a trigger with its condition's state.
func saveTrigger(conn *sqlite.Conn, t *rules.Trigger) error {
	state, err := t.EncodeState()
	if err != nil {
		return err
	}
	return store.SaveTrigger(conn, store.TriggerRow{Trigger: t.Trigger, State: state, FiredTotal: t.FiredTotal})
}

// putTrigger writes tr and records the change; memory follows on commit.
func (v *Vault) putTrigger(t *store.Tx, tr *rules.Trigger) error {
	if err := saveTrigger(v.conn, tr); err != nil {
		return err
	}
	if err := t.Put(protocol.KindTrigger, tr.ID, tr.Trigger); err != nil {
		return err
	}
	t.Then(func() { v.triggers[tr.ID] = tr })
	return nil
}
