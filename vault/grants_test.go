package vault

import (
	"crypto/ecdsa"
	"encoding/json"
	"math/big"
	"strings"
	"testing"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/common/math"
	"github.com/ethereum/go-ethereum/crypto"

	"github.com/spells-dev/spells/contracts"
	"github.com/spells-dev/spells/delegation"
	"github.com/spells-dev/spells/protocol"
)

// testChain is a chain's description for grant checks, which need no
// chain: the signature, delegate, domain and caveats are checked offline.
var testChain = &protocol.ChainInfo{ChainID: 1337, DelegationManager: "0x00000000000000000000000000000000000d3e11",
	Enforcers: map[string]string{
		contracts.AllowedTargetsEnforcer: "0x0000000000000000000000000000000000000e01",
		contracts.AllowedMethodsEnforcer: "0x0000000000000000000000000000000000000e02",
		contracts.TimestampEnforcer:      "0x0000000000000000000000000000000000000e03",
		contracts.LimitedCallsEnforcer:   "0x0000000000000000000000000000000000000e04",
	}}

var testDomain712 = delegation.Domain{ChainID: 1337, Manager: common.HexToAddress(testChain.DelegationManager)}

// grantFor builds a delegation from the owner to the vault's session key,
// signed by signer in dom, with a validity ending at notAfter.
func grantFor(t *testing.T, u *user, signer *ecdsa.PrivateKey, dom delegation.Domain, notAfter uint64) delegation.Delegation {
	t.Helper()
	st := u.state(t)
	r := delegation.Rules{Targets: []common.Address{common.HexToAddress("0x1111111111111111111111111111111111111111")},
		Methods: []string{"0xa9059cbb"}, MaxCalls: 10, NotAfter: notAfter}
	cs, err := r.Caveats(delegation.ParseEnforcers(testChain.Enforcers))
	if err != nil {
		t.Fatal(err)
	}
	d := delegation.Delegation{Delegate: common.HexToAddress(st.Account.SessionKey), Delegator: u.w.Address(),
		Authority: delegation.RootAuthority, Caveats: cs, Salt: (*math.HexOrDecimal256)(big.NewInt(int64(notAfter)))}
	sign(t, &d, signer, dom)
	return d
}

func sign(t *testing.T, d *delegation.Delegation, key *ecdsa.PrivateKey, dom delegation.Domain) {
	t.Helper()
	if err := d.SignWith(dom, func(h []byte) ([]byte, error) { return crypto.Sign(h, key) }); err != nil {
		t.Fatal(err)
	}
}

func grantArgs(ds ...delegation.Delegation) protocol.GrantArgs {
	var a protocol.GrantArgs
	for _, d := range ds {
		b, _ := json.Marshal(d)
		a.Delegations = append(a.Delegations, b)
	}
	return a
}

func wantGrantRefused(t *testing.T, u *user, a protocol.GrantArgs, code protocol.Code, says string) {
	t.Helper()
	before := u.state(t).Version
	_, err := u.cmd(t, protocol.OpGrantAdd, a)
	wantCode(t, err, code)
	if !strings.Contains(err.Error(), says) {
		t.Fatalf("refusal %q does not say %q", err, says)
	}
	if st := u.state(t); st.Version != before {
		t.Fatalf("a refused grant changed the vault (version %d → %d)", before, st.Version)
	}
}

