package vault

import (
	"context"
	"errors"

	"github.com/ethereum/go-ethereum/common"

	"github.com/spells-dev/spells/vault/actor"
)

// The waker starts an instance for each vault whose events wait for one
// (route.go).

// waker starts an instance for each vault that has events waiting and
// none running, one after the other: starting one may wait for a file
// slot (MaxOpen), and this goroutine is the one that waits, never the
// signal path. The instance opens its file on its own goroutine, so many
// open in parallel.
func (m *Manager) waker(ctx context.Context) {
	for {
		m.mu.Lock()
		var id string
		if len(m.wakeQ) > 0 {
			id = m.wakeQ[0]
			m.wakeQ[0] = ""
			m.wakeQ = m.wakeQ[1:]
			if len(m.wakeQ) == 0 {
				m.wakeQ = nil
			}
		}
		m.mu.Unlock()
		if id == "" && m.applyNext(ctx) {
			continue
		}
		if id == "" {
			select {
			case <-m.wakeUp:
				continue
			case <-ctx.Done():
				return
			}
		}
		if _, err := m.acquire(ctx, common.HexToAddress(id), false, false); err != nil {
			m.wakeFailed(ctx, id, err)
		}
	}
}

// wakeFailed drops the events held for a vault the waker could not start.
func (m *Manager) wakeFailed(ctx context.Context, id string, err error) {
	if errors.Is(err, ErrNoVault) {
		// Its file is gone: nothing will wake it again.
		m.forget(id)
		m.setPlace(id, spot{place: nowhere})
	}
	m.mu.Lock()
	dropped := 0
	if w := m.waiting[id]; w != nil && m.vaults[id] == nil {
		dropped = len(w.Take())
		delete(m.waiting, id)
	}
	m.mu.Unlock()
	switch {
	case ctx.Err() != nil:
	case errors.Is(err, actor.ErrMoving):
		// The node it moves to offers it the latest values when it opens
		// there.
		m.cfg.Logger.Info().Str("vault", id).Int("events", dropped).Msg("vault moving: its signals and alarms here were dropped")
	default:
		m.cfg.Logger.Error().Err(err).Str("vault", id).Int("events", dropped).Msg("wake vault: its signals and alarms were dropped")
	}
}
