package main

import (
	"context"
	"fmt"

	"github.com/rs/zerolog"

	"github.com/spells-dev/spells/hub"
)

// nodeBus is the signal bus the node runs: in memory (one node), or
// through Redis (-redis, a cluster).
type nodeBus interface {
	hub.Bus
	Close()
}

// redisLog puts go-redis's own messages (reconnects) in the node's log.
type redisLog struct{ l zerolog.Logger }

func (r redisLog) Printf(_ context.Context, format string, v ...any) {
	r.l.Warn().Msg(fmt.Sprintf(format, v...))
}
