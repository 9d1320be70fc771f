package exec

import (
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"

	"github.com/spells-dev/spells/delegation"
	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/vault/store"
)

// An action resolves against the chain's tokens, or is refused naming
// what is wrong with it.
func TestResolve(t *testing.T) {
	c := testChain()
	for _, bad := range []struct {
		a    protocol.Action
		want string
	}{
		{protocol.Action{Kind: "transfer", Params: []byte(`{"token":"dUSD","to":"nobody","amount":"1"}`)}, "not an address"},
		{protocol.Action{Kind: "transfer", Params: []byte(`{"token":"DOGE","to":"0x00000000000000000000000000000000000b0b00","amount":"1"}`)}, "dUSD"},
		{protocol.Action{Kind: "transfer", Params: []byte(`{"token":"dUSD","to":"0x00000000000000000000000000000000000b0b00","amount":"-1"}`)}, "positive"},
		{protocol.Action{Kind: "transfer", Params: []byte(`{"token":"dUSD","to":"0x00000000000000000000000000000000000b0b00","amount":"1","x":1}`)}, "unknown field"},
		{protocol.Action{Kind: "call", Params: []byte(`{"target":"0x00000000000000000000000000000000000b0b00","data":"12"}`)}, "0x-prefixed"},
		{protocol.Action{Kind: "swap", Params: []byte(`{"sell":"dUSD","buy":"dETH","amount":"1"}`)}, "no router"},
	} {
		_, err := resolve(c, bad.a, common.Address{})
		if pe := protocol.AsError(err); pe == nil || pe.Code != protocol.CodeInvalidTrigger || !strings.Contains(pe.Message, bad.want) {
			t.Errorf("%s: %v, want invalid_trigger about %q", bad.a.Params, err, bad.want)
		}
	}
	act, err := resolve(c, protocol.Action{Kind: "transfer", Params: []byte(`{"token":"dUSD","to":"0x00000000000000000000000000000000000b0b00","amount":"1.5"}`)}, common.Address{})
	if err != nil || len(act.calls) != 1 || act.calls[0].target != common.HexToAddress(c.Tokens[0].Address) {
		t.Fatalf("transfer: %+v, %v", act, err)
	}
}

// The vault's check finds a delegation whose rules allow each call, counts
// what the earlier calls and the reserved ones used, and refuses naming
// the rule of the delegation nearest to allowing it.
func TestPlanAndReserve(t *testing.T) {
	_, v, cfg := newRunner(t)
	c := cfg.Chain
	dUSD := common.HexToAddress(c.Tokens[0].Address)
	v.grant(t, c, delegation.Rules{Token: &delegation.TokenPeriod{Token: dUSD, Period: delegation.Period{Amount: big.NewInt(10), Duration: 3600, Start: 1}}})
	key, _ := v.SessionKey()
	now := t0.UnixMilli()
	pay := func(amount string) *action {
		a, err := resolve(c, protocol.Action{Kind: "transfer", Params: []byte(`{"token":"dUSD","to":"0x00000000000000000000000000000000000b0b00","amount":"` + amount + `"}`)}, common.Address{})
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	// 0.000000000000000006 dUSD is 6 units of the period's 10.
	six := pay("0.000000000000000006")
	if err := plan(v.conn, c, key, six, now, false, false); err != nil {
		t.Fatalf("6 of 10: %v", err)
	}
	if err := store.InTx(v.conn, false, func() error { return reserve(v.conn, six, now) }); err != nil {
		t.Fatal(err)
	}
	err := plan(v.conn, c, key, pay("0.000000000000000006"), now, false, false)
	if rf, ok := err.(refusal); !ok || !strings.Contains(rf.Error(), "per period") || !strings.Contains(rf.Error(), "4 left") {
		t.Fatalf("6 more with 4 left: %v", err)
	}
	if err := plan(v.conn, c, key, pay("0.000000000000000006"), now, false, true); err != nil {
		t.Fatalf("with the check skipped: %v", err)
	}
	// The next period starts afresh.
	if err := plan(v.conn, c, key, pay("0.000000000000000006"), t0.Add(time.Hour).UnixMilli(), false, false); err != nil {
		t.Fatalf("next period: %v", err)
	}
	err = plan(v.conn, c, key, &action{calls: []*call{{target: target, value: new(big.Int), data: []byte{1, 2, 3, 4}, what: "call"}}}, now, false, false)
	if rf, ok := err.(refusal); !ok || !strings.Contains(rf.Error(), "only transfers") {
		t.Fatalf("a call under a token allowance: %v", err)
	}
	other := common.HexToAddress("0x00000000000000000000000000000000000000ee")
	err = plan(v.conn, c, other, six, now, false, false)
	if rf, ok := err.(refusal); !ok || !strings.Contains(rf.Error(), "no active grant") {
		t.Fatalf("another session key: %v", err)
	}
}

// A grant is refused, naming the delegation and the rule, when it is not
// the owner's own, to this vault's key, for this chain.
func TestCheckGrantRefusals(t *testing.T) {
	_, v, cfg := newRunner(t)
	c := cfg.Chain
	dom := delegation.Domain{ChainID: c.ChainID, Manager: common.HexToAddress(c.DelegationManager)}
	key, _ := v.SessionKey()
	enf := delegation.ParseEnforcers(c.Enforcers)
	rules := delegation.Rules{Targets: []common.Address{target}}
	args, _, _ := delegation.SignGrant(dom, enf, v.owner, key, 1, rules)
	now := t0.UnixMilli()
	if _, err := CheckGrant(c, v.Owner(), key, true, args, now); err != nil {
		t.Fatalf("a good grant: %v", err)
	}
	wrongKey := common.HexToAddress("0x00000000000000000000000000000000000000ee")
	otherChain := delegation.Domain{ChainID: 1, Manager: dom.Manager}
	badChain, _, _ := delegation.SignGrant(otherChain, enf, v.owner, key, 1, rules)
	expired, _, _ := delegation.SignGrant(dom, enf, v.owner, key, 1, delegation.Rules{Targets: []common.Address{target}, NotAfter: uint64(t0.Unix() - 1)})
	twice := protocol.GrantArgs{Delegations: append(args.Delegations, args.Delegations[0])}
	for _, c2 := range []struct {
		what string
		err  error
		want string
	}{
		{"to another key", checkErr(CheckGrant(c, v.Owner(), wrongKey, true, args, now)), "not this vault's session key"},
		{"from another account", checkErr(CheckGrant(c, wrongKey, key, true, args, now)), "not this vault's owner"},
		{"signed for another chain", checkErr(CheckGrant(c, v.Owner(), key, true, badChain, now)), "not signed by the owner"},
		{"expired", checkErr(CheckGrant(c, v.Owner(), key, true, expired, now)), "expired"},
		{"the same delegation twice", checkErr(CheckGrant(c, v.Owner(), key, true, twice, now)), "twice"},
		{"on a node without a chain", checkErr(CheckGrant(nil, v.Owner(), key, true, args, now)), "no chain"},
	} {
		if pe := protocol.AsError(c2.err); pe == nil || !strings.Contains(pe.Message, c2.want) {
			t.Errorf("%s: %v, want a refusal about %q", c2.what, c2.err, c2.want)
		}
	}
	if _, err := CheckGrant(c, v.Owner(), key, false, args, now); protocol.AsError(err) == nil || protocol.AsError(err).Code != protocol.CodeKeyUnavailable {
		t.Errorf("without a usable key: %v", err)
	}
}

func checkErr(_ protocol.Grant, err error) error { return err }
