package exec

import (
	"encoding/json"
	"fmt"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"

	"github.com/spells-dev/spells/delegation"
	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/vault/keys"
	"github.com/spells-dev/spells/vault/store"
)

// Grants: delegations the owner signed to the vault's session key. The
// vault checks each itself before storing it (signer, delegate, chain,
// caveats it can read, validity) and refuses naming what is wrong; the
// chain checks them again when they are redeemed.

const maxGrantDelegations = 8

// InvalidGrant is the error of a grant the vault refuses.
func InvalidGrant(format string, args ...any) error {
	return protocol.Errorf(protocol.CodeInvalidGrant, format, args...)
}

// grantDomain is where this node's grants are valid, or an error when it
// has no delegation framework.
func grantDomain(c *protocol.ChainInfo) (delegation.Domain, delegation.Enforcers, error) {
	if c == nil || !common.IsHexAddress(c.DelegationManager) {
		return delegation.Domain{}, nil, protocol.Errorf(protocol.CodeNoChain, "this node has no chain with the delegation framework, so it takes no grants")
	}
	return delegation.Domain{ChainID: c.ChainID, Manager: common.HexToAddress(c.DelegationManager)}, delegation.ParseEnforcers(c.Enforcers), nil
}

// CheckGrant verifies the delegations of a grant.add, as given by the
// owner of a vault whose session key is sessionKey (hasKey false: it has
// none this node can use), on chain c at nowMs, and returns the grant to
// store. Its refusals name the delegation and what is wrong with it.
func CheckGrant(c *protocol.ChainInfo, owner, sessionKey common.Address, hasKey bool, a protocol.GrantArgs, nowMs int64) (protocol.Grant, error) {
	dom, enf, err := grantDomain(c)
	if err != nil {
		return protocol.Grant{}, err
	}
	if len(a.Delegations) == 0 || len(a.Delegations) > maxGrantDelegations {
		return protocol.Grant{}, InvalidGrant("a grant holds 1 to %d delegations, not %d", maxGrantDelegations, len(a.Delegations))
	}
	if !hasKey {
		return protocol.Grant{}, keys.ErrUnavailable
	}
	g := protocol.Grant{Status: protocol.GrantActive, SessionKey: sessionKey.Hex(), CreatedAt: nowMs}
	seen := map[common.Hash]bool{}
	for i, raw := range a.Delegations {
		_, h, rules, err := checkDelegation(fmt.Sprintf("delegation %d", i), raw, dom, enf, owner, sessionKey, nowMs)
		if err != nil {
			return protocol.Grant{}, err
		}
		if seen[h] {
			return protocol.Grant{}, InvalidGrant("delegation %d is given twice", i)
		}
		seen[h] = true
		rb, _ := json.Marshal(rules.View())
		g.Delegations = append(g.Delegations, protocol.GrantDelegation{Hash: h.Hex(), Rules: rb})
	}
	g.ID = g.Delegations[0].Hash
	return g, nil
}

// checkDelegation reads one delegation the owner sent (named what in
// refusals) and checks it is the owner's own, to the session key, signed
// for this chain and manager, with caveats this node reads, not expired.
func checkDelegation(what string, raw json.RawMessage, dom delegation.Domain, enf delegation.Enforcers, owner, sessionKey common.Address, nowMs int64) (delegation.Delegation, common.Hash, delegation.Rules, error) {
	var d delegation.Delegation
	fail := func(format string, args ...any) (delegation.Delegation, common.Hash, delegation.Rules, error) {
		return d, common.Hash{}, delegation.Rules{}, InvalidGrant(what+" "+format, args...)
	}
	if err := json.Unmarshal(raw, &d); err != nil {
		return fail(": %s", protocol.DescribeJSONError(err))
	}
	if d.Delegator != owner {
		return fail("is from %s, not this vault's owner %s", d.Delegator.Hex(), owner.Hex())
	}
	if d.Delegate != sessionKey {
		return fail("is to %s, not this vault's session key %s (after a rotation, grant the new key)", d.Delegate.Hex(), sessionKey.Hex())
	}
	if d.Authority != delegation.RootAuthority {
		return fail("redelegates another delegation; only the owner's own (root authority) are taken")
	}
	if d.Salt == nil {
		return fail("has no salt")
	}
	signer, err := d.Signer(dom)
	if err != nil {
		return fail(": %v", err)
	}
	if signer != owner {
		return fail("is not signed by the owner for chain %d and DelegationManager %s "+
			"(another signer, chain or manager, or a changed delegation)", dom.ChainID, dom.Manager.Hex())
	}
	rules, err := delegation.ReadRules(d.Caveats, enf)
	if err != nil {
		return fail(": %v", err)
	}
	if rules.NotAfter != 0 && int64(rules.NotAfter)*1000 <= nowMs {
		return fail("expired at %d (unix seconds)", rules.NotAfter)
	}
	h, err := d.Hash()
	if err != nil {
		return fail(": %v", err)
	}
	return d, h, rules, nil
}

// FromPermissionContext turns grant.add's permissionContext (an ERC-7715
// wallet's) into its delegations, refusing a chain of redelegations.
func FromPermissionContext(a *protocol.GrantArgs) error {
	if a.PermissionContext == "" {
		return nil
	}
	if len(a.Delegations) > 0 {
		return InvalidGrant("give delegations or a permissionContext, not both")
	}
	b, err := hexutil.Decode(a.PermissionContext)
	if err != nil {
		return InvalidGrant("permissionContext is not 0x-prefixed hex")
	}
	ds, err := delegation.ParsePermissionContext(b)
	if err != nil {
		return InvalidGrant("permissionContext: %v", err)
	}
	if len(ds) != 1 {
		return InvalidGrant("permissionContext holds a chain of %d delegations; the vault takes one, from its owner to its session key", len(ds))
	}
	raw, err := json.Marshal(ds[0])
	if err != nil {
		return InvalidGrant("permissionContext: %v", err)
	}
	a.Delegations, a.PermissionContext = []json.RawMessage{raw}, ""
	return nil
}

// onDisabled takes a delegation its owner disabled on-chain
// (DelegationManager.disableDelegation): the grant that holds it is
// revoked in the vault at once, so no intent tries it again.
func (r *Runner) onDisabled(res *Result) {
	conn := r.v.Conn()
	id, ok, err := store.GrantOfDelegation(conn, res.Hash.Hex())
	if err != nil {
		r.v.Fault("find the grant of a disabled delegation", err)
		return
	}
	if !ok {
		return // not one this vault was granted
	}
	gs, err := store.LoadGrants(conn, id)
	if err != nil || len(gs) == 0 || gs[0].Status == protocol.GrantRevoked {
		if err != nil {
			r.v.Fault("read the grant of a disabled delegation", err)
		}
		return
	}
	g := gs[0]
	if !r.write("revoke grant "+g.ID, func(t *store.Tx) error {
		g.Status, g.RevokedAt = protocol.GrantRevoked, t.Now.UnixMilli()
		if err := store.RevokeGrant(conn, g); err != nil {
			return err
		}
		return t.Put(protocol.KindGrant, g.ID, g)
	}) {
		return
	}
	r.log.Info().Str("grant", g.ID).Str("delegation", res.Hash.Hex()).Uint64("block", res.Head).Msg("grant revoked: its owner disabled a delegation of it on-chain")
}
