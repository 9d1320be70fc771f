package redisbus

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/spells-dev/spells/cluster/redistest"
	"github.com/spells-dev/spells/hub"
)

type got struct {
	mu   sync.Mutex
	sigs []hub.Signal
}

func (g *got) add(s hub.Signal) {
	g.mu.Lock()
	g.sigs = append(g.sigs, s)
	g.mu.Unlock()
}

func (g *got) count(name string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := 0
	for _, s := range g.sigs {
		if s.Name == name {
			n++
		}
	}
	return n
}

func (g *got) latest(name string) float64 {
	g.mu.Lock()
	defer g.mu.Unlock()
	v := 0.0
	for _, s := range g.sigs {
		if s.Name == name {
			v = s.Value
		}
	}
	return v
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func newBus(t *testing.T, url string) (*Bus, *got, *Metrics) {
	t.Helper()
	rdb, err := dial(url)
	if err != nil {
		t.Fatal(err)
	}
	m := NewMetrics(nil)
	b := New(rdb, m, nil, zerolog.Nop())
	g := &got{}
	b.Subscribe(g.add)
	t.Cleanup(func() { b.Close(); rdb.Close() })
	waitFor(t, "the bus to subscribe", func() bool { return testutil.ToFloat64(m.Resyncs) >= 1 })
	return b, g, m
}

// TestRedisBus: a signal published on one node reaches every node once;
// a value a node's subscription missed is delivered from the latest
// values when it subscribes again; with Redis down a node still delivers
// its own signals, and once Redis is back (empty) the bus works again.
func TestRedisBus(t *testing.T) {
	r := redistest.Start(t)
	ctx := context.Background()
	a, ga, ma := newBus(t, r.URL())
	b, gb, _ := newBus(t, r.URL())
	now := time.Now().UnixMilli()
	if err := b.Publish(ctx, hub.Signal{Name: "X", Value: 5, At: now}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "X on both nodes", func() bool { return ga.count("X") == 1 && gb.count("X") == 1 })

	// A value the channel never carried (as if published while the nodes
	// were not subscribed), then every subscription dropped.
	val := `{"name":"X","value":7,"at":` + itoa(now+1) + `}`
	if err := a.rdb.HSet(ctx, signalsLatest, "X", val).Err(); err != nil {
		t.Fatal(err)
	}
	if err := a.rdb.Do(ctx, "CLIENT", "KILL", "TYPE", "pubsub").Err(); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the missed value recovered on both", func() bool { return ga.latest("X") == 7 && gb.latest("X") == 7 })
	if testutil.ToFloat64(ma.Recovered) < 1 {
		t.Fatal("the recovery was not counted")
	}
	// An older value is not delivered over a newer one.
	_ = a.Publish(ctx, hub.Signal{Name: "X", Value: 1, At: now})
	if err := b.Publish(ctx, hub.Signal{Name: "MARK", Value: 1, At: now + 2}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the mark", func() bool { return ga.count("MARK") == 1 })
	if ga.latest("X") != 7 {
		t.Fatalf("an older value replaced a newer one: X = %g", ga.latest("X"))
	}

	// Redis down: a node's own signal still reaches its own vaults.
	r.Stop()
	if err := b.Publish(ctx, hub.Signal{Name: "Y", Value: 1, At: now + 3}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "Y on its own node", func() bool { return gb.count("Y") == 1 })
	// Back, and empty: the subscriptions are made again by themselves.
	r.Restart()
	waitFor(t, "the buses to subscribe again", func() bool { return testutil.ToFloat64(ma.Resyncs) >= 3 })
	waitFor(t, "a signal after Redis came back", func() bool {
		_ = a.Publish(ctx, hub.Signal{Name: "Z", Value: 1, At: time.Now().UnixMilli()})
		time.Sleep(50 * time.Millisecond)
		return ga.count("Z") >= 1 && gb.count("Z") >= 1
	})
}

func itoa(n int64) string { return strconv.FormatInt(n, 10) }

// dial connects to the test's Redis.
func dial(url string) (redis.UniversalClient, error) {
	opts, err := redis.ParseURL(url)
	if err != nil {
		return nil, err
	}
	rdb := redis.NewClient(opts)
	return rdb, rdb.Ping(context.Background()).Err()
}
