package vault

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/spells-dev/spells/protocol"
)

// TestIndexFindsExactlyTheCrossedLeaves checks the index against a brute
// force model over random thresholds and random price walks.
func TestIndexFindsExactlyTheCrossedLeaves(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for round := 0; round < 20; round++ {
		ix := newInterestIndex()
		model := map[string][]leaf{}
		for v := 0; v < 50; v++ {
			id := fmt.Sprintf("0x%040d", v)
			var ls []leaf
			for n := 0; n < 1+r.IntN(3); n++ {
				op := protocol.OpBelow
				if r.IntN(2) == 0 {
					op = protocol.OpAbove
				}
				l := leaf{Vault: id, Trigger: "t", N: n, Signal: "X", Op: op, Thr: float64(90 + r.IntN(21))}
				if r.IntN(4) > 0 { // most leaves start known, as from the latest value 100
					l = l.After(100)
				}
				ls = append(ls, l)
			}
			model[id] = ls
			ix.set(id, slices.Clone(ls))
		}
		for tick := 0; tick < 200; tick++ {
			v := float64(85 + r.IntN(31))
			var want []string
			for id, ls := range model {
				hit := false
				for i, l := range ls {
					if l.Flips(v) {
						hit = true
						ls[i] = l.After(v)
					}
				}
				if hit {
					want = append(want, id)
				}
			}
			got := ix.dispatch("X", v, protocol.SignalOrigin{})
			slices.Sort(want)
			slices.Sort(got)
			if !slices.Equal(got, want) {
				t.Fatalf("round %d tick %d value %g: index woke %v, want %v", round, tick, v, got, want)
			}
		}
	}
}

func TestIndexTickCrossingNothingFindsNothing(t *testing.T) {
	ix := newInterestIndex()
	for i := 0; i < 1000; i++ {
		ix.set(fmt.Sprintf("v%d", i), []leaf{leaf{Vault: fmt.Sprintf("v%d", i), Trigger: "t", Signal: "ETH/USD",
			Op: protocol.OpBelow, Thr: 2000 + float64(i)}.After(3500)})
	}
	if got := ix.dispatch("ETH/USD", 3400, protocol.SignalOrigin{}); len(got) != 0 {
		t.Fatalf("a tick above every threshold woke %d vaults", len(got))
	}
	if got := ix.dispatch("ETH/USD", 2500.5, protocol.SignalOrigin{}); len(got) != 499 {
		t.Fatalf("a fall to 2500.5 woke %d vaults, want 499 (thresholds 2501..2999)", len(got))
	}
	if got := ix.dispatch("ETH/USD", 2500.4, protocol.SignalOrigin{}); len(got) != 0 {
		t.Fatalf("a move between thresholds woke %d vaults", len(got))
	}
}

func TestIndexAsksForValuesAReportMissed(t *testing.T) {
	ix := newInterestIndex()
	ix.dispatch("X", 10, protocol.SignalOrigin{})
	resend := ix.set("v", []leaf{leaf{Vault: "v", Trigger: "t", Signal: "X", Op: protocol.OpBelow, Thr: 20}.After(30)})
	if resend["X"].Value != 10 {
		t.Fatalf("resend = %v, want X=10 (the report predates the last value)", resend)
	}
	if resend := ix.set("v", []leaf{leaf{Vault: "v", Trigger: "t", Signal: "X", Op: protocol.OpBelow, Thr: 20}.After(10)}); len(resend) != 0 {
		t.Fatalf("resend = %v for a current report", resend)
	}
}
