package delegation

import (
	"crypto/ecdsa"
	"encoding/json"
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
