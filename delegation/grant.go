package delegation

import (
	"crypto/ecdsa"
	"encoding/json"
	"fmt"
	"math/big"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/math"
	"github.com/ethereum/go-ethereum/crypto"

	"github.com/spells-dev/spells/protocol"
)

// SignGrant makes, for each of rules, a delegation from owner's account
// to key with those caveats, signs it with owner in dom, and returns them
// as grant.add's arguments (and the delegations). Salts start at salt. It
// is what a wallet does for its owner; tools, the bench and the tests use
// it.
func SignGrant(dom Domain, enf Enforcers, owner *ecdsa.PrivateKey, key common.Address, salt int64, rules ...Rules) (protocol.GrantArgs, []Delegation, error) {
	var args protocol.GrantArgs
	var out []Delegation
	from := crypto.PubkeyToAddress(owner.PublicKey)
	for i, r := range rules {
		cs, err := r.Caveats(enf)
		if err != nil {
			return args, nil, err
		}
		d := Delegation{Delegate: key, Delegator: from, Authority: RootAuthority, Caveats: cs,
			Salt: (*math.HexOrDecimal256)(big.NewInt(salt + int64(i)))}
		if err := d.SignWith(dom, func(h []byte) ([]byte, error) { return crypto.Sign(h, owner) }); err != nil {
			return args, nil, err
		}
		b, err := json.Marshal(d)
		if err != nil {
			return args, nil, err
		}
		args.Delegations = append(args.Delegations, b)
		out = append(out, d)
	}
	return args, out, nil
}

// SignTriggerGrant signs, with owner in dom, the delegation a node's
// trigger.grant answered, and returns it for TriggerSpec.Delegation. It
// refuses a delegation that is not from owner's account. What it signs is
// what the node proposed: a wallet shows the owner the typed data (and a
// careful client compares the pinned batch with the action it asked for)
// before signing.
func SignTriggerGrant(dom Domain, owner *ecdsa.PrivateKey, g protocol.TriggerGrant) (json.RawMessage, error) {
	var d Delegation
	if err := json.Unmarshal(g.Delegation, &d); err != nil {
		return nil, fmt.Errorf("the node's delegation: %w", err)
	}
	if d.Delegator != crypto.PubkeyToAddress(owner.PublicKey) {
		return nil, fmt.Errorf("the node's delegation is from %s, not the owner", d.Delegator.Hex())
	}
	if err := d.SignWith(dom, func(h []byte) ([]byte, error) { return crypto.Sign(h, owner) }); err != nil {
		return nil, err
	}
	return json.Marshal(d)
}
