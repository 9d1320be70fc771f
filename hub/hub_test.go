package hub

import (
	"context"
	"errors"
	"math"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

// TestMemoryBusDeliversInOrder: every value is delivered, in order,
// while fewer than the backlog wait; Publish never waits.
func TestMemoryBusDeliversInOrder(t *testing.T) {
	b := NewMemoryBus(64, nil)
	defer b.Close()
	got := make(chan Signal, 100)
	unsub := b.Subscribe(func(s Signal) { got <- s })
	for i := 1; i <= 50; i++ {
		if err := b.Publish(context.Background(), Signal{Name: "X", Value: float64(i), At: 1}); err != nil {
			t.Fatal(err)
		}
	}
	for i := 1; i <= 50; i++ {
		select {
		case s := <-got:
			if s.Value != float64(i) || s.Received.IsZero() {
				t.Fatalf("signal %d arrived as %+v", i, s)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("signal %d not delivered", i)
		}
	}
	unsub()
	_ = b.Publish(context.Background(), Signal{Name: "X", Value: 51, At: 1})
	b.Close()
	select {
	case s := <-got:
		t.Fatalf("delivered after unsubscribe: %+v", s)
	default:
	}
	if err := b.Publish(context.Background(), Signal{Name: "X", Value: 1, At: 1}); !errors.Is(err, ErrBusClosed) {
		t.Fatalf("publish after close: %v", err)
	}
}

// TestMemoryBusConflatesPastItsBacklog: with the delivery goroutine held
// up, publishing never waits; past the backlog each signal keeps only its
// newest waiting value (counted), so what is delivered is in order, ends
// with the newest value of every signal, and is bounded.
func TestMemoryBusConflatesPastItsBacklog(t *testing.T) {
	conflated := prometheus.NewCounter(prometheus.CounterOpts{Name: "c"})
	b := NewMemoryBus(8, conflated)
	defer b.Close()
	hold, held := make(chan struct{}), make(chan struct{}, 1)
	var got []Signal
	var mu sync.Mutex
	b.Subscribe(func(s Signal) {
		select {
		case held <- struct{}{}:
			<-hold
		default:
		}
		mu.Lock()
		got = append(got, s)
		mu.Unlock()
	})
	b.Publish(context.Background(), Signal{Name: "X", Value: 0, At: 1})
	<-held // the goroutine is inside the handler
	for i := 1; i <= 1000; i++ {
		for _, name := range []string{"X", "Y"} {
			if err := b.Publish(context.Background(), Signal{Name: name, Value: float64(i), At: 1}); err != nil {
				t.Fatal(err)
			}
		}
	}
	close(hold)
	deadline := time.Now().Add(5 * time.Second)
	for {
		mu.Lock()
		n := len(got)
		last := Signal{}
		if n > 0 {
			last = got[n-1]
		}
		mu.Unlock()
		if last.Value == 1000 && n > 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the newest values were not delivered: %d delivered, last %+v", n, last)
		}
		time.Sleep(time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) > 8+2+1 {
		t.Fatalf("%d values delivered, want at most the backlog", len(got))
	}
	seen := map[string]float64{}
	for _, s := range got {
		if s.Value < seen[s.Name] {
			t.Fatalf("%s went back from %g to %g", s.Name, seen[s.Name], s.Value)
		}
		seen[s.Name] = s.Value
	}
	if seen["X"] != 1000 || seen["Y"] != 1000 {
		t.Fatalf("newest delivered %v, want 1000 for both", seen)
	}
	if c := testutil.ToFloat64(conflated); int(c)+len(got) != 2001 {
		t.Fatalf("%g conflated + %d delivered, want 2001 published", c, len(got))
	}
}

func TestSignalValidate(t *testing.T) {
	good := Signal{Name: "ETH/USD", Value: 2500, At: 1}
	if err := good.Validate(); err != nil {
		t.Fatal(err)
	}
	for _, bad := range []Signal{
		{Name: "", Value: 1, At: 1}, {Name: "has space", Value: 1, At: 1}, {Name: "/lead", Value: 1, At: 1},
		{Name: "X", Value: math.NaN(), At: 1}, {Name: "X", Value: math.Inf(1), At: 1}, {Name: "X", Value: 1, At: 0},
	} {
		if bad.Validate() == nil {
			t.Errorf("accepted %+v", bad)
		}
	}
}

func TestHistoryKeepsTheLastN(t *testing.T) {
	h := NewHistory(3)
	if _, ok := h.Latest("X"); ok {
		t.Fatal("latest of an unknown signal")
	}
	for i := 1; i <= 5; i++ {
		h.Add(Signal{Name: "X", Value: float64(i), At: int64(i)})
	}
	pts := h.Snapshot()["X"]
	if len(pts) != 3 || pts[0].Value != 3 || pts[2].Value != 5 {
		t.Fatalf("history %+v", pts)
	}
	if v, _ := h.Latest("X"); v != 5 {
		t.Fatalf("latest %g", v)
	}
}

func TestOriginAllowed(t *testing.T) {
	h := &Hub{cfg: Config{OriginPatterns: []string{"app.example.com", "*.trusted.io", "https://secure.example.org"}}}
	for origin, want := range map[string]bool{
		"http://node.local:8080":        true, // the request's own host
		"https://app.example.com":       true,
		"https://APP.example.com":       true,
		"https://x.trusted.io":          true,
		"https://secure.example.org":    true,
		"http://secure.example.org":     false, // the pattern names https
		"https://evil.example":          false,
		"null":                          false,
		"file:///etc/passwd":            false,
		"https://app.example.com.evil":  false,
		"chrome-extension://abcdef":     false,
		"http://node.local:8080.evil.x": false,
	} {
		if got := h.originAllowed("node.local:8080", origin); got != want {
			t.Errorf("origin %q: allowed %v, want %v", origin, got, want)
		}
	}
}

// TestHistorySurvivesARestart: what WriteFile saved, ReadFile loads,
// leaving out what no trigger could use; a damaged file is an error and
// loads nothing.
func TestHistorySurvivesARestart(t *testing.T) {
	p := t.TempDir() + "/signals.json"
	h := NewHistory(3)
	for i := 1; i <= 5; i++ {
		h.Add(Signal{Name: "X", Value: float64(i), At: int64(i)})
	}
	if err := h.WriteFile(p); err != nil {
		t.Fatal(err)
	}
	h2 := NewHistory(2)
	if err := h2.ReadFile(p); err != nil {
		t.Fatal(err)
	}
	if pts := h2.Snapshot()["X"]; len(pts) != 2 || pts[1].Value != 5 {
		t.Fatalf("loaded %+v, want the last 2 of 3,4,5", pts)
	}
	if err := os.WriteFile(p, []byte(`{"series":{"bad name!":[{"value":1,"at":1}],"Y":[{"value":1,"at":0}]}}`), 0o600); err != nil {
		t.Fatal(err)
	}
	h3 := NewHistory(0)
	if err := h3.ReadFile(p); err != nil || len(h3.Snapshot()) != 0 {
		t.Fatalf("loaded %v (%v), want nothing usable", h3.Snapshot(), err)
	}
	os.WriteFile(p, []byte(`{"series":`), 0o600)
	if err := NewHistory(0).ReadFile(p); err == nil {
		t.Fatal("a damaged file loaded without an error")
	}
	if err := NewHistory(0).ReadFile(p + ".missing"); err != nil {
		t.Fatalf("a missing file: %v", err)
	}
}
