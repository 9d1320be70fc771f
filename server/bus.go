package main

import (
	"context"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/spells-dev/spells/cluster"
	"github.com/spells-dev/spells/hub"
)

// nodeBus is the signal bus the node runs: in memory (one node), or
// through Redis (-redis, a cluster).
type nodeBus interface {
	hub.Bus
	Close()
}

// redisBus closes its client with it.
type redisBus struct {
	*cluster.RedisBus
	rdb redis.UniversalClient
}

func (b redisBus) Close() {
	b.RedisBus.Close()
	_ = b.rdb.Close()
}

// startBus starts the in-memory bus, or with -redis the Redis one.
func (n *node) startBus(ctx context.Context, reg prometheus.Registerer) (nodeBus, error) {
	if n.opts.Redis == "" {
		return hub.NewMemoryBus(0, n.hubMetrics.BusConflated), nil
	}
	log := n.log.With().Str("part", "redis").Logger()
	redis.SetLogger(redisLog{log})
	rdb, err := cluster.Dial(ctx, n.opts.Redis)
	if err != nil {
		return nil, err
	}
	log.Info().Msg("signals go through redis: a signal published on any node reaches every node")
	return redisBus{cluster.NewRedisBus(rdb, cluster.NewBusMetrics(reg), n.hubMetrics.BusConflated, log), rdb}, nil
}

// redisLog puts go-redis's own messages (reconnects) in the node's log.
type redisLog struct{ l zerolog.Logger }

func (r redisLog) Printf(_ context.Context, format string, v ...any) {
	r.l.Warn().Msg(fmt.Sprintf(format, v...))
}
