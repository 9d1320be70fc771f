package exec

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math/big"
	"strings"

	"github.com/ethereum/go-ethereum/common"

	"github.com/spells-dev/spells/contracts"
	"github.com/spells-dev/spells/delegation"
	"github.com/spells-dev/spells/protocol"
)

// Actions: what a swap, a transfer or a call becomes on the chain: the
// calls an intent redeems, each under one of the owner's delegations.

// short cuts what a client sent to a length fit for a message.
func short(s string) string {
	if len(s) > 64 {
		return s[:64] + "…"
	}
	return s
}

// call is one call an intent makes from the owner's account, under one
// delegation.
type call struct {
	target common.Address
	value  *big.Int
	data   []byte
	what   string // for messages: "transfer 1 dETH to the pool"

	// Filled by planning: the delegation that allows it, as signed.
	deleg delegation.Delegation
	hash  common.Hash
	rules delegation.Rules
	// What it spends of its delegation's period allowance (token or
	// native), for the counters.
	spend *big.Int
}

// action is an action's parameters resolved against the chain.
type action struct {
	kind  string
	calls []*call
	// A swap without a signed minimum output takes the router's quote
	// less slippage when the intent is prepared; its deadline is then set
	// too (swapPlan.fill).
	swap *swapPlan
}

// swapPlan is a swap through the chain's router: approve the router for
// amount of sell, then swapExactTokensForTokens(amount, minOut, [sell,
// buy], owner, deadline), so the output goes to the owner's account and
// nowhere else.
type swapPlan struct {
	router      common.Address
	sell, buy   common.Address
	owner       common.Address
	amount      *big.Int
	minOut      *big.Int // nil: the quote less slippageBps, when prepared
	slippageBps int64
}

var (
	transferSel = contracts.MustGet(contracts.DemoToken).ABI.Methods["transfer"].ID
	routerABI   = contracts.MustGet(contracts.DemoRouter).ABI
	tokenABI    = contracts.MustGet(contracts.DemoToken).ABI
)

// fill writes the router call with minOut and deadline (unix seconds).
func (sp *swapPlan) fill(a *action, minOut *big.Int, deadline uint64) {
	data, _ := routerABI.Pack("swapExactTokensForTokens", sp.amount, minOut, []common.Address{sp.sell, sp.buy}, sp.owner,
		new(big.Int).SetUint64(deadline))
	a.calls[1].data = data
}

// batch is the action's calls as executions, in order.
func (a *action) batch() []delegation.Execution {
	out := make([]delegation.Execution, len(a.calls))
	for i, c := range a.calls {
		out[i] = delegation.Execution{Target: c.target, Value: c.value, Data: c.data}
	}
	return out
}

func invalidAction(format string, args ...any) error {
	return protocol.Errorf(protocol.CodeInvalidTrigger, format, args...)
}

// token resolves a token named by symbol or address among the chain's.
func token(c *protocol.ChainInfo, name string) (protocol.Token, error) {
	for _, t := range c.Tokens {
		if strings.EqualFold(t.Symbol, name) || (common.IsHexAddress(name) && common.HexToAddress(name) == common.HexToAddress(t.Address)) {
			return t, nil
		}
	}
	var known []string
	for _, t := range c.Tokens {
		known = append(known, t.Symbol)
	}
	return protocol.Token{}, invalidAction("token %q is not one this chain's node knows (%s)", short(name), strings.Join(known, ", "))
}

// units parses a decimal amount of a token with decimals places.
func units(s string, decimals uint8) (*big.Int, error) {
	s = strings.TrimSpace(s)
	whole, frac, _ := strings.Cut(s, ".")
	if s == "" || strings.HasPrefix(s, "-") || strings.HasPrefix(s, "+") || len(frac) > int(decimals) || (whole == "" && frac == "") {
		return nil, invalidAction("amount %q is not a positive number with at most %d decimals", short(s), decimals)
	}
	n, ok := new(big.Int).SetString(whole+frac+strings.Repeat("0", int(decimals)-len(frac)), 10)
	if !ok || n.Sign() <= 0 {
		return nil, invalidAction("amount %q is not a positive number with at most %d decimals", short(s), decimals)
	}
	return n, nil
}

