package hub

import (
	"bytes"
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/protocol/client"
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

// TestOnMessageTakesSignalsBeforeDecoding: a client's OnMessage sees each
// signal message as read and consumes it (a message may hold several
// signal frames, gathered while the socket was busy); the frames it leaves
// (here a vault's) still reach Next, in order.
func TestOnMessageTakesSignalsBeforeDecoding(t *testing.T) {
	th := startHub(t, nil)
	var mu sync.Mutex
	var taken []string
	c, err := client.Dial(testCtx(t), th.url, &client.DialOptions{OnMessage: func(data []byte) bool {
		if !bytes.Contains(data, []byte(`"type":"signal"`)) {
			return false
		}
		mu.Lock()
		for range bytes.Count(data, []byte(`"type":"signal"`)) {
			taken = append(taken, string(data))
		}
		mu.Unlock()
		return true
	}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseNow)
	signIn(t, c, nil)
	next(t, c, protocol.TypeSignals)
	for i := 0; i < 3; i++ {
		if err := th.bus.Publish(testCtx(t), Signal{Name: fmt.Sprintf("S%d/USD", i), Value: float64(i), At: 1}); err != nil {
			t.Fatal(err)
		}
	}
	var sub Subscriber
	th.vaults.only().each(func(s Subscriber) { sub = s })
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		mu.Lock()
		n := len(taken)
		mu.Unlock()
		if n == 3 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("OnMessage took %d of 3 signals", n)
		}
	}
	sub.Send([]byte(`{"type":"diff","version":7}`))
	f, err := c.Next(testCtx(t))
	if err != nil || f.Type != protocol.TypeDiff || f.Version != 7 {
		t.Fatalf("after the signals Next got %+v, %v; want the vault's diff", f, err)
	}
}
