package main

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spells-dev/spells/protocol"
)

type fanoutParams struct {
	Vaults, Connected, Ticks int
	Gap                      time.Duration
	// Settle, when positive, is how long to wait after the firing for
	// every vault to close its file (the connected ones doze, the others
	// hibernate; the node's -idle-after decides when) before reading the
	// node's memory with every dashboard still connected.
	Settle time.Duration
}

// fanout: Vaults vaults each with a trigger "SIG below 1000"; Connected of
// them keep a dashboard connection. Ticks price-only values (between 1500
// and 2500, crossing nothing) measure publish→received for the live price;
// then one tick at 900 fires every trigger (Vaults durable transactions)
// and measures publish→diff on the dashboards and publish→all intents
// written. With Settle it then waits for the vaults to close their files
// and reads the node's memory with every dashboard still connected: what
// Connected active vaults cost at rest.
func fanout(ctx context.Context, n *node, p fanoutParams) (*Report, error) {
	r := newReport("fanout", map[string]any{"vaults": p.Vaults, "connected": p.Connected, "ticks": p.Ticks, "gap": p.Gap.String()})
	sig := fmt.Sprintf("BENCH%d/USD", rand.IntN(1e9))
	if err := n.publish(ctx, tick{Name: sig, Value: 2000, At: time.Now().UnixMilli()}); err != nil {
		return nil, err
	}
	empty, err := n.collected(ctx)
	if err != nil {
		return nil, err
	}
	setupStart := time.Now()
	users, err := newUsers(ctx, n, p.Vaults, p.Connected, func(ctx context.Context, u *user) error {
		_, err := u.c.Command(ctx, u.s, protocol.OpTriggerCreate, below(sig, 1000))
		return err
	})
	defer closeAll(users)
	if err != nil {
		return nil, err
	}
	r.set("setup_vaults_per_s", float64(p.Vaults)/time.Since(setupStart).Seconds())
	conns := users[:p.Connected]

	fr := &fanoutReader{sig: sig, fired: make(chan struct{}, p.Connected)}
	rctx, stop := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for _, u := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			fr.read(rctx, u)
		}()
	}
	before, err := n.usage(ctx)
	if err != nil {
		stop()
		return nil, err
	}
	began := time.Now()
	for i := 0; i < p.Ticks; i++ {
		v := 1500 + rand.Float64()*1000
		if err := n.publish(ctx, tick{Name: sig, Value: v, At: time.Now().UnixMilli()}); err != nil {
			stop()
			return nil, err
		}
		time.Sleep(p.Gap)
	}
	priceDur := time.Since(began)
	intents0 := before.all["spells_intents_total"]
	fireAt := time.Now()
	fr.fireAt.Store(fireAt.UnixMicro())
	if err := n.publish(ctx, tick{Name: sig, Value: 900, At: fireAt.UnixMilli()}); err != nil {
		stop()
		return nil, err
	}
	limit := time.After(60 * time.Second)
wait:
	for i := 0; i < p.Connected; i++ {
		select {
		case <-fr.fired:
		case <-limit:
			r.note("only %d of %d dashboards saw the firing within 60s", i, p.Connected)
			break wait
		}
	}
	if all := waitMetricMarks(ctx, n, "spells_intents_total", intents0, float64(p.Vaults), []float64{1}, 60*time.Second)[0]; !all.IsZero() {
		r.set("firing_all_intents_written_ms", float64(all.Sub(fireAt).Microseconds())/1000)
	} else {
		r.note("not every vault wrote its intent within 60s")
	}
	after, _ := n.usage(ctx)
	if p.Settle > 0 {
		if err := settle(ctx, r, n, empty, p); err != nil {
			stop()
			return nil, err
		}
	}
	stop()
	wg.Wait()
	fr.mu.Lock()
	r.latencies("price", fr.priceLat)
	r.latencies("firing_diff", fr.fireLat)
	fr.mu.Unlock()
	r.set("price_deliveries_per_s", float64(fr.delivered.Load())/priceDur.Seconds())
	if sent := float64(p.Ticks * p.Connected); sent > 0 {
		// A dashboard gets the newest price, not every tick: what the
		// node conflated away, here and in its own counters.
		r.set("price_ticks_delivered_fraction", float64(fr.delivered.Load())/sent)
	}
	for _, name := range []string{"spells_signals_conflated_total", "spells_signal_fanout_conflated_total"} {
		r.set("node_"+strings.TrimPrefix(strings.TrimSuffix(name, "_total"), "spells_"), after.all[name]-before.all[name])
	}
	r.addUsage(before, after)
	return r, nil
}

