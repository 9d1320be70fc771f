package exec

import (
	"strings"
	"testing"

	"github.com/ethereum/go-ethereum/common"

	"github.com/spells-dev/spells/protocol"
)

// A threshold on a signal the chain has a feed for becomes the feed
// condition, in the feed's decimals, rounded so the chain is never looser
// than the trigger; a threshold a feed can never answer is refused.
func TestFeedConditionOfATrigger(t *testing.T) {
	c := &protocol.ChainInfo{Feeds: []protocol.Feed{
		{Signal: "ETH/USD", Address: "0x00000000000000000000000000000000000000f1", Decimals: 8, MaxAge: 120},
		{Signal: "WEI/ETH", Address: "0x00000000000000000000000000000000000000f2", Decimals: 18, MaxAge: 3600},
	}}
	th := func(v float64) *float64 { return &v }
	for _, x := range []struct {
		cond  protocol.Condition
		want  string // threshold, or "" for no feed condition
		above bool
	}{
		{protocol.Condition{Signal: "ETH/USD", Op: protocol.OpBelow, Threshold: th(2400)}, "240000000000", false},
		{protocol.Condition{Signal: "ETH/USD", Op: protocol.OpBelow, Threshold: th(2400.123456789)}, "240012345679", false},
		{protocol.Condition{Signal: "ETH/USD", Op: protocol.OpAbove, Threshold: th(2400.123456789)}, "240012345678", true},
		{protocol.Condition{Signal: "WEI/ETH", Op: protocol.OpAbove, Threshold: th(0.5)}, "500000000000000000", true},
		{protocol.Condition{Signal: "BTC/USD", Op: protocol.OpBelow, Threshold: th(1)}, "", false},
		{protocol.Condition{EveryMs: 60_000}, "", false},
	} {
		f, err := feedCondition(c, x.cond)
		if err != nil {
			t.Fatalf("%+v: %v", x.cond, err)
		}
		switch {
		case x.want == "" && f != nil:
			t.Errorf("%+v: a feed condition %+v, want none", x.cond, f)
		case x.want != "" && (f == nil || f.Threshold.String() != x.want || f.Above != x.above):
			t.Errorf("%+v: %+v, want threshold %s above %v", x.cond, f, x.want, x.above)
		}
	}
	if f, _ := feedCondition(c, protocol.Condition{Signal: "ETH/USD", Op: protocol.OpBelow, Threshold: th(1)}); f.Feed != common.HexToAddress("0xf1") || f.MaxAge != 120 {
		t.Fatalf("feed %+v", f)
	}
	for _, bad := range []float64{-5, 0, 1e300} {
		_, err := feedCondition(c, protocol.Condition{Signal: "ETH/USD", Op: protocol.OpBelow, Threshold: th(bad)})
		if pe := protocol.AsError(err); pe == nil || pe.Code != protocol.CodeInvalidTrigger || !strings.Contains(pe.Message, "ETH/USD") {
			t.Errorf("threshold %v: %v", bad, err)
		}
	}
}
