package vault

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
	"github.com/spells-dev/spells/vault/store"
)

// Actions: what a swap, a transfer or a call becomes on the chain (the
// calls an intent redeems, each under one of the owner's delegations), and
// the vault's own check of the grants' rules before it signs anything.

// step is one call an intent makes from the owner's account, under one
// delegation.
type step struct {
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
	steps []*step
	// A swap's second step needs the pool's quote: minOut is computed when
	// the intent is prepared (quote less slippage).
	swap *swapPlan
}

type swapPlan struct {
	pool        common.Address
	sell, buy   common.Address
	amount      *big.Int
	slippageBps int64
}

var (
	transferSel = contracts.MustGet(contracts.DemoToken).ABI.Methods["transfer"].ID
	swapSel     = contracts.MustGet(contracts.ConstantProductPool).ABI.Methods["swap"].ID
)

func invalidAction(format string, args ...any) error {
	return protocol.Errorf(protocol.CodeInvalidTrigger, format, args...)
}

// token resolves a token named by symbol or address among the chain's.
func (v *Vault) token(name string) (protocol.Token, error) {
	for _, t := range v.m.cfg.Chain.Tokens {
		if strings.EqualFold(t.Symbol, name) || (common.IsHexAddress(name) && common.HexToAddress(name) == common.HexToAddress(t.Address)) {
			return t, nil
		}
	}
	var known []string
	for _, t := range v.m.cfg.Chain.Tokens {
		known = append(known, t.Symbol)
	}
	return protocol.Token{}, invalidAction("token %q is not one this chain's node knows (%s)", truncateID(name), strings.Join(known, ", "))
}

