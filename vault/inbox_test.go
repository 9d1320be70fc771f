package vault

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

// TestSignalNeverWaitsForASlot: with every file slot held by a vault that
// cannot close (its goroutine is busy), a crossing that reaches hibernated
// vaults returns at once; they fire once the slot frees.
func TestSignalNeverWaitsForASlot(t *testing.T) {
	e := newBoundedEnv(t, 1, map[string]float64{"ETH/USD": 2600})
	e.dippers(t, 5, true)
	e.restart() // every vault hibernated
	busy := e.newUser()
	release := holdVault(t, busy.v) // holds the only slot and cannot be evicted
	began := time.Now()
	if n := e.m.Signal("ETH/USD", 2400); n != 5 {
		t.Fatalf("the crossing reached %d vaults, want 5", n)
	}
	if d := time.Since(began); d > 100*time.Millisecond {
		t.Fatalf("Signal took %s with every slot held", d)
	}
	// Their firings are durable in the node's firing journal without a
	// file slot; the vaults apply them to their files once one is free.
	waitFor(t, "the crossed vaults' firings journaled", func() bool { return testutil.ToFloat64(e.m.metrics.Actor.Intents) == 5 })
	if n := testutil.ToFloat64(e.m.metrics.Actor.JournalApplied); n != 0 {
		t.Fatalf("%g firings applied while no slot was free", n)
	}
	release()
	busy.v.Detach(busy.sub)
	waitFor(t, "every crossed vault to apply its firing", func() bool {
		return testutil.ToFloat64(e.m.metrics.Actor.JournalApplied) == 5 && e.firedAndApplied()
	})
	e.checkLife(t)
}
