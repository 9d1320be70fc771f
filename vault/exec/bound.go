package exec

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"math/big"
	"strconv"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/math"

	"github.com/spells-dev/spells/delegation"
	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/vault/keys"
)

// A trigger's own grant: one delegation whose caveats pin exactly what
// the trigger may do on-chain. Its batch of calls is the action with the
// recipient (the owner, for a swap), the amounts and the minimum output
// written in (ExactExecutionBatchEnforcer); its redemptions are the
// trigger's fires (LimitedCallsEnforcer); it ends at the trigger's expiry
// (TimestampEnforcer), which is also the router's deadline. Whoever holds
// the session key can redeem it only as signed.

// TriggerRules are the rules the own grant of a trigger spec must set, for
// the vault whose owner is owner on chain c.
func TriggerRules(c *protocol.ChainInfo, owner common.Address, spec protocol.TriggerSpec) (delegation.Rules, error) {
	if c == nil {
		return delegation.Rules{}, protocol.Errorf(protocol.CodeNoChain, "this node has no chain, so a trigger takes no grant")
	}
	if spec.Action.Kind == "notify" {
		return delegation.Rules{}, invalidAction("a notify trigger moves nothing on-chain, so it takes no grant")
	}
	if spec.ExpiresAt <= 0 {
		return delegation.Rules{}, invalidAction("a trigger with its own grant needs expiresAt: the grant ends then, on-chain")
	}
	if spec.MaxFires <= 0 {
		return delegation.Rules{}, invalidAction("a trigger with its own grant needs maxFires: the chain allows that many redemptions")
	}
	act, err := resolve(c, spec.Action, owner)
	if err != nil {
		return delegation.Rules{}, err
	}
	end := uint64((spec.ExpiresAt + 999) / 1000)
	if sp := act.swap; sp != nil {
		if sp.minOut == nil {
			return delegation.Rules{}, invalidAction("a swap under the trigger's own grant needs minOut, the least it accepts: the grant pins it on-chain")
		}
		sp.fill(act, sp.minOut, end)
	}
	feed, err := feedCondition(c, spec.Condition)
	if err != nil {
		return delegation.Rules{}, err
	}
	return delegation.Rules{Batch: act.batch(), MaxCalls: uint64(spec.MaxFires), NotAfter: end, Feed: feed}, nil
}

// feedCondition is the on-chain form of a trigger's condition when it is
// one threshold on a signal the chain has a price feed for (nil
// otherwise: the condition is the node's to evaluate alone). The threshold
// is written in the feed's decimals, rounded so that the chain's check is
// never looser than the trigger's: up for below, down for above.
func feedCondition(c *protocol.ChainInfo, cond protocol.Condition) (*delegation.FeedCondition, error) {
	if cond.Signal == "" || cond.Threshold == nil {
		return nil, nil
	}
	var f *protocol.Feed
	for i := range c.Feeds {
		if c.Feeds[i].Signal == cond.Signal {
			f = &c.Feeds[i]
		}
	}
	if f == nil {
		return nil, nil
	}
	if *cond.Threshold <= 0 {
		return nil, invalidAction("%s is a price feed, whose answers are positive: a threshold of %v can never be checked on-chain", cond.Signal, *cond.Threshold)
	}
	r, ok := new(big.Rat).SetString(strconv.FormatFloat(*cond.Threshold, 'f', -1, 64))
	if !ok {
		return nil, invalidAction("threshold %v is not a number", *cond.Threshold)
	}
	r.Mul(r, new(big.Rat).SetInt(new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(f.Decimals)), nil)))
	t := new(big.Int).Quo(r.Num(), r.Denom()) // toward zero: down, for a positive threshold
	above := cond.Op == protocol.OpAbove
	if !above && !r.IsInt() {
		t.Add(t, big.NewInt(1))
	}
	if t.BitLen() > 255 {
		return nil, invalidAction("threshold %v is beyond what %s's feed can answer", *cond.Threshold, cond.Signal)
	}
	return &delegation.FeedCondition{Feed: common.HexToAddress(f.Address), Above: above, Threshold: t, MaxAge: f.MaxAge}, nil
}

// UnsignedTriggerGrant is trigger.grant: the delegation from owner to
// sessionKey that the trigger spec's own grant must be, with a fresh salt,
// and the typed data to sign.
func UnsignedTriggerGrant(c *protocol.ChainInfo, owner, sessionKey common.Address, spec protocol.TriggerSpec) (protocol.TriggerGrant, error) {
	dom, enf, err := grantDomain(c)
	if err != nil {
		return protocol.TriggerGrant{}, err
	}
	rules, err := TriggerRules(c, owner, spec)
	if err != nil {
		return protocol.TriggerGrant{}, err
	}
	cs, err := rules.Caveats(enf)
	if err != nil {
		return protocol.TriggerGrant{}, InvalidGrant("%v", err)
	}
	salt, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
	if err != nil {
		return protocol.TriggerGrant{}, err
	}
	d := delegation.Delegation{Delegate: sessionKey, Delegator: owner, Authority: delegation.RootAuthority, Caveats: cs,
		Salt: (*math.HexOrDecimal256)(salt), Signature: []byte{}}
	db, _ := json.Marshal(d)
	td, err := json.Marshal(d.TypedData(dom))
	if err != nil {
		return protocol.TriggerGrant{}, err
	}
	rb, _ := json.Marshal(rules.View())
	return protocol.TriggerGrant{Delegation: db, TypedData: td, Rules: rb}, nil
}