// units parses a decimal amount of a token with decimals places.
func units(s string, decimals uint8) (*big.Int, error) {
	s = strings.TrimSpace(s)
	whole, frac, _ := strings.Cut(s, ".")
	if s == "" || strings.HasPrefix(s, "-") || strings.HasPrefix(s, "+") || len(frac) > int(decimals) || (whole == "" && frac == "") {
		return nil, invalidAction("amount %q is not a positive number with at most %d decimals", truncateID(s), decimals)
	}
	n, ok := new(big.Int).SetString(whole+frac+strings.Repeat("0", int(decimals)-len(frac)), 10)
	if !ok || n.Sign() <= 0 {
		return nil, invalidAction("amount %q is not a positive number with at most %d decimals", truncateID(s), decimals)
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

// resolve reads an action's parameters against the chain. Without a chain
// nothing executes, and only their shape was checked (validateSpec).
func (v *Vault) resolve(a protocol.Action) (*action, error) {
	out := &action{kind: a.Kind}
	switch a.Kind {
	case "notify":
		return out, nil
	case "swap":
		var p protocol.SwapParams
		if err := decodeParams(a.Params, &p); err != nil {
			return nil, err
		}
		pool := v.m.cfg.Chain.Pool
		if pool == nil {
			return nil, invalidAction("this chain has no pool to swap through")
		}
		sell, err := v.token(p.Sell)
		if err != nil {
			return nil, err
		}
		buy, err := v.token(p.Buy)
		if err != nil {
			return nil, err
		}
		pair := map[common.Address]bool{common.HexToAddress(pool.Token0): true, common.HexToAddress(pool.Token1): true}
		if sell.Address == buy.Address || !pair[common.HexToAddress(sell.Address)] || !pair[common.HexToAddress(buy.Address)] {
			return nil, invalidAction("the pool trades %s and %s against each other; it cannot swap %s for %s", v.symbol(pool.Token0), v.symbol(pool.Token1), sell.Symbol, buy.Symbol)
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
		sp := &swapPlan{pool: common.HexToAddress(pool.Address), sell: common.HexToAddress(sell.Address), buy: common.HexToAddress(buy.Address),
			amount: amount, slippageBps: int64(p.SlippageBps)}
		out.swap = sp
		pay, _ := contracts.MustGet(contracts.DemoToken).ABI.Pack("transfer", sp.pool, amount)
		out.steps = []*step{
			{target: sp.sell, value: new(big.Int), data: pay, what: fmt.Sprintf("transfer %s %s to the pool", p.Amount, sell.Symbol)},
			{target: sp.pool, value: new(big.Int), data: swapSel, what: fmt.Sprintf("swap on the pool for %s", buy.Symbol)},
		}
		return out, nil
	case "transfer":
		var p protocol.TransferParams
		if err := decodeParams(a.Params, &p); err != nil {
			return nil, err
		}
		if !common.IsHexAddress(p.To) {
			return nil, invalidAction("to %q is not an address", truncateID(p.To))
		}
		to := common.HexToAddress(p.To)
		if strings.EqualFold(p.Token, "native") {
			amount, err := units(p.Amount, 18)
			if err != nil {
				return nil, err
			}
			out.steps = []*step{{target: to, value: amount, what: fmt.Sprintf("send %s of the native currency to %s", p.Amount, to.Hex())}}
			return out, nil
		}
		tok, err := v.token(p.Token)
		if err != nil {
			return nil, err
		}
		amount, err := units(p.Amount, tok.Decimals)
		if err != nil {
			return nil, err
		}
		data, _ := contracts.MustGet(contracts.DemoToken).ABI.Pack("transfer", to, amount)
		out.steps = []*step{{target: common.HexToAddress(tok.Address), value: new(big.Int), data: data,
			what: fmt.Sprintf("transfer %s %s to %s", p.Amount, tok.Symbol, to.Hex())}}
		return out, nil
	case "call":
		var p protocol.CallParams
		if err := decodeParams(a.Params, &p); err != nil {
			return nil, err
		}
		if !common.IsHexAddress(p.Target) {
			return nil, invalidAction("target %q is not an address", truncateID(p.Target))
		}
		data := common.FromHex(p.Data)
		if p.Data != "" && (!strings.HasPrefix(p.Data, "0x") || len(p.Data)%2 != 0 || fmt.Sprintf("0x%x", data) != strings.ToLower(p.Data)) {
			return nil, invalidAction("data must be 0x-prefixed hex bytes")
		}
		value := new(big.Int)
		if p.Value != "" {
			if _, ok := value.SetString(p.Value, 10); !ok || value.Sign() < 0 {
				return nil, invalidAction("value %q is not a whole number of wei", truncateID(p.Value))
			}
		}
		out.steps = []*step{{target: common.HexToAddress(p.Target), value: value, data: data, what: fmt.Sprintf("call %s", common.HexToAddress(p.Target).Hex())}}
		return out, nil
	}
	return nil, invalidAction("action kind %q cannot execute", a.Kind)
}

func (v *Vault) symbol(addr string) string {
	for _, t := range v.m.cfg.Chain.Tokens {
		if common.HexToAddress(t.Address) == common.HexToAddress(addr) {
			return t.Symbol
		}
	}
	return addr
}

// grantDelegation is one active delegation with what the vault has used of
// it.
type grantDelegation struct {
	d     delegation.Delegation
	hash  common.Hash
	rules delegation.Rules
}

// activeDelegations reads the delegations of the vault's active grants to
// its current session key.
func (v *Vault) activeDelegations() ([]grantDelegation, error) {
	lists, err := store.ActiveDelegations(v.conn, v.ring.Address.Hex())
	if err != nil || len(lists) == 0 {
		return nil, err
	}
	_, enf, err := v.grantDomain()
	if err != nil {
		return nil, err
	}
	var out []grantDelegation
	for _, list := range lists {
		var raws []json.RawMessage
		if err := json.Unmarshal(list, &raws); err != nil {
			return nil, err
		}
		for _, r := range raws {
			var d delegation.Delegation
			if err := json.Unmarshal(r, &d); err != nil {
				return nil, err
			}
			rules, err := delegation.ReadRules(d.Caveats, enf)
			if err != nil {
				return nil, err
			}
			h, err := d.Hash()
			if err != nil {
				return nil, err
			}
			out = append(out, grantDelegation{d: d, hash: h, rules: rules})
		}
	}
	return out, nil
}

// usage is what the vault has used of a delegation: its redemptions in
// all, and its spend in the current period.
type usage = store.Usage

func (v *Vault) usageOf(h common.Hash, period int64) (usage, error) {
	return store.UsageOf(v.conn, h.Hex(), period)
}

func periodOf(p *delegation.Period, now int64) int64 {
	if p == nil || p.Duration == 0 || now < int64(p.Start) {
		return 0
	}
	return (now - int64(p.Start)) / int64(p.Duration)
}

// allows checks one step against one delegation's rules, and returns the
// rule that refuses it ("" if it is allowed) and what it spends.
func allows(st *step, r delegation.Rules, u usage, now int64, later bool) (rule string, spend *big.Int) {
	sel := ""
	if len(st.data) >= 4 {
		sel = fmt.Sprintf("0x%x", st.data[:4])
	}
	switch {
	case r.NotBefore != 0 && now <= int64(r.NotBefore) && !later:
		return fmt.Sprintf("validity window: not valid before %d", r.NotBefore), nil
	case r.NotAfter != 0 && now >= int64(r.NotAfter):
		return fmt.Sprintf("validity window: expired at %d", r.NotAfter), nil
	case len(r.Targets) > 0 && !containsAddr(r.Targets, st.target):
		return fmt.Sprintf("allowed targets: %s is not one of them", st.target.Hex()), nil
	case len(r.Methods) > 0 && !containsStr(r.Methods, sel):
		return fmt.Sprintf("allowed methods: %s is not one of them", orNone(sel)), nil
	case r.MaxValue != nil && st.value.Cmp(r.MaxValue) > 0:
		return fmt.Sprintf("value per call: %s wei is above %s", st.value, r.MaxValue), nil
	case r.MaxCalls != 0 && u.Calls >= r.MaxCalls:
		return fmt.Sprintf("calls: all %d used", r.MaxCalls), nil
	}
	if p := r.Token; p != nil {
		if st.target != p.Token || sel != fmt.Sprintf("0x%x", transferSel) || st.value.Sign() != 0 || len(st.data) != 68 {
			return fmt.Sprintf("spend of %s per period: this delegation allows only transfers of that token", p.Token.Hex()), nil
		}
		amount := new(big.Int).SetBytes(st.data[36:68])
		if now < int64(p.Start) {
			return fmt.Sprintf("spend of %s per period: the first period starts at %d", p.Token.Hex(), p.Start), nil
		}
		if left := new(big.Int).Sub(p.Amount, u.Spent); amount.Cmp(left) > 0 {
			return fmt.Sprintf("spend of %s per period: %s would exceed the %s left of %s this period", p.Token.Hex(), amount, left, p.Amount), nil
		}
		return "", amount
	}
	if p := r.Native; p != nil {
		if now < int64(p.Start) {
			return fmt.Sprintf("native spend per period: the first period starts at %d", p.Start), nil
		}
		if left := new(big.Int).Sub(p.Amount, u.Spent); st.value.Cmp(left) > 0 {
			return fmt.Sprintf("native spend per period: %s wei would exceed the %s left of %s this period", st.value, left, p.Amount), nil
		}
		return "", st.value
	}
	return "", nil
}

func orNone(s string) string {
	if s == "" {
		return "a call without calldata"
	}
	return s
}

func containsAddr(xs []common.Address, a common.Address) bool {
	for _, x := range xs {
		if x == a {
			return true
		}
	}
	return false
}

func containsStr(xs []string, s string) bool {
	for _, x := range xs {
		if strings.EqualFold(x, s) {
			return true
		}
	}
	return false
}

// plan finds, for each step, a delegation of the vault's active grants
// that allows it now, counting what the earlier steps use. It returns a
// refused error naming the rule when a step has none.
func (v *Vault) plan(a *action, nowMs int64) error { return v.planFor(a, nowMs, false) }

// planFor is plan; with later, a delegation that is not valid yet counts as
// allowing what it will allow (a trigger made before its grant starts).
func (v *Vault) planFor(a *action, nowMs int64, later bool) error {
	ds, err := v.activeDelegations()
	if err != nil {
		return err
	}
	now := nowMs / 1000
	used := map[common.Hash]usage{}
	for _, st := range a.steps {
		// The refusal shown is that of the delegation nearest to allowing
		// the step: one made for its target before one that is not.
		best, bestScore := "", -1
		for _, gd := range ds {
			u, ok := used[gd.hash]
			if !ok {
				if u, err = v.usageOf(gd.hash, periodOf(periodRule(gd.rules), now)); err != nil {
					return err
				}
			}
			rule, spend := allows(st, gd.rules, u, now, later)
			if skipPolicy.Load() {
				rule = ""
			}
			if rule != "" {
				if sc := relevance(st, gd.rules, rule); sc > bestScore {
					best, bestScore = rule, sc
				}
				continue
			}
			st.deleg, st.hash, st.rules, st.spend = gd.d, gd.hash, gd.rules, spend
			u.Calls++
			if spend != nil {
				u.Spent = new(big.Int).Add(u.Spent, spend)
			}
			used[gd.hash] = u
			break
		}
		if st.hash == (common.Hash{}) {
			if best == "" {
				best = "no active grant to this vault's session key"
			}
			return refusal{what: st.what, rule: best}
		}
	}
	return nil
}

// relevance ranks a refusal by how near its delegation came to allowing
// the step: 0 for a token allowance of another token, 1 for another
// target, 2 for a delegation made for this target.
func relevance(st *step, r delegation.Rules, rule string) int {
	switch {
	case r.Token != nil && r.Token.Token != st.target:
		return 0
	case strings.HasPrefix(rule, "allowed targets"):
		return 1
	}
	return 2
}

func periodRule(r delegation.Rules) *delegation.Period {
	if r.Token != nil {
		return &r.Token.Period
	}
	return r.Native
}

// refusal is the vault's policy refusing a step, naming the rule.
type refusal struct{ what, rule string }

func (r refusal) Error() string {
	return fmt.Sprintf("no grant allows this step (%s): %s", r.what, r.rule)
}

// reserve records, in the transaction that stores the signed transaction,
// what the steps use of their delegations.
func (v *Vault) reserve(a *action, nowMs int64) error {
	now := nowMs / 1000
	for _, st := range a.steps {
		if err := store.AddCall(v.conn, st.hash.Hex()); err != nil {
			return err
		}
		if st.spend == nil {
			continue
		}
		period := periodOf(periodRule(st.rules), now)
		u, err := v.usageOf(st.hash, period)
		if err != nil {
			return err
		}
		total := new(big.Int).Add(u.Spent, st.spend)
		if err := store.SetSpent(v.conn, st.hash.Hex(), period, total); err != nil {
			return err
		}
	}
	return nil
}

// checkAction validates a trigger's action when it is created or changed:
// with a chain, its parameters must resolve and a grant must allow it now,
// so a trigger that could never run is refused at once.
func (v *Vault) checkAction(a protocol.Action, nowMs int64) error {
	if v.m.cfg.Chain == nil || a.Kind == "notify" {
		return nil
	}
	act, err := v.resolve(a)
	if err != nil {
		return err
	}
	// A grant whose validity window has not started yet counts: the
	// trigger will run once it starts.
	if err := v.planFor(act, nowMs, true); err != nil {
		if r, ok := err.(refusal); ok {
			return invalidAction("this trigger could never run: %s", r.Error())
		}
		return err
	}
	return nil
}
