package vault

import (
	"encoding/json"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"

	"github.com/spells-dev/spells/delegation"
	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/vault/store"
)

// Grants: delegations the owner signed to the vault's session key. The
// vault checks each itself before storing it (signer, delegate, chain,
// caveats it can read, validity) and refuses naming what is wrong; the
// chain checks them again when they are redeemed.

const maxGrantDelegations = 8

func invalidGrant(format string, args ...any) error {
	return protocol.Errorf(protocol.CodeInvalidGrant, format, args...)
}

// grantDomain is where this node's grants are valid, or an error when it
// has no delegation framework.
func (v *Vault) grantDomain() (delegation.Domain, delegation.Enforcers, error) {
	c := v.m.cfg.Chain
	if c == nil || !common.IsHexAddress(c.DelegationManager) {
		return delegation.Domain{}, nil, protocol.Errorf(protocol.CodeNoChain, "this node has no chain with the delegation framework, so it takes no grants")
	}
	return delegation.Domain{ChainID: c.ChainID, Manager: common.HexToAddress(c.DelegationManager)}, delegation.ParseEnforcers(c.Enforcers), nil
}

// checkGrant verifies the delegations of a grant.add and returns the grant
// to store.
func (v *Vault) checkGrant(a protocol.GrantArgs, nowMs int64) (protocol.Grant, error) {
	dom, enf, err := v.grantDomain()
	if err != nil {
		return protocol.Grant{}, err
	}
	if len(a.Delegations) == 0 || len(a.Delegations) > maxGrantDelegations {
		return protocol.Grant{}, invalidGrant("a grant holds 1 to %d delegations, not %d", maxGrantDelegations, len(a.Delegations))
	}
	if !v.ring.HasKey() {
		return protocol.Grant{}, errKeyUnavailable
	}
	g := protocol.Grant{Status: protocol.GrantActive, SessionKey: v.ring.Address.Hex(), CreatedAt: nowMs}
	seen := map[common.Hash]bool{}
	for i, raw := range a.Delegations {
		var d delegation.Delegation
		if err := json.Unmarshal(raw, &d); err != nil {
			return protocol.Grant{}, invalidGrant("delegation %d: %s", i, protocol.DescribeJSONError(err))
		}
		if d.Delegator != v.owner {
			return protocol.Grant{}, invalidGrant("delegation %d is from %s, not this vault's owner %s", i, d.Delegator.Hex(), v.owner.Hex())
		}
		if d.Delegate != v.ring.Address {
			return protocol.Grant{}, invalidGrant("delegation %d is to %s, not this vault's session key %s (after a rotation, grant the new key)",
				i, d.Delegate.Hex(), v.ring.Address.Hex())
		}
		if d.Authority != delegation.RootAuthority {
			return protocol.Grant{}, invalidGrant("delegation %d redelegates another delegation; only the owner's own (root authority) are taken", i)
		}
		if d.Salt == nil {
			return protocol.Grant{}, invalidGrant("delegation %d has no salt", i)
		}
		signer, err := d.Signer(dom)
		if err != nil {
			return protocol.Grant{}, invalidGrant("delegation %d: %v", i, err)
		}
		if signer != v.owner {
			return protocol.Grant{}, invalidGrant("delegation %d is not signed by the owner for chain %d and DelegationManager %s "+
				"(another signer, chain or manager, or a changed delegation)", i, dom.ChainID, dom.Manager.Hex())
		}
		rules, err := delegation.ReadRules(d.Caveats, enf)
		if err != nil {
			return protocol.Grant{}, invalidGrant("delegation %d: %v", i, err)
		}
		if rules.NotAfter != 0 && int64(rules.NotAfter)*1000 <= nowMs {
			return protocol.Grant{}, invalidGrant("delegation %d expired at %d (unix seconds)", i, rules.NotAfter)
		}
		h, err := d.Hash()
		if err != nil {
			return protocol.Grant{}, invalidGrant("delegation %d: %v", i, err)
		}
		if seen[h] {
			return protocol.Grant{}, invalidGrant("delegation %d is given twice", i)
		}
		seen[h] = true
		rb, _ := json.Marshal(rules.View())
		g.Delegations = append(g.Delegations, protocol.GrantDelegation{Hash: h.Hex(), Rules: rb})
	}
	g.ID = g.Delegations[0].Hash
	return g, nil
}

// fromPermissionContext turns grant.add's permissionContext (an ERC-7715
// wallet's) into its delegations, refusing a chain of redelegations.
func fromPermissionContext(a *protocol.GrantArgs) error {
	if a.PermissionContext == "" {
		return nil
	}
	if len(a.Delegations) > 0 {
		return invalidGrant("give delegations or a permissionContext, not both")
	}
	b, err := hexutil.Decode(a.PermissionContext)
	if err != nil {
		return invalidGrant("permissionContext is not 0x-prefixed hex")
	}
	ds, err := delegation.ParsePermissionContext(b)
	if err != nil {
		return invalidGrant("permissionContext: %v", err)
	}
	if len(ds) != 1 {
		return invalidGrant("permissionContext holds a chain of %d delegations; the vault takes one, from its owner to its session key", len(ds))
	}
	raw, err := json.Marshal(ds[0])
	if err != nil {
		return invalidGrant("permissionContext: %v", err)
	}
	a.Delegations, a.PermissionContext = []json.RawMessage{raw}, ""
	return nil
}

// addGrant is grant.add.
func (v *Vault) addGrant(t *store.Tx, args json.RawMessage) (any, error) {
	var a protocol.GrantArgs
	if err := decodeArgs(args, &a); err != nil {
		return nil, err
	}
	if err := fromPermissionContext(&a); err != nil {
		return nil, err
	}
	g, err := v.checkGrant(a, t.Now.UnixMilli())
	if err != nil {
		return nil, err
	}
	for _, d := range g.Delegations {
		taken, err := store.DelegationGranted(v.conn, d.Hash)
		if err != nil {
			return nil, err
		}
		if taken {
			return nil, invalidGrant("delegation %s was already granted (a replay)", d.Hash)
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
		return nil, protocol.Errorf(protocol.CodeNotFound, "no grant %q", truncateID(a.ID))
	}
	g := gs[0]
	if g.Status == protocol.GrantRevoked {
		return nil, invalidGrant("grant %s is already revoked", g.ID)
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
