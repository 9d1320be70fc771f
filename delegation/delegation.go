package delegation

import (
	"errors"
	"fmt"
	"math/big"
	"strings"

	"github.com/ethereum/go-ethereum/accounts/abi"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/common/math"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/signer/core/apitypes"
)

// RootAuthority is the authority of a delegation made by the account
// itself, not redelegated (DelegationManager.ROOT_AUTHORITY).
var RootAuthority = common.HexToHash("0xffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff")

// Caveat is one condition of a delegation: an enforcer contract and the
// terms it checks (Args are given at redemption and are not signed).
type Caveat struct {
	Enforcer common.Address `json:"enforcer"`
	Terms    hexutil.Bytes  `json:"terms"`
	Args     hexutil.Bytes  `json:"args"`
}

// Delegation is a signed permission from Delegator to Delegate.
type Delegation struct {
	Delegate  common.Address        `json:"delegate"`
	Delegator common.Address        `json:"delegator"`
	Authority common.Hash           `json:"authority"`
	Caveats   []Caveat              `json:"caveats"`
	Salt      *math.HexOrDecimal256 `json:"salt"` // hex (leading zeros allowed) or decimal
	Signature hexutil.Bytes         `json:"signature"`
}

// Domain is where a delegation is valid: the chain and its
// DelegationManager.
type Domain struct {
	ChainID uint64
	Manager common.Address
}

var typedTypes = apitypes.Types{
	"EIP712Domain": {{Name: "name", Type: "string"}, {Name: "version", Type: "string"},
		{Name: "chainId", Type: "uint256"}, {Name: "verifyingContract", Type: "address"}},
	"Delegation": {{Name: "delegate", Type: "address"}, {Name: "delegator", Type: "address"},
		{Name: "authority", Type: "bytes32"}, {Name: "caveats", Type: "Caveat[]"}, {Name: "salt", Type: "uint256"}},
	"Caveat": {{Name: "enforcer", Type: "address"}, {Name: "terms", Type: "bytes"}},
}

// TypedData is the EIP-712 form of d in dom: what a wallet shows and signs
// (eth_signTypedData_v4).
func (d Delegation) TypedData(dom Domain) apitypes.TypedData {
	caveats := make([]any, len(d.Caveats))
	for i, c := range d.Caveats {
		caveats[i] = map[string]any{"enforcer": c.Enforcer.Hex(), "terms": hexutil.Bytes(c.Terms)}
	}
	salt := new(big.Int)
	if d.Salt != nil {
		salt = (*big.Int)(d.Salt)
	}
	return apitypes.TypedData{
		Types:       typedTypes,
		PrimaryType: "Delegation",
		Domain: apitypes.TypedDataDomain{Name: "DelegationManager", Version: "1",
			ChainId: (*math.HexOrDecimal256)(new(big.Int).SetUint64(dom.ChainID)), VerifyingContract: dom.Manager.Hex()},
		Message: apitypes.TypedDataMessage{"delegate": d.Delegate.Hex(), "delegator": d.Delegator.Hex(),
			"authority": hexutil.Bytes(d.Authority.Bytes()), "caveats": caveats, "salt": (*math.HexOrDecimal256)(salt)},
	}
}

// Digest is the hash the delegator signs.
func (d Delegation) Digest(dom Domain) (common.Hash, error) {
	h, _, err := apitypes.TypedDataAndHash(d.TypedData(dom))
	if err != nil {
		return common.Hash{}, err
	}
	return common.BytesToHash(h), nil
}

// Hash is the delegation's own hash (DelegationManager.getDelegationHash):
// its id on-chain, the key of disableDelegation.
func (d Delegation) Hash() (common.Hash, error) {
	td := d.TypedData(Domain{})
	h, err := td.HashStruct("Delegation", td.Message)
	return common.BytesToHash(h), err
}

// SignWith signs d in dom with sign, which signs a 32-byte digest and
// returns r ‖ s ‖ v with v 0 or 1 (crypto.Sign); V is stored as 27 or 28.
func (d *Delegation) SignWith(dom Domain, sign func(digest []byte) ([]byte, error)) error {
	h, err := d.Digest(dom)
	if err != nil {
		return err
	}
	sig, err := sign(h[:])
	if err != nil {
		return err
	}
	if len(sig) != 65 {
		return fmt.Errorf("signature is %d bytes", len(sig))
	}
	sig[64] += 27
	d.Signature = sig
	return nil
}

