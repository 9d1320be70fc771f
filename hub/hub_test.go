package hub

import (
	"context"
	"errors"
	"math"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

func TestMemoryBusDeliversInOrder(t *testing.T) {
	b := NewMemoryBus(4)
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
			if s.Value != float64(i) {
				t.Fatalf("signal %d arrived as %g", i, s.Value)
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
