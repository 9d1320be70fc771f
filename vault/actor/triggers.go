package actor

import (
	"fmt"

	"zombiezen.com/go/sqlite"

	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/vault/rules"
	"github.com/spells-dev/spells/vault/store"
)

// The owner's trigger commands: each is checked by the rules (and its
// action by the intents' check of the grants) and written in the command's
// transaction; memory follows on commit.

func (v *Vault) createTrigger(t *store.Tx, spec protocol.TriggerSpec) (*rules.Trigger, error) {
	if err := rules.Validate(&spec, t.Now); err != nil {
		return nil, err
	}
	if err := v.intents.CheckAction(spec.Action, t.Now.UnixMilli()); err != nil {
		return nil, err
	}
	if len(v.triggers) >= v.cfg.MaxTriggers {
		return nil, rules.Invalid("this vault already has %d triggers, the limit", v.cfg.MaxTriggers)
	}
	tr := rules.New(spec, t.Now, v.cfg.Latest)
	return tr, v.putTrigger(t, tr)
}

func (v *Vault) updateTrigger(t *store.Tx, a protocol.UpdateArgs) (*rules.Trigger, error) {
	old, ok := v.triggers[a.ID]
	if !ok {
		return nil, protocol.Errorf(protocol.CodeNotFound, "no trigger %q", Short(a.ID))
	}
	if err := rules.Validate(&a.Spec, t.Now); err != nil {
		return nil, err
	}
	if err := v.intents.CheckAction(a.Spec.Action, t.Now.UnixMilli()); err != nil {
		return nil, err
	}
	tr := rules.Redefine(old, a.Spec, t.Now, v.cfg.Latest)
	return tr, v.putTrigger(t, tr)
}

func (v *Vault) changeTrigger(t *store.Tx, op, id string) (*rules.Trigger, error) {
	old, ok := v.triggers[id]
	if !ok {
		return nil, protocol.Errorf(protocol.CodeNotFound, "no trigger %q", Short(id))
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
		tr, err = rules.Resume(old, t.Now, v.cfg.Latest)
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