// settle waits for every vault file to be closed, then reports the node's
// memory after a collection, against the empty node's.
func settle(ctx context.Context, r *Report, n *node, empty usage, p fanoutParams) error {
	deadline := time.Now().Add(p.Settle)
	files := -1.0
	for time.Now().Before(deadline) {
		m, err := n.metrics(ctx)
		if err != nil {
			return err
		}
		if files = m["spells_vault_files_open"]; files == 0 {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if files != 0 {
		r.note("%g vault files still open after %s: raise -settle or lower the node's -idle-after", files, p.Settle)
	}
	u, err := n.collected(ctx)
	if err != nil {
		return err
	}
	r.set("settled_files_open", files)
	r.set("settled_dashboards", u.all["spells_ws_connections"])
	r.set("settled_rss_mib", u.rss/(1<<20))
	r.set("settled_heap_mib", u.heap/(1<<20))
	r.set("settled_rss_bytes_per_active_vault", (u.rss-empty.rss)/float64(p.Connected))
	r.set("settled_heap_bytes_per_active_vault", (u.heap-empty.heap)/float64(p.Connected))
	r.note("settled: %d dashboards connected to their dozing vaults, %d vaults hibernated; per active vault is the growth over the empty node, divided by %d", p.Connected, p.Vaults-p.Connected, p.Connected)
	return nil
}

// fanoutReader holds what the dashboards of a fanout run measure.
type fanoutReader struct {
	sig       string
	fireAt    atomic.Int64 // unix µs the firing tick was published
	delivered atomic.Int64
	fired     chan struct{}

	mu       sync.Mutex
	priceLat []time.Duration
	fireLat  []time.Duration
}

func (fr *fanoutReader) read(ctx context.Context, u *user) {
	sawFire := false
	for {
		f, err := u.c.Next(ctx)
		if err != nil {
			return
		}
		now := time.Now()
		switch {
		case f.Type == protocol.TypeSignal && f.Name == fr.sig && f.Value >= 1000:
			fr.delivered.Add(1)
			fr.mu.Lock()
			fr.priceLat = append(fr.priceLat, now.Sub(time.UnixMilli(f.At)))
			fr.mu.Unlock()
		case f.Type == protocol.TypeDiff && !sawFire && hasIntent(f):
			sawFire = true
			fr.mu.Lock()
			fr.fireLat = append(fr.fireLat, now.Sub(time.UnixMicro(fr.fireAt.Load())))
			fr.mu.Unlock()
			fr.fired <- struct{}{}
		}
	}
}

func hasIntent(f protocol.ServerFrame) bool {
	for _, c := range f.Changes {
		if c.Kind == protocol.KindIntent {
			return true
		}
	}
	return false
}

// waitMetricMarks polls the counter name (every n.poll), which starts at base, and
// returns when it first reached base plus each fraction of n (a zero time
// for the marks not reached within limit).
func waitMetricMarks(ctx context.Context, n *node, name string, base, count float64, fracs []float64, limit time.Duration) []time.Time {
	marks := make([]time.Time, len(fracs))
	deadline := time.Now().Add(limit)
	next := 0
	for next < len(fracs) && time.Now().Before(deadline) {
		m, err := n.counters(ctx)
		if err != nil {
			time.Sleep(n.poll)
			continue
		}
		now := time.Now()
		for next < len(fracs) && m[name]-base >= math.Ceil(fracs[next]*count) {
			marks[next] = now
			next++
		}
		if next < len(fracs) {
			time.Sleep(n.poll)
		}
	}
	return marks
}