func decodeParams(raw json.RawMessage, into any) error {
	if len(raw) == 0 {
		return invalidAction("this action needs its params")
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(into); err != nil {
		return invalidAction("action params: %s", protocol.DescribeJSONError(err))
	}
	return nil
}

// resolve reads an action's parameters against the chain c, for the
// vault whose owner is owner. Without a chain nothing executes, and only
// their shape was checked (rules.Validate).
func resolve(c *protocol.ChainInfo, a protocol.Action, owner common.Address) (*action, error) {
	out := &action{kind: a.Kind}
	switch a.Kind {
	case "notify":
		return out, nil
	case "swap":
		var p protocol.SwapParams
		if err := decodeParams(a.Params, &p); err != nil {
			return nil, err
		}
		if !common.IsHexAddress(c.Router) {
			return nil, invalidAction("this chain has no router to swap through")
		}
		sell, err := token(c, p.Sell)
		if err != nil {
			return nil, err
		}
		buy, err := token(c, p.Buy)
		if err != nil {
			return nil, err
		}
		if sell.Address == buy.Address {
			return nil, invalidAction("a swap sells one token for another, not %s for itself", sell.Symbol)
		}
		if pool := c.Pool; pool != nil {
			pair := map[common.Address]bool{common.HexToAddress(pool.Token0): true, common.HexToAddress(pool.Token1): true}
			if !pair[common.HexToAddress(sell.Address)] || !pair[common.HexToAddress(buy.Address)] {
				return nil, invalidAction("the pool trades %s and %s against each other; it cannot swap %s for %s", symbol(c, pool.Token0), symbol(c, pool.Token1), sell.Symbol, buy.Symbol)
			}
		}
		amount, err := units(p.Amount, sell.Decimals)
		if err != nil {
			return nil, err
		}
		if p.SlippageBps == 0 {
			p.SlippageBps = 100
		}
		if p.SlippageBps < 1 || p.SlippageBps > 5000 {
			return nil, invalidAction("slippageBps must be 1 to 5000 (0.01 %% to 50 %%)")
		}
		sp := &swapPlan{router: common.HexToAddress(c.Router), sell: common.HexToAddress(sell.Address), buy: common.HexToAddress(buy.Address),
			owner: owner, amount: amount, slippageBps: int64(p.SlippageBps)}
		if p.MinOut != "" {
			if sp.minOut, err = units(p.MinOut, buy.Decimals); err != nil {
				return nil, invalidAction("minOut: %s", messageOf(err))
			}
		}
		out.swap = sp
		approve, _ := tokenABI.Pack("approve", sp.router, amount)
		out.calls = []*call{
			{target: sp.sell, value: new(big.Int), data: approve, what: fmt.Sprintf("approve the router for %s %s", p.Amount, sell.Symbol)},
			{target: sp.router, value: new(big.Int), data: routerABI.Methods["swapExactTokensForTokens"].ID, what: fmt.Sprintf("swap %s %s for %s through the router, to the owner", p.Amount, sell.Symbol, buy.Symbol)},
		}
		return out, nil
	case "transfer":
		var p protocol.TransferParams
		if err := decodeParams(a.Params, &p); err != nil {
			return nil, err
		}
		if !common.IsHexAddress(p.To) {
			return nil, invalidAction("to %q is not an address", short(p.To))
		}
		to := common.HexToAddress(p.To)
		if strings.EqualFold(p.Token, "native") {
			amount, err := units(p.Amount, 18)
			if err != nil {
				return nil, err
			}
			out.calls = []*call{{target: to, value: amount, what: fmt.Sprintf("send %s of the native currency to %s", p.Amount, to.Hex())}}
			return out, nil
		}
		tok, err := token(c, p.Token)
		if err != nil {
			return nil, err
		}
		amount, err := units(p.Amount, tok.Decimals)
		if err != nil {
			return nil, err
		}
		data, _ := tokenABI.Pack("transfer", to, amount)
		out.calls = []*call{{target: common.HexToAddress(tok.Address), value: new(big.Int), data: data,
			what: fmt.Sprintf("transfer %s %s to %s", p.Amount, tok.Symbol, to.Hex())}}
		return out, nil
	case "call":
		var p protocol.CallParams
		if err := decodeParams(a.Params, &p); err != nil {
			return nil, err
		}
		if !common.IsHexAddress(p.Target) {
			return nil, invalidAction("target %q is not an address", short(p.Target))
		}
		data := common.FromHex(p.Data)
		if p.Data != "" && (!strings.HasPrefix(p.Data, "0x") || len(p.Data)%2 != 0 || fmt.Sprintf("0x%x", data) != strings.ToLower(p.Data)) {
			return nil, invalidAction("data must be 0x-prefixed hex bytes")
		}
		value := new(big.Int)
		if p.Value != "" {
			if _, ok := value.SetString(p.Value, 10); !ok || value.Sign() < 0 {
				return nil, invalidAction("value %q is not a whole number of wei", short(p.Value))
			}
		}
		out.calls = []*call{{target: common.HexToAddress(p.Target), value: value, data: data, what: fmt.Sprintf("call %s", common.HexToAddress(p.Target).Hex())}}
		return out, nil
	}
	return nil, invalidAction("action kind %q cannot execute", a.Kind)
}

func symbol(c *protocol.ChainInfo, addr string) string {
	for _, t := range c.Tokens {
		if common.HexToAddress(t.Address) == common.HexToAddress(addr) {
			return t.Symbol
		}
	}
	return addr
}
