// Package cluster holds what the nodes of a cluster share: the directory
// of vault homes and live nodes in Redis (Directory), the node links that
// forward sessions between nodes (Links, the hub's Router), the handoff of
// vaults between nodes (Handoff), and the signal bus through Redis pub/sub
// (RedisBus). Redis is never in a vault's write path.
package cluster

import (
	"context"
	"encoding/json"
	"fmt"
	neturl "net/url"
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

// RedisBus is the Bus of a cluster: a signal published on any node goes
// to every node once, through Redis pub/sub, and is delivered there in
// order by a local bus. Pub/sub drops what is published while a node is
// disconnected, so the newest value of every signal is also kept in Redis,
// and a node that (re)subscribes reads them and delivers those newer than
// what it last delivered: no crossing is missed. With Redis unreachable, a
// signal published here is still delivered here.
type RedisBus struct {
	rdb   redis.UniversalClient
	local *hub.MemoryBus
	log   zerolog.Logger
	m     *BusMetrics

	mu   sync.Mutex
	last map[string]int64 // signal → the newest `at` delivered here

	ps     *redis.PubSub
	cancel context.CancelFunc
	done   chan struct{}
}

var _ hub.Bus = (*RedisBus)(nil)

// BusMetrics count what the Redis bus does.
type BusMetrics struct {
	Resyncs       prometheus.Counter // subscriptions (re)made, each followed by a read of the latest values
	Recovered     prometheus.Counter // values delivered from the latest values (missed on the channel)
	PublishFailed prometheus.Counter // values Redis did not take (delivered here only)
}

// NewBusMetrics registers the Redis bus's metrics on reg (may be nil).
func NewBusMetrics(reg prometheus.Registerer) *BusMetrics {
	m := &BusMetrics{
		Resyncs:       prometheus.NewCounter(prometheus.CounterOpts{Name: "spells_redis_bus_resyncs_total", Help: "Signal subscriptions to Redis made or made again, each followed by a read of every signal's latest value."}),
		Recovered:     prometheus.NewCounter(prometheus.CounterOpts{Name: "spells_redis_bus_recovered_total", Help: "Signal values delivered from Redis's latest values because the subscription missed them."}),
		PublishFailed: prometheus.NewCounter(prometheus.CounterOpts{Name: "spells_redis_bus_publish_failed_total", Help: "Signal values Redis did not take; they were delivered on this node only."}),
	}
	if reg != nil {
		reg.MustRegister(m.Resyncs, m.Recovered, m.PublishFailed)
	}
	return m
}

// NewRedisBus subscribes to the cluster's signals through rdb. Close stops
// it (rdb stays the caller's).
func NewRedisBus(rdb redis.UniversalClient, m *BusMetrics, conflated prometheus.Counter, log zerolog.Logger) *RedisBus {
	if m == nil {
		m = NewBusMetrics(nil)
	}
	ctx, cancel := context.WithCancel(context.Background())
	b := &RedisBus{rdb: rdb, local: hub.NewMemoryBus(0, conflated), log: log, m: m, last: map[string]int64{},
		cancel: cancel, done: make(chan struct{})}
	b.ps = rdb.Subscribe(ctx, signalsChannel)
	go b.run(ctx)
	return b
}

// Publish sends s to every node (this one included, through Redis) and
// keeps it as its signal's latest value. If Redis does not take it, it is
// delivered on this node only, and the error is logged and counted.
func (b *RedisBus) Publish(ctx context.Context, s hub.Signal) error {
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
func (b *RedisBus) Subscribe(fn func(hub.Signal)) func() { return b.local.Subscribe(fn) }

// deliver hands s to this node's subscribers unless a newer value of its
// signal was delivered already.
func (b *RedisBus) deliver(s hub.Signal) bool {
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

func (b *RedisBus) run(ctx context.Context) {
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
func (b *RedisBus) resync(ctx context.Context) {
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
func (b *RedisBus) Close() {
	b.cancel()
	_ = b.ps.Close()
	<-b.done
	b.local.Close()
}

// Dial connects to the Redis at url and checks that it answers. The URL
// names one server (redis://[user:password@]host:port[/db], rediss:// for
// TLS); more addr parameters name a Redis Cluster
// (redis://host:port?addr=host2:port2&addr=host3:port3), and a
// master_name parameter makes the addresses Sentinels of that master.
// go-redis's UniversalClient serves all three.
func Dial(ctx context.Context, url string) (redis.UniversalClient, error) {
	rdb, err := NewClient(url)
	if err != nil {
		return nil, err
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := rdb.Ping(pctx).Err(); err != nil {
		rdb.Close()
		return nil, fmt.Errorf("redis %s: %w", url, err)
	}
	return rdb, nil
}

// NewClient is Dial without the check: the client connects when first
// used, and reconnects by itself.
func NewClient(url string) (redis.UniversalClient, error) {
	opt, err := redis.ParseURL(stripUniversal(url))
	if err != nil {
		return nil, fmt.Errorf("-redis: %w", err)
	}
	// Short timeouts: a sign-in that asks the directory waits on them
	// while Redis is down, and a node serves its own vaults without it.
	uo := &redis.UniversalOptions{Addrs: []string{opt.Addr}, Username: opt.Username,
		Password: opt.Password, DB: opt.DB, TLSConfig: opt.TLSConfig,
		DialTimeout: 2 * time.Second, ReadTimeout: 2 * time.Second, WriteTimeout: 2 * time.Second, MaxRetries: 1}
	if u, err := neturl.Parse(url); err == nil {
		q := u.Query()
		uo.Addrs = append(uo.Addrs, q["addr"]...)
		uo.MasterName = q.Get("master_name")
	}
	return redis.NewUniversalClient(uo), nil
}

// stripUniversal removes the query parameters Dial reads itself, which
// go-redis's ParseURL would refuse.
func stripUniversal(url string) string {
	u, err := neturl.Parse(url)
	if err != nil {
		return url
	}
	q := u.Query()
	q.Del("addr")
	q.Del("master_name")
	u.RawQuery = q.Encode()
	return u.String()
}