// CheckTriggerGrant verifies the own grant a trigger spec carries
// (spec.Delegation) for the vault whose owner is owner and session key
// sessionKey (hasKey false: none this node can use), at nowMs: the owner's
// signature, and caveats that set exactly TriggerRules. It returns the
// grant to store (its Trigger not yet set) and the body to keep.
func CheckTriggerGrant(c *protocol.ChainInfo, owner, sessionKey common.Address, hasKey bool, spec protocol.TriggerSpec, nowMs int64) (protocol.Grant, []byte, error) {
	dom, enf, err := grantDomain(c)
	if err != nil {
		return protocol.Grant{}, nil, err
	}
	if !hasKey {
		return protocol.Grant{}, nil, keys.ErrUnavailable
	}
	want, err := TriggerRules(c, owner, spec)
	if err != nil {
		return protocol.Grant{}, nil, err
	}
	_, h, got, err := checkDelegation("the trigger's delegation", spec.Delegation, dom, enf, owner, sessionKey, nowMs)
	if err != nil {
		return protocol.Grant{}, nil, err
	}
	if diff := rulesDiff(got, want); diff != "" {
		return protocol.Grant{}, nil, InvalidGrant("the trigger's delegation does not pin this trigger: %s (trigger.grant gives the delegation to sign)", diff)
	}
	rb, _ := json.Marshal(got.View())
	body, _ := json.Marshal([]json.RawMessage{spec.Delegation})
	return protocol.Grant{ID: h.Hex(), Status: protocol.GrantActive, SessionKey: sessionKey.Hex(), CreatedAt: nowMs,
		Delegations: []protocol.GrantDelegation{{Hash: h.Hex(), Rules: rb}}}, body, nil
}

// KeepsGrant reports whether rules, those of a trigger's grant, are still
// exactly what the trigger spec needs (an edit that changes no bound keeps
// its grant), and if not, what differs.
func KeepsGrant(c *protocol.ChainInfo, owner common.Address, rules delegation.Rules, spec protocol.TriggerSpec) (string, error) {
	want, err := TriggerRules(c, owner, spec)
	if err != nil {
		return "", err
	}
	return rulesDiff(rules, want), nil
}

func opName(above bool) string {
	if above {
		return "above"
	}
	return "below"
}

// rulesDiff names the first way got differs from want ("" if none).
func rulesDiff(got, want delegation.Rules) string {
	switch {
	case got.MaxCalls != want.MaxCalls:
		return fmt.Sprintf("it allows %d redemptions, the trigger fires at most %d times", got.MaxCalls, want.MaxCalls)
	case got.NotAfter != want.NotAfter || got.NotBefore != want.NotBefore:
		return fmt.Sprintf("it is valid from %d before %d (unix seconds), the trigger expires at %d", got.NotBefore, got.NotAfter, want.NotAfter)
	case (got.Feed == nil) != (want.Feed == nil):
		if want.Feed == nil {
			return "it checks a price feed the trigger's condition does not name"
		}
		return "it does not check the price feed the trigger's condition names"
	case got.Feed != nil && (got.Feed.Feed != want.Feed.Feed || got.Feed.Above != want.Feed.Above || got.Feed.Threshold.Cmp(want.Feed.Threshold) != 0 || got.Feed.MaxAge != want.Feed.MaxAge):
		return fmt.Sprintf("its price condition (feed %s, %s %s, at most %d s old) is not the trigger's (feed %s, %s %s, at most %d s old)",
			got.Feed.Feed.Hex(), opName(got.Feed.Above), got.Feed.Threshold, got.Feed.MaxAge, want.Feed.Feed.Hex(), opName(want.Feed.Above), want.Feed.Threshold, want.Feed.MaxAge)
	}
	a, _ := json.Marshal(got.View().Batch)
	b, _ := json.Marshal(want.View().Batch)
	if string(a) != string(b) {
		return "its batch of calls is not the trigger's action (another token, amount, minimum output, recipient or deadline)"
	}
	x, y := got, want
	x.Batch, y.Batch = nil, nil
	a, _ = json.Marshal(x.View())
	b, _ = json.Marshal(y.View())
	if string(a) != string(b) {
		return fmt.Sprintf("it sets other caveats (%s) than the trigger's (%s)", a, b)
	}
	return ""
}
