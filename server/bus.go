package main

import (
	"context"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
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

// startBus starts the in-memory bus, or in a cluster the Redis one (on the
// cluster's Redis client, which the cluster's parts close).
func (n *node) startBus(reg prometheus.Registerer) nodeBus {
	if n.cluster == nil {
		return hub.NewMemoryBus(0, n.hubMetrics.BusConflated)
	}
	log := n.log.With().Str("part", "redis").Logger()
	log.Info().Msg("signals go through redis: a signal published on any node reaches every node")
	return cluster.NewRedisBus(n.cluster.rdb, cluster.NewBusMetrics(reg), n.hubMetrics.BusConflated, log)
}

// redisLog puts go-redis's own messages (reconnects) in the node's log.
type redisLog struct{ l zerolog.Logger }

func (r redisLog) Printf(_ context.Context, format string, v ...any) {
	r.l.Warn().Msg(fmt.Sprintf(format, v...))
}