// Signer recovers the address that signed d in dom. It refuses a signature
// that is not 65 bytes, has a V other than 27 or 28, or a high S.
func (d Delegation) Signer(dom Domain) (common.Address, error) {
	if len(d.Signature) != 65 {
		return common.Address{}, fmt.Errorf("the signature is %d bytes, not 65", len(d.Signature))
	}
	v := d.Signature[64]
	if v != 27 && v != 28 {
		return common.Address{}, fmt.Errorf("the signature's v is %d, not 27 or 28", v)
	}
	r, s := new(big.Int).SetBytes(d.Signature[:32]), new(big.Int).SetBytes(d.Signature[32:64])
	if !crypto.ValidateSignatureValues(v-27, r, s, true) {
		return common.Address{}, errors.New("the signature's r or s is out of range")
	}
	h, err := d.Digest(dom)
	if err != nil {
		return common.Address{}, err
	}
	sig := append(append([]byte{}, d.Signature[:64]...), v-27)
	pub, err := crypto.SigToPub(h[:], sig)
	if err != nil {
		return common.Address{}, fmt.Errorf("the signature does not recover: %w", err)
	}
	return crypto.PubkeyToAddress(*pub), nil
}

var permissionContext = mustArgs(`[{"type":"tuple[]","components":[
	{"name":"delegate","type":"address"},{"name":"delegator","type":"address"},{"name":"authority","type":"bytes32"},
	{"name":"caveats","type":"tuple[]","components":[{"name":"enforcer","type":"address"},{"name":"terms","type":"bytes"},{"name":"args","type":"bytes"}]},
	{"name":"salt","type":"uint256"},{"name":"signature","type":"bytes"}]}]`)

func mustArgs(j string) abi.Arguments {
	a, err := abi.JSON(strings.NewReader(`[{"type":"function","name":"f","inputs":` + j + `}]`))
	if err != nil {
		panic(err)
	}
	return a.Methods["f"].Inputs
}

type abiCaveat struct {
	Enforcer common.Address
	Terms    []byte
	Args     []byte
}

type abiDelegation struct {
	Delegate  common.Address
	Delegator common.Address
	Authority [32]byte
	Caveats   []abiCaveat
	Salt      *big.Int
	Signature []byte
}

// PermissionContext is abi.encode(Delegation[]) of a chain of delegations,
// leaf first: one of redeemDelegations' permission contexts.
func PermissionContext(chain ...Delegation) ([]byte, error) {
	out := make([]abiDelegation, len(chain))
	for i, d := range chain {
		cs := make([]abiCaveat, len(d.Caveats))
		for j, c := range d.Caveats {
			cs[j] = abiCaveat{Enforcer: c.Enforcer, Terms: c.Terms, Args: c.Args}
		}
		salt := new(big.Int)
		if d.Salt != nil {
			salt = (*big.Int)(d.Salt)
		}
		out[i] = abiDelegation{Delegate: d.Delegate, Delegator: d.Delegator, Authority: d.Authority, Caveats: cs, Salt: salt, Signature: d.Signature}
	}
	return permissionContext.Pack(out)
}

// SingleCall is the execution calldata of a single call in the default
// mode (mode bytes32(0)): target ‖ value ‖ callData.
func SingleCall(target common.Address, value *big.Int, data []byte) []byte {
	if value == nil {
		value = new(big.Int)
	}
	out := append([]byte{}, target.Bytes()...)
	out = append(out, common.LeftPadBytes(value.Bytes(), 32)...)
	return append(out, data...)
}

// ParsePermissionContext decodes a permission context (abi.encode of a
// Delegation[] chain, leaf first), as an ERC-7715 wallet returns it in its
// grant's context.
func ParsePermissionContext(ctx []byte) ([]Delegation, error) {
	vals, err := permissionContext.Unpack(ctx)
	if err != nil {
		return nil, fmt.Errorf("not an encoded list of delegations: %w", err)
	}
	var raw []abiDelegation
	if err := permissionContext.Copy(&raw, vals); err != nil {
		return nil, fmt.Errorf("not an encoded list of delegations: %w", err)
	}
	out := make([]Delegation, len(raw))
	for i, d := range raw {
		cs := make([]Caveat, len(d.Caveats))
		for j, c := range d.Caveats {
			cs[j] = Caveat{Enforcer: c.Enforcer, Terms: c.Terms, Args: c.Args}
		}
		out[i] = Delegation{Delegate: d.Delegate, Delegator: d.Delegator, Authority: d.Authority, Caveats: cs,
			Salt: (*math.HexOrDecimal256)(d.Salt), Signature: d.Signature}
	}
	return out, nil
}
