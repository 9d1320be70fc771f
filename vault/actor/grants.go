package actor

import (
	"encoding/json"

	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/vault/exec"
	"github.com/spells-dev/spells/vault/store"
)

// The owner's grants: grant.add stores delegations the vault checked
// (exec.CheckGrant), grant.revoke stops their use at once.

// addGrant is grant.add.
func (v *Vault) addGrant(t *store.Tx, args json.RawMessage) (any, error) {
	var a protocol.GrantArgs
	if err := decodeArgs(args, &a); err != nil {
		return nil, err
	}
	if err := exec.FromPermissionContext(&a); err != nil {
		return nil, err
	}
	g, err := exec.CheckGrant(v.cfg.Chain, v.owner, v.ring.Address, v.ring.HasKey(), a, t.Now.UnixMilli())
	if err != nil {
		return nil, err
	}
	for _, d := range g.Delegations {
		taken, err := store.DelegationGranted(v.conn, d.Hash)
		if err != nil {
			return nil, err
		}
		if taken {
			return nil, exec.InvalidGrant("delegation %s was already granted (a replay)", d.Hash)
		}
	}
	body, _ := json.Marshal(a.Delegations)
	if err := store.InsertGrant(v.conn, g, body); err != nil {
		return nil, err
	}
	if err := t.Put(protocol.KindGrant, g.ID, g); err != nil {
		return nil, err
	}
	v.log.Info().Str("grant", g.ID).Int("delegations", len(g.Delegations)).Msg("grant added")
	return map[string]string{"id": g.ID}, nil
}

// revokeGrant is grant.revoke: the vault stops using the grant at once.
// (Disabling it on-chain, DelegationManager.disableDelegation, is the
// owner's own transaction.)
func (v *Vault) revokeGrant(t *store.Tx, args json.RawMessage) (any, error) {
	var a protocol.IDArgs
	if err := decodeArgs(args, &a); err != nil {
		return nil, err
	}
	gs, err := store.LoadGrants(v.conn, a.ID)
	if err != nil {
		return nil, err
	}
	if len(gs) == 0 {
		return nil, protocol.Errorf(protocol.CodeNotFound, "no grant %q", Short(a.ID))
	}
	g := gs[0]
	if g.Status == protocol.GrantRevoked {
		return nil, exec.InvalidGrant("grant %s is already revoked", g.ID)
	}
	g.Status, g.RevokedAt = protocol.GrantRevoked, t.Now.UnixMilli()
	if err := store.RevokeGrant(v.conn, g); err != nil {
		return nil, err
	}
	if err := t.Put(protocol.KindGrant, g.ID, g); err != nil {
		return nil, err
	}
	v.log.Info().Str("grant", g.ID).Msg("grant revoked")
	return map[string]string{"id": g.ID}, nil
}