// TestGrants: the vault stores a grant its owner signed to its session key
// and shows it; it refuses, naming why and changing nothing, a grant
// signed by someone else, from another account, to another key, for
// another chain, expired, tampered with, replayed, or with a caveat it
// cannot read; the owner revokes a grant; a node without a chain takes
// none.
func TestGrants(t *testing.T) {
	e := newEnvWith(t, func(e *env) { e.chain = testChain })
	u := e.newUser()
	later := uint64(t0.Unix() + 86400)
	good := grantFor(t, u, u.w.Key, testDomain712, later)
	ack := u.mustCmd(t, protocol.OpGrantAdd, grantArgs(good))
	h, _ := good.Hash()
	if !strings.Contains(string(ack.Result), h.Hex()) {
		t.Fatalf("grant.add result %s, want the delegation's hash %s", ack.Result, h.Hex())
	}
	if ch := u.sub.diffWith(t, protocol.KindGrant); len(ch) != 1 || !strings.Contains(string(ch[0].Data), `"status":"active"`) {
		t.Fatalf("grant diff %v", ch)
	}
	st := u.state(t)
	if len(st.Grants) != 1 || st.Grants[0].ID != h.Hex() || !strings.Contains(string(st.Grants[0].Delegations[0].Rules), `"maxCalls":10`) {
		t.Fatalf("grants in the snapshot %+v", st.Grants)
	}

	stranger, _ := crypto.GenerateKey()
	wantGrantRefused(t, u, grantArgs(grantFor(t, u, stranger, testDomain712, later+1)), protocol.CodeInvalidGrant, "not signed by the owner")
	other := grantFor(t, u, u.w.Key, testDomain712, later+2)
	other.Delegator = crypto.PubkeyToAddress(stranger.PublicKey)
	sign(t, &other, stranger, testDomain712)
	wantGrantRefused(t, u, grantArgs(other), protocol.CodeInvalidGrant, "not this vault's owner")
	toOther := grantFor(t, u, u.w.Key, testDomain712, later+3)
	toOther.Delegate = crypto.PubkeyToAddress(stranger.PublicKey)
	sign(t, &toOther, u.w.Key, testDomain712)
	wantGrantRefused(t, u, grantArgs(toOther), protocol.CodeInvalidGrant, "not this vault's session key")
	wantGrantRefused(t, u, grantArgs(grantFor(t, u, u.w.Key, delegation.Domain{ChainID: 5, Manager: testDomain712.Manager}, later+4)),
		protocol.CodeInvalidGrant, "not signed by the owner for chain 1337")
	wantGrantRefused(t, u, grantArgs(grantFor(t, u, u.w.Key, testDomain712, uint64(t0.Unix()-1))), protocol.CodeInvalidGrant, "expired")
	tampered := grantFor(t, u, u.w.Key, testDomain712, later+5)
	tampered.Caveats = tampered.Caveats[1:] // drop the allowed targets
	wantGrantRefused(t, u, grantArgs(tampered), protocol.CodeInvalidGrant, "not signed by the owner")
	wantGrantRefused(t, u, grantArgs(good), protocol.CodeInvalidGrant, "already granted")
	unknown := grantFor(t, u, u.w.Key, testDomain712, later+6)
	unknown.Caveats[0].Enforcer = common.HexToAddress("0x0000000000000000000000000000000000000bad")
	sign(t, &unknown, u.w.Key, testDomain712)
	wantGrantRefused(t, u, grantArgs(unknown), protocol.CodeInvalidGrant, "not one this node knows")
	wantGrantRefused(t, u, protocol.GrantArgs{}, protocol.CodeInvalidGrant, "1 to 8 delegations")

	// The same as an ERC-7715 wallet gives it: a permission context.
	ctxGrant := grantFor(t, u, u.w.Key, testDomain712, later+8)
	pc, err := delegation.PermissionContext(ctxGrant)
	if err != nil {
		t.Fatal(err)
	}
	u.mustCmd(t, protocol.OpGrantAdd, protocol.GrantArgs{PermissionContext: hexutil.Encode(pc)})
	chained, _ := delegation.PermissionContext(ctxGrant, good)
	wantGrantRefused(t, u, protocol.GrantArgs{PermissionContext: hexutil.Encode(chained)}, protocol.CodeInvalidGrant, "chain of 2")
	wantGrantRefused(t, u, protocol.GrantArgs{PermissionContext: "0x1234"}, protocol.CodeInvalidGrant, "permissionContext")

	// After a rotation a grant to the old key is refused.
	oldKey := grantFor(t, u, u.w.Key, testDomain712, later+7)
	u.mustCmd(t, protocol.OpKeyRotate, nil)
	wantGrantRefused(t, u, grantArgs(oldKey), protocol.CodeInvalidGrant, "after a rotation")

	// Revocation, which survives a restart.
	u.mustCmd(t, protocol.OpGrantRevoke, protocol.IDArgs{ID: h.Hex()})
	_, err = u.cmd(t, protocol.OpGrantRevoke, protocol.IDArgs{ID: h.Hex()})
	wantCode(t, err, protocol.CodeInvalidGrant)
	_, err = u.cmd(t, protocol.OpGrantRevoke, protocol.IDArgs{ID: "0x00"})
	wantCode(t, err, protocol.CodeNotFound)
	e.restart()
	u = e.signIn(u.w)
	st = u.state(t)
	revoked := 0
	for _, g := range st.Grants {
		if g.ID == h.Hex() && g.Status == protocol.GrantRevoked && g.RevokedAt != 0 {
			revoked++
		}
	}
	if len(st.Grants) != 2 || revoked != 1 {
		t.Fatalf("after revoking and a restart: %+v", st.Grants)
	}

	// A node without a chain takes no grant.
	plain := newEnv(t)
	p := plain.newUser()
	_, err = p.cmd(t, protocol.OpGrantAdd, grantArgs(good))
	wantCode(t, err, protocol.CodeNoChain)
}
