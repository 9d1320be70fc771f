package exec

import (
	"fmt"
	"math/big"
	"strconv"
	"strings"

	"github.com/ethereum/go-ethereum/accounts/abi"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	gmath "github.com/ethereum/go-ethereum/common/math"
	"github.com/ethereum/go-ethereum/crypto"

	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/vault/rules"
)

// A trigger's chain reads, resolved when the vault takes the trigger: a
// balance of the owner's (native, or a token's balanceOf), or a view
// function's number, each made the exact call the node's reader makes at
// every block, and named (rules.ReadSignal).

// ResolveReads resolves every read leaf of c for the vault of owner on
// chain, naming its signal. A read the vault cannot make is refused,
// saying why.
func ResolveReads(c *protocol.Condition, chain *protocol.ChainInfo, owner common.Address) error {
	var err error
	rules.WalkLeaves(c, func(l *protocol.Condition) {
		if l.Read == nil || err != nil {
			return
		}
		if l.Signal != "" && !strings.HasPrefix(l.Signal, protocol.ReadPrefix) {
			err = rules.Invalid("a read condition takes no signal: the vault names its read")
			return
		}
		if chain == nil {
			err = protocol.Errorf(protocol.CodeNoChain, "this node runs without a chain: it has nothing to read")
			return
		}
		if err = resolveRead(l.Read, chain, owner); err == nil {
			l.Signal = rules.ReadSignal(l.Read)
		}
	})
	return err
}

func resolveRead(r *protocol.Read, chain *protocol.ChainInfo, owner common.Address) error {
	// A balance is made its call again from scratch, so a condition sent
	// back as the vault stored it resolves to the same read.
	switch {
	case strings.EqualFold(r.Balance, "native"):
		r.Contract, r.Data, r.Decimals, r.Signed = "", owner.Hex(), 18, false
		return nil
	case r.Balance != "":
		t, err := token(chain, r.Balance)
		if err != nil {
			return rules.Invalid("%s", protocol.AsError(err).Message)
		}
		r.Contract, r.Function, r.Args, r.Decimals = t.Address, "balanceOf(address)", []string{owner.Hex()}, t.Decimals
	}
	if !common.IsHexAddress(r.Contract) {
		return rules.Invalid("a read's contract must be an address (0x and 40 hex digits)")
	}
	if r.Decimals > 36 {
		return rules.Invalid("a read's decimals must be 0 to 36")
	}
	data, signed, err := packView(r.Function, r.Args)
	if err != nil {
		return rules.Invalid("a read's function: %v", err)
	}
	r.Contract, r.Data, r.Signed = common.HexToAddress(r.Contract).Hex(), hexutil.Encode(data), signed
	return nil
}

// packView packs a call of fn ("name(type,…)" with an optional " returns
// (type)", a number type; uint256 by default) with args, and says whether
// its number is signed.
func packView(fn string, args []string) (data []byte, signed bool, err error) {
	sig, ret, _ := strings.Cut(fn, " returns")
	ret = strings.Trim(strings.TrimSpace(ret), "()")
	if ret != "" && !strings.HasPrefix(ret, "uint") && !strings.HasPrefix(ret, "int") {
		return nil, false, fmt.Errorf("it must return a number (uint… or int…), not %s", ret)
	}
	signed = strings.HasPrefix(ret, "int")
	sel, err := abi.ParseSelector(strings.TrimSpace(sig))
	if err != nil {
		return nil, false, fmt.Errorf("%q is not name(type,…): %v", sig, err)
	}
	if len(sel.Inputs) != len(args) {
		return nil, false, fmt.Errorf("%s takes %d arguments, %d given", sel.Name, len(sel.Inputs), len(args))
	}
	var inputs abi.Arguments
	var values []any
	types := make([]string, len(sel.Inputs))
	for i, in := range sel.Inputs {
		t, err := abi.NewType(in.Type, "", in.Components)
		if err != nil {
			return nil, false, fmt.Errorf("argument %d: %v", i+1, err)
		}
		v, err := argValue(t, args[i])
		if err != nil {
			return nil, false, fmt.Errorf("argument %d (%s): %v", i+1, in.Type, err)
		}
		inputs, values, types[i] = append(inputs, abi.Argument{Type: t}), append(values, v), t.String()
	}
	packed, err := inputs.Pack(values...)
	if err != nil {
		return nil, false, err
	}
	selector := crypto.Keccak256([]byte(sel.Name + "(" + strings.Join(types, ",") + ")"))[:4]
	return append(selector, packed...), signed, nil
}

// argValue reads a string as a value of t: addresses, integers, booleans,
// fixed bytes and strings.
func argValue(t abi.Type, s string) (any, error) {
	s = strings.TrimSpace(s)
	switch t.T {
	case abi.AddressTy:
		if !common.IsHexAddress(s) {
			return nil, fmt.Errorf("%q is not an address", s)
		}
		return common.HexToAddress(s), nil
	case abi.UintTy, abi.IntTy:
		n, ok := new(big.Int).SetString(s, 0)
		if !ok {
			return nil, fmt.Errorf("%q is not an integer", s)
		}
		if t.T == abi.UintTy && n.Sign() < 0 {
			return nil, fmt.Errorf("%q is negative", s)
		}
		if n.BitLen() > t.Size {
			return nil, fmt.Errorf("%q does not fit %s", s, t.String())
		}
		if t.Size > 64 {
			return n, nil
		}
		// A small integer is its own Go type: read from its 32 bytes.
		return abi.ReadInteger(t, gmath.U256Bytes(new(big.Int).Set(n)))
	case abi.BoolTy:
		return strconv.ParseBool(s)
	case abi.StringTy:
		return s, nil
	case abi.FixedBytesTy:
		b, err := hexutil.Decode(s)
		if err != nil || len(b) != t.Size {
			return nil, fmt.Errorf("%q is not %d bytes in hex", s, t.Size)
		}
		return abi.ReadFixedBytes(t, common.RightPadBytes(b, 32))
	}
	return nil, fmt.Errorf("a %s argument is not supported in a read", t.String())
}
