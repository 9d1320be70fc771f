package exec

import (
	"fmt"
	"math/big"
	"regexp"
	"strings"

	"github.com/ethereum/go-ethereum/accounts/abi"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/crypto"

	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/vault/rules"
)

// A trigger's event conditions, resolved when the vault takes the trigger:
// the signature parsed into the event's topic and the filter of each
// indexed parameter, the whole made the filter's key (rules.EventKey) that
// the node's log watcher reads, and named (rules.EventSignal).

// ResolveEvents resolves every event leaf of c on chain, naming its
// signal; a leaf without a fromBlock starts at the block after head. A
// filter the vault cannot read is refused, saying why.
func ResolveEvents(c *protocol.Condition, chain *protocol.ChainInfo, head uint64) error {
	var err error
	rules.WalkLeaves(c, func(l *protocol.Condition) {
		if l.Event == nil || err != nil {
			return
		}
		if l.Signal != "" && !strings.HasPrefix(l.Signal, protocol.EventPrefix) {
			err = rules.Invalid("an event condition takes no signal: the vault names its filter")
			return
		}
		if chain == nil {
			err = protocol.Errorf(protocol.CodeNoChain, "this node runs without a chain: it has no logs to read")
			return
		}
		if head == 0 {
			err = protocol.Errorf(protocol.CodeUnavailable, "the node has not read the chain's head yet: try again in a moment")
			return
		}
		if err = resolveEvent(l.Event, head); err == nil {
			l.Signal = rules.EventSignal(l.Event.Key)
		}
	})
	return err
}

func resolveEvent(e *protocol.ChainEvent, head uint64) error {
	if !common.IsHexAddress(e.Contract) {
		return rules.Invalid("an event's contract must be an address (0x and 40 hex digits)")
	}
	ev, err := ParseEvent(e.Signature)
	if err != nil {
		return rules.Invalid("an event's signature: %v", err)
	}
	indexed := ev.Indexed()
	if len(e.Topics) > len(indexed) {
		return rules.Invalid("%s has %d indexed parameters: %d topic filters given", ev.Name, len(indexed), len(e.Topics))
	}
	var topics [3]string
	for i, v := range e.Topics {
		if strings.TrimSpace(v) == "" {
			continue
		}
		t, err := topicOf(indexed[i].Type, v)
		if err != nil {
			return rules.Invalid("topic filter %d (%s): %v", i+1, indexed[i].Type.String(), err)
		}
		topics[i] = t.Hex()
	}
	switch {
	case e.FromBlock == 0:
		e.FromBlock = head + 1
	case e.FromBlock > head+1:
		return rules.Invalid("fromBlock %d is past the chain's next block (%d)", e.FromBlock, head+1)
	case head+1-e.FromBlock > protocol.MaxEventBackfill:
		return rules.Invalid("fromBlock %d is more than %d blocks back (the chain is at %d)", e.FromBlock, protocol.MaxEventBackfill, head)
	}
	e.Contract = common.HexToAddress(e.Contract).Hex()
	e.Key = rules.EventKey(e.Contract, ev.keySig, topics)
	return nil
}

// topicOf is the topic an indexed parameter of type t has for value s: the
// value in its 32 bytes, or for a string or bytes, its hash (given as is
// when it is 0x and 64 hex digits).
func topicOf(t abi.Type, s string) (common.Hash, error) {
	s = strings.TrimSpace(s)
	switch t.T {
	case abi.StringTy, abi.BytesTy, abi.SliceTy, abi.ArrayTy, abi.TupleTy:
		if rawTopic.MatchString(s) {
			return common.HexToHash(s), nil
		}
		if t.T == abi.StringTy {
			return crypto.Keccak256Hash([]byte(s)), nil
		}
		if t.T == abi.BytesTy {
			b, err := hexutil.Decode(s)
			if err != nil {
				return common.Hash{}, fmt.Errorf("%q is not bytes in hex", s)
			}
			return crypto.Keccak256Hash(b), nil
		}
		return common.Hash{}, fmt.Errorf("give its topic (its hash, 0x and 64 hex digits)")
	}
	v, err := argValue(t, s)
	if err != nil {
		return common.Hash{}, err
	}
	packed, err := abi.Arguments{{Type: t}}.Pack(v)
	if err != nil {
		return common.Hash{}, err
	}
	return common.BytesToHash(packed), nil
}

var rawTopic = regexp.MustCompile(`^0x[0-9a-fA-F]{64}$`)

// maxLogData is the most data of a log Describe decodes.
const maxLogData = 64 << 10

// Event is an event's signature, parsed.
type Event struct {
	Name   string
	Inputs abi.Arguments // in order, Indexed set
	Topic  common.Hash   // its first topic: the hash of Name(type,…)
	keySig string        // Name(type [indexed],…), as a filter's key holds it
}

// Indexed returns the event's indexed parameters, in order.
func (e *Event) Indexed() abi.Arguments {
	var out abi.Arguments
	for _, in := range e.Inputs {
		if in.Indexed {
			out = append(out, in)
		}
	}
	return out
}

// modestType refuses a parameter type a log could not be read back by
// within reason: arrays nested more than twice, or fixed ones of more
// than 256 elements.
func modestType(t abi.Type) error {
	depth := 0
	for e := &t; e.Elem != nil; e = e.Elem {
		if depth++; depth > 2 {
			return fmt.Errorf("%s: arrays nest at most twice here", t.String())
		}
		if e.T == abi.ArrayTy && e.Size > 256 {
			return fmt.Errorf("%s: a fixed array has at most 256 elements here", t.String())
		}
	}
	return nil
}

