package hub

import (
	"context"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/spells-dev/spells/protocol"
)

// TestEvaluationDoesNotWaitForTheFanout: with the dashboards' fan-out
// held up, publishing never waits, the vaults still get every value at
// once, and the fan-out then hands out the newest value instead of the
// backlog it missed (counted as conflated).
func TestEvaluationDoesNotWaitForTheFanout(t *testing.T) {
	ctx := context.Background()
	nonces := protocol.NewNonceIssuer([]byte("test-node-key-0123456789abcdef!!"))
	vaults := newFakeVaults()
	vaults.signals = make(chan Signal, 2000)
	bus := NewMemoryBus(0, nil)
	defer bus.Close()
	metrics := NewMetrics(nil)
	held, release := make(chan struct{}, 1), make(chan struct{})
	fanoutHook = func() {
		select {
		case held <- struct{}{}:
			<-release
		default:
		}
	}
	defer func() { fanoutHook = nil }() // after the hub's fan-out has stopped
	h := New(Config{Vaults: vaults, Nonces: nonces, Bus: bus, Metrics: metrics})
	defer h.Shutdown(ctx)

	publish := func(v float64) {
		t.Helper()
		if err := bus.Publish(ctx, Signal{Name: "X", Value: v, At: time.Now().UnixMilli()}); err != nil {
			t.Fatal(err)
		}
	}
	got := func(want float64) {
		t.Helper()
		select {
		case s := <-vaults.signals:
			if s.Value != want {
				t.Fatalf("the vaults got %g, want %g", s.Value, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("the vaults did not get %g while the fan-out was held up", want)
		}
	}
	publish(15)
	<-held // the fan-out is stuck on the first value
	got(15)
	publish(5)
	got(5)
	began := time.Now()
	for i := 0; i < 1000; i++ {
		publish(20 + float64(i))
	}
	if d := time.Since(began); d > time.Second {
		t.Fatalf("1000 publishes took %s behind a stuck fan-out", d)
	}
	for i := 0; i < 1000; i++ {
		got(20 + float64(i))
	}
	close(release)
	waitUntil(t, "the fan-out to conflate what it missed", func() bool { return testutil.ToFloat64(metrics.FanoutConflated) > 0 })
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
