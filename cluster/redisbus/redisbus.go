package redisbus

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/spells-dev/spells/hub"
)

// Keys. The hash tag {signals} keeps them in one Redis Cluster slot.
const (
	signalsChannel = "spells:{signals}:pub"
	signalsLatest  = "spells:{signals}:latest"
)

// Bus is the Bus of a cluster: a signal published on any node goes
// to every node once, through Redis pub/sub, and is delivered there in
// order by a local bus. Pub/sub drops what is published while a node is
// disconnected, so the newest value of every signal is also kept in Redis,
// and a node that (re)subscribes reads them and delivers those newer than
// what it last delivered: no crossing is missed. With Redis unreachable, a
// signal published here is still delivered here.
type Bus struct {
	rdb   redis.UniversalClient
	local *hub.MemoryBus
	log   zerolog.Logger
	m     *Metrics

	mu   sync.Mutex
	last map[string]int64 // signal → the newest `at` delivered here

	ps     *redis.PubSub
	cancel context.CancelFunc
	done   chan struct{}
}

var _ hub.Bus = (*Bus)(nil)

// Metrics count what the Redis bus does.
type Metrics struct {
	Resyncs       prometheus.Counter // subscriptions (re)made, each followed by a read of the latest values
	Recovered     prometheus.Counter // values delivered from the latest values (missed on the channel)
	PublishFailed prometheus.Counter // values Redis did not take (delivered here only)
}

// NewMetrics registers the Redis bus's metrics on reg (may be nil).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Resyncs:       prometheus.NewCounter(prometheus.CounterOpts{Name: "spells_redis_bus_resyncs_total", Help: "Signal subscriptions to Redis made or made again, each followed by a read of every signal's latest value."}),
		Recovered:     prometheus.NewCounter(prometheus.CounterOpts{Name: "spells_redis_bus_recovered_total", Help: "Signal values delivered from Redis's latest values because the subscription missed them."}),
		PublishFailed: prometheus.NewCounter(prometheus.CounterOpts{Name: "spells_redis_bus_publish_failed_total", Help: "Signal values Redis did not take; they were delivered on this node only."}),
	}
	if reg != nil {
		reg.MustRegister(m.Resyncs, m.Recovered, m.PublishFailed)
	}
	return m
}

// New subscribes to the cluster's signals through rdb. Close stops
// it (rdb stays the caller's).
func New(rdb redis.UniversalClient, m *Metrics, conflated prometheus.Counter, log zerolog.Logger) *Bus {
	if m == nil {
		m = NewMetrics(nil)
	}
	ctx, cancel := context.WithCancel(context.Background())
	b := &Bus{rdb: rdb, local: hub.NewMemoryBus(0, conflated), log: log, m: m, last: map[string]int64{},
		cancel: cancel, done: make(chan struct{})}
	b.ps = rdb.Subscribe(ctx, signalsChannel)
	go b.run(ctx)
	return b
}

// Publish sends s to every node (this one included, through Redis) and
// keeps it as its signal's latest value. If Redis does not take it, it is
// delivered on this node only, and the error is logged and counted.
func (b *Bus) Publish(ctx context.Context, s hub.Signal) error {
	msg, err := json.Marshal(s)
	if err != nil {
		return err
	}
	pctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	_, err = b.rdb.TxPipelined(pctx, func(p redis.Pipeliner) error {
		p.HSet(pctx, signalsLatest, s.Name, msg)
		p.Publish(pctx, signalsChannel, msg)
		return nil
	})
	if err != nil {
		b.m.PublishFailed.Inc()
		b.log.Warn().Err(err).Str("signal", s.Name).Msg("redis did not take a signal; delivered on this node only")
		b.deliver(s)
	}
	return nil
}

// Subscribe registers fn for every signal delivered on this node.
func (b *Bus) Subscribe(fn func(hub.Signal)) func() { return b.local.Subscribe(fn) }

// deliver hands s to this node's subscribers unless a newer value of its
// signal was delivered already.
func (b *Bus) deliver(s hub.Signal) bool {
	b.mu.Lock()
	if s.At < b.last[s.Name] {
		b.mu.Unlock()
		return false
	}
	b.last[s.Name] = s.At
	b.mu.Unlock()
	if s.Received.IsZero() {
		s.Received = time.Now()
	}
	_ = b.local.Publish(context.Background(), s)
	return true
}

func (b *Bus) run(ctx context.Context) {
	defer close(b.done)
	ch := b.ps.ChannelWithSubscriptions()
	for {
		select {
		case <-ctx.Done():
			return
		case m, ok := <-ch:
			if !ok {
				return
			}
			switch msg := m.(type) {
			case *redis.Subscription:
				if msg.Kind == "subscribe" {
					b.resync(ctx)
				}
			case *redis.Message:
				var s hub.Signal
				if err := json.Unmarshal([]byte(msg.Payload), &s); err != nil || s.Validate() != nil {
					b.log.Warn().Str("payload", truncate(msg.Payload)).Msg("a signal on the cluster's channel is not one: dropped")
					continue
				}
				b.deliver(s)
			}
		}
	}
}

// resync reads every signal's latest value and delivers those newer than
// this node last saw: what the channel carried while it was not
// subscribed.
func (b *Bus) resync(ctx context.Context) {
	b.m.Resyncs.Inc()
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	all, err := b.rdb.HGetAll(rctx, signalsLatest).Result()
	if err != nil {
		b.log.Warn().Err(err).Msg("read the cluster's latest signal values after subscribing")
		return
	}
	n := 0
	for _, v := range all {
		var s hub.Signal
		if json.Unmarshal([]byte(v), &s) != nil || s.Validate() != nil {
			continue
		}
		b.mu.Lock()
		newer := s.At > b.last[s.Name]
		b.mu.Unlock()
		if newer && b.deliver(s) {
			n++
		}
	}
	if n > 0 {
		b.m.Recovered.Add(float64(n))
	}
	b.log.Info().Int("signals", len(all)).Int("recovered", n).Msg("subscribed to the cluster's signals")
}

func truncate(s string) string {
	if len(s) > 120 {
		return s[:120] + "…"
	}
	return s
}

// Close stops the subscription and the local delivery.
func (b *Bus) Close() {
	b.cancel()
	_ = b.ps.Close()
	<-b.done
	b.local.Close()
}