var identRe = regexp.MustCompile(`^[A-Za-z_$][A-Za-z0-9_$]*$`)

// ParseEvent parses "Name(type [indexed] [name],…)", as Solidity writes
// an event (tuples aside). At most 3 parameters are indexed.
func ParseEvent(sig string) (*Event, error) {
	sig = strings.TrimSpace(sig)
	name, rest, ok := strings.Cut(sig, "(")
	name = strings.TrimSpace(strings.TrimPrefix(strings.TrimSpace(name), "event "))
	if !ok || !strings.HasSuffix(rest, ")") || !identRe.MatchString(name) {
		return nil, fmt.Errorf("%q is not Name(type [indexed] [name],…)", short(sig))
	}
	rest = strings.TrimSpace(strings.TrimSuffix(rest, ")"))
	if strings.ContainsAny(rest, "()") {
		return nil, fmt.Errorf("a tuple parameter is not supported")
	}
	e := &Event{Name: name}
	var types, keyTypes []string
	if rest != "" {
		for i, p := range strings.Split(rest, ",") {
			f := strings.Fields(p)
			if len(f) == 0 || len(f) > 3 {
				return nil, fmt.Errorf("parameter %d: %q is not type [indexed] [name]", i+1, short(p))
			}
			indexed := len(f) > 1 && f[1] == "indexed"
			if (len(f) == 3 && !indexed) || (len(f) > 1 && !indexed && !identRe.MatchString(f[1])) || (len(f) == 3 && !identRe.MatchString(f[2])) {
				return nil, fmt.Errorf("parameter %d: %q is not type [indexed] [name]", i+1, short(p))
			}
			t, err := abi.NewType(f[0], "", nil)
			if err == nil && (t.T == abi.UintTy || t.T == abi.IntTy) && (t.Size == 0 || t.Size%8 != 0 || t.Size > 256) {
				err = fmt.Errorf("%s is not a Solidity integer type", f[0])
			}
			if err == nil {
				err = modestType(t)
			}
			if err != nil {
				return nil, fmt.Errorf("parameter %d: %v", i+1, err)
			}
			e.Inputs = append(e.Inputs, abi.Argument{Name: f[len(f)-1], Type: t, Indexed: indexed})
			types = append(types, t.String())
			if indexed {
				keyTypes = append(keyTypes, t.String()+" indexed")
			} else {
				keyTypes = append(keyTypes, t.String())
			}
		}
	}
	if n := len(e.Indexed()); n > 3 {
		return nil, fmt.Errorf("%d indexed parameters: an event has at most 3", n)
	}
	e.Topic = crypto.Keccak256Hash([]byte(name + "(" + strings.Join(types, ",") + ")"))
	e.keySig = name + "(" + strings.Join(keyTypes, ",") + ")"
	return e, nil
}

// Describe is a log of the event in words: Name(arg, …), each indexed
// argument read from topics (a hashed one shown as its hash), the others
// from data. A log that does not decode says so.
func (e *Event) Describe(topics []common.Hash, data []byte) (out string) {
	defer func() {
		// A log is anyone's bytes: one the decoder cannot take is
		// described as such, never the end of its reader.
		if recover() != nil {
			out = e.Name + " (its data does not decode as the signature says)"
		}
	}()
	if len(data) > maxLogData {
		return e.Name + fmt.Sprintf(" (%d bytes of data, not decoded)", len(data))
	}
	var plain abi.Arguments
	for _, in := range e.Inputs {
		if !in.Indexed {
			plain = append(plain, in)
		}
	}
	values, err := plain.UnpackValues(data)
	if err != nil {
		return e.Name + " (its data does not decode as the signature says)"
	}
	args := make([]string, 0, len(e.Inputs))
	ti, vi := 1, 0
	for _, in := range e.Inputs {
		var s string
		if in.Indexed {
			if ti >= len(topics) {
				return e.Name + " (fewer topics than the signature says)"
			}
			s = topicValue(in.Type, topics[ti])
			ti++
		} else {
			s = valueString(values[vi])
			vi++
		}
		args = append(args, s)
	}
	out = e.Name + "(" + strings.Join(args, ", ") + ")"
	if len(out) > 300 {
		out = out[:300] + "…"
	}
	return out
}

func topicValue(t abi.Type, h common.Hash) string {
	switch t.T {
	case abi.AddressTy:
		return common.BytesToAddress(h[:]).Hex()
	case abi.UintTy:
		return new(big.Int).SetBytes(h[:]).String()
	case abi.IntTy:
		n := new(big.Int).SetBytes(h[:])
		if n.Bit(255) == 1 {
			n.Sub(n, new(big.Int).Lsh(big.NewInt(1), 256))
		}
		return n.String()
	case abi.BoolTy:
		return fmt.Sprint(h[31] != 0)
	}
	return h.Hex()
}

func valueString(v any) string {
	switch x := v.(type) {
	case common.Address:
		return x.Hex()
	case []byte:
		return hexutil.Encode(x)
	case string:
		return fmt.Sprintf("%q", x)
	}
	if b, ok := v.([32]byte); ok {
		return hexutil.Encode(b[:])
	}
	return fmt.Sprint(v)
}
