package exec

import (
	"encoding/json"
	"fmt"
	"math/big"
	"strings"

	"github.com/ethereum/go-ethereum/common"
	"zombiezen.com/go/sqlite"

	"github.com/spells-dev/spells/delegation"
	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/vault/store"
)

// The vault's own check of the grants' rules before it signs anything: a
// fast, explained refusal, and the counters reserved in the transaction
// that stores the signed transaction. The chain is the authority; this is
// the first line.

// grantDelegation is one active delegation with what the vault has used of
// it.
type grantDelegation struct {
	d     delegation.Delegation
	hash  common.Hash
	rules delegation.Rules
}

// activeDelegations reads the delegations of the vault's active grants to
// its session key.
func activeDelegations(conn *sqlite.Conn, c *protocol.ChainInfo, sessionKey common.Address) ([]grantDelegation, error) {
	lists, err := store.ActiveDelegations(conn, sessionKey.Hex())
	if err != nil || len(lists) == 0 {
		return nil, err
	}
	_, enf, err := grantDomain(c)
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

// loadTriggerGrant reads a trigger's own grant id: its delegation and
// rules, its status and the session key it is to.
func loadTriggerGrant(conn *sqlite.Conn, c *protocol.ChainInfo, id string) (d delegation.Delegation, rules delegation.Rules, status, key string, ok bool, err error) {
	body, status, key, _, ok, err := store.TriggerGrant(conn, id)
	if err != nil || !ok {
		return d, rules, status, key, ok, err
	}
	var raws []json.RawMessage
	if err := json.Unmarshal(body, &raws); err != nil || len(raws) != 1 {
		return d, rules, status, key, ok, fmt.Errorf("trigger grant %s: %d delegations stored (%v)", id, len(raws), err)
	}
	if err := json.Unmarshal(raws[0], &d); err != nil {
		return d, rules, status, key, ok, fmt.Errorf("trigger grant %s: %w", id, err)
	}
	_, enf, err := grantDomain(c)
	if err != nil {
		return d, rules, status, key, ok, err
	}
	if rules, err = delegation.ReadRules(d.Caveats, enf); err != nil {
		return d, rules, status, key, ok, fmt.Errorf("trigger grant %s: %w", id, err)
	}
	return d, rules, status, key, true, nil
}

// TriggerGrantRules reads the rules of a trigger's own grant id.
func TriggerGrantRules(conn *sqlite.Conn, c *protocol.ChainInfo, id string) (delegation.Rules, error) {
	_, rules, _, _, ok, err := loadTriggerGrant(conn, c, id)
	if err == nil && !ok {
		err = fmt.Errorf("trigger grant %s is not in the vault", id)
	}
	return rules, err
}

// triggerGrant reads a trigger's own grant id and checks, at nowMs, that
// it may be redeemed once more: active, to the vault's session key, not
// expired, fires left. With skip (a test's), only that it exists.
func triggerGrant(conn *sqlite.Conn, c *protocol.ChainInfo, sessionKey common.Address, id string, nowMs int64, skip bool) (*grantDelegation, error) {
	what := "the trigger's own grant " + id
	d, rules, status, key, ok, err := loadTriggerGrant(conn, c, id)
	if err != nil {
		return nil, err
	}
	if !ok {
		return nil, refusal{what: what, rule: "no such grant in this vault"}
	}
	h := common.HexToHash(id)
	gd := &grantDelegation{d: d, hash: h, rules: rules}
	if skip {
		return gd, nil
	}
	u, err := store.UsageOf(conn, id, 0)
	if err != nil {
		return nil, err
	}
	now := nowMs / 1000
	switch {
	case status != protocol.GrantActive:
		return nil, refusal{what: what, rule: "it was revoked (the trigger was changed, deleted, or its grant disabled)"}
	case key != sessionKey.Hex():
		return nil, refusal{what: what, rule: fmt.Sprintf("it is to session key %s, and the vault now signs with %s: sign the trigger's grant again", key, sessionKey.Hex())}
	case len(rules.Batch) == 0:
		return nil, refusal{what: what, rule: "it pins no batch of calls"}
	case rules.NotAfter != 0 && now >= int64(rules.NotAfter):
		return nil, refusal{what: what, rule: fmt.Sprintf("validity window: expired at %d", rules.NotAfter)}
	case rules.MaxCalls != 0 && u.Calls >= rules.MaxCalls:
		return nil, refusal{what: what, rule: fmt.Sprintf("calls: all %d used", rules.MaxCalls)}
	}
	return gd, nil
}

func periodOf(p *delegation.Period, now int64) int64 {
	if p == nil || p.Duration == 0 || now < int64(p.Start) {
		return 0
	}
	return (now - int64(p.Start)) / int64(p.Duration)
}

// allows checks one step against one delegation's rules, and returns the
// rule that refuses it ("" if it is allowed) and what it spends.
func allows(st *call, r delegation.Rules, u store.Usage, now int64, later bool) (rule string, spend *big.Int) {
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

// plan finds, for each call, a delegation of the vault's active grants
// to sessionKey that allows it at nowMs, counting what the earlier calls
// use. It returns a refusal naming the rule when a call has none. With
// later, a delegation that is not valid yet counts as allowing what it
// will allow (a trigger made before its grant starts). With skip (a
// test's), no rule refuses.
func plan(conn *sqlite.Conn, c *protocol.ChainInfo, sessionKey common.Address, a *action, nowMs int64, later, skip bool) error {
	ds, err := activeDelegations(conn, c, sessionKey)
	if err != nil {
		return err
	}
	now := nowMs / 1000
	used := map[common.Hash]store.Usage{}
	for _, st := range a.calls {
		st.deleg, st.hash, st.rules, st.spend = delegation.Delegation{}, common.Hash{}, delegation.Rules{}, nil
		// The refusal shown is that of the delegation nearest to allowing
		// the step: one made for its target before one that is not.
		best, bestScore := "", -1
		for _, gd := range ds {
			u, ok := used[gd.hash]
			if !ok {
				if u, err = store.UsageOf(conn, gd.hash.Hex(), periodOf(periodRule(gd.rules), now)); err != nil {
					return err
				}
			}
			rule, spend := allows(st, gd.rules, u, now, later)
			if skip {
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
func relevance(st *call, r delegation.Rules, rule string) int {
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
// what the calls use of their delegations.
func reserve(conn *sqlite.Conn, a *action, nowMs int64) error {
	now := nowMs / 1000
	for _, st := range a.calls {
		if err := store.AddCall(conn, st.hash.Hex()); err != nil {
			return err
		}
		if st.spend == nil {
			continue
		}
		period := periodOf(periodRule(st.rules), now)
		u, err := store.UsageOf(conn, st.hash.Hex(), period)
		if err != nil {
			return err
		}
		total := new(big.Int).Add(u.Spent, st.spend)
		if err := store.SetSpent(conn, st.hash.Hex(), period, total); err != nil {
			return err
		}
	}
	return nil
}
