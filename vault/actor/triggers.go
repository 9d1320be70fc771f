package actor

import (
	"fmt"

	"zombiezen.com/go/sqlite"

	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/vault/exec"
	"github.com/spells-dev/spells/vault/rules"
	"github.com/spells-dev/spells/vault/store"
)

// The owner's trigger commands: each is checked by the rules (and its
// action by the intents' check of the grants) and written in the command's
// transaction; memory follows on commit.

// resolve makes a condition's chain reads and event filters what the
// node reads for it.
func (v *Vault) resolve(c *protocol.Condition) error {
	if err := exec.ResolveReads(c, v.cfg.Chain, v.owner); err != nil {
		return err
	}
	return exec.ResolveEvents(c, v.cfg.Chain, v.host.ChainHead())
}

func (v *Vault) createTrigger(t *store.Tx, spec protocol.TriggerSpec) (*rules.Trigger, error) {
	if err := v.resolve(&spec.Condition); err != nil {
		return nil, err
	}
	if err := rules.Validate(&spec, t.Now); err != nil {
		return nil, err
	}
	if err := v.checkNotify(spec); err != nil {
		return nil, err
	}
	g, body, err := v.checkTriggerGrant(t, spec, "")
	if err != nil {
		return nil, err
	}
	if len(v.triggers) >= v.cfg.MaxTriggers {
		return nil, rules.Invalid("this vault already has %d triggers, the limit", v.cfg.MaxTriggers)
	}
	spec.Delegation = nil
	tr := rules.New(spec, t.Now, v.cfg.Latest)
	if g != nil {
		tr.Grant = g.ID
		if err := v.putTriggerGrant(t, tr.ID, g, body); err != nil {
			return nil, err
		}
	}
	return tr, v.putTrigger(t, tr)
}

func (v *Vault) updateTrigger(t *store.Tx, a protocol.UpdateArgs) (*rules.Trigger, error) {
	old, ok := v.triggers[a.ID]
	if !ok {
		return nil, protocol.Errorf(protocol.CodeNotFound, "no trigger %q", Short(a.ID))
	}
	if err := v.resolve(&a.Spec.Condition); err != nil {
		return nil, err
	}
	if err := rules.Validate(&a.Spec, t.Now); err != nil {
		return nil, err
	}
	if err := v.checkNotify(a.Spec); err != nil {
		return nil, err
	}
	g, body, err := v.checkTriggerGrant(t, a.Spec, old.Grant)
	if err != nil {
		return nil, err
	}
	keep := ""
	if g == nil && old.Grant != "" {
		// An edit without a new delegation keeps the trigger's grant
		// only if it changes nothing the grant pins.
		r, err := exec.TriggerGrantRules(v.conn, v.cfg.Chain, old.Grant)
		if err != nil {
			return nil, err
		}
		diff, err := exec.KeepsGrant(v.cfg.Chain, v.owner, r, a.Spec)
		if err != nil {
			return nil, err
		}
		if diff != "" {
			return nil, exec.InvalidGrant("this edit changes what the trigger's own grant pins (%s): sign a new delegation for it (trigger.grant gives it)", diff)
		}
		keep = old.Grant
	}
	a.Spec.Delegation = nil
	tr := rules.Redefine(old, a.Spec, t.Now, v.cfg.Latest)
	tr.Grant = keep
	if g != nil {
		tr.Grant = g.ID
		if g.ID != old.Grant {
			if err := v.putTriggerGrant(t, tr.ID, g, body); err != nil {
				return nil, err
			}
		}
	}
	if old.Grant != "" && old.Grant != tr.Grant {
		if err := v.revokeTriggerGrant(t, old.Grant); err != nil {
			return nil, err
		}
	}
	return tr, v.putTrigger(t, tr)
}

// checkTriggerGrant checks the trigger's own grant spec carries, if it
// carries one (g nil: it does not); current is the trigger's grant now,
// which the spec may carry again. Without one, the action must be allowed
// by a standing grant, unless the trigger keeps its own.
func (v *Vault) checkTriggerGrant(t *store.Tx, spec protocol.TriggerSpec, current string) (*protocol.Grant, []byte, error) {
	if len(spec.Delegation) == 0 {
		if current != "" {
			return nil, nil, nil
		}
		return nil, nil, v.intents.CheckAction(spec.Action, t.Now.UnixMilli())
	}
	g, body, err := exec.CheckTriggerGrant(v.cfg.Chain, v.owner, v.ring.Address, v.ring.HasKey(), spec, t.Now.UnixMilli())
	if err != nil {
		return nil, nil, err
	}
	if g.ID != current {
		taken, err := store.DelegationGranted(v.conn, g.ID)
		if err != nil {
			return nil, nil, err
		}
		if taken {
			return nil, nil, exec.InvalidGrant("delegation %s was already granted (a replay, or another trigger's grant)", g.ID)
		}
	}
	return &g, body, nil
}

// putTriggerGrant stores g as trigger id's own grant.
func (v *Vault) putTriggerGrant(t *store.Tx, id string, g *protocol.Grant, body []byte) error {
	g.Trigger = id
	if err := store.InsertGrant(v.conn, *g, body); err != nil {
		return err
	}
	v.log.Info().Str("grant", g.ID).Str("trigger", id).Msg("trigger grant added")
	return t.Put(protocol.KindGrant, g.ID, *g)
}

// revokeTriggerGrant stops the use of a trigger's own grant id, replaced
// or deleted with its trigger.
func (v *Vault) revokeTriggerGrant(t *store.Tx, id string) error {
	gs, err := store.LoadGrants(v.conn, id)
	if err != nil || len(gs) == 0 || gs[0].Status == protocol.GrantRevoked {
		return err
	}
	g := gs[0]
	g.Status, g.RevokedAt = protocol.GrantRevoked, t.Now.UnixMilli()
	if err := store.RevokeGrant(v.conn, g); err != nil {
		return err
	}
	v.log.Info().Str("grant", g.ID).Str("trigger", g.Trigger).Msg("trigger grant revoked")
	return t.Put(protocol.KindGrant, g.ID, g)
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
		if old.Grant != "" {
			if err := v.revokeTriggerGrant(t, old.Grant); err != nil {
				return nil, err
			}
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
