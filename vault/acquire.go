package vault

import (
	"context"
	"fmt"

	"github.com/ethereum/go-ethereum/common"

	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/vault/actor"
)

// Starting a vault's instance: at most one per vault, within the node's
// file slots, never for a vault quarantined or moving.

// ErrNoVault is returned for a vault that does not exist on this node.
var ErrNoVault = protocol.Errorf(protocol.CodeSessionUnknown, "no such vault on this node")

// Vault returns the running instance of the vault at addr, opening its
// file if it is hibernated, for tools and tests; clients reach vaults
// through SignIn and Resume. A file that cannot be opened is reported here.
func (m *Manager) Vault(ctx context.Context, addr common.Address) (*actor.Vault, error) {
	v, err := m.acquire(ctx, addr, false, true)
	if err != nil {
		return nil, err
	}
	if err := v.Ready(ctx); err != nil {
		return nil, fmt.Errorf("open vault %s: %w", addr.Hex(), err)
	}
	return v, nil
}

// acquire returns the routed instance of the vault at addr, starting one
// when there is none: opening its file (a hibernated vault), or, with
// create and no file, unborn (its first letter creates the file). Starting
// one takes a file slot, which may wait (first come, first served) while
// MaxOpen are held, and waits for a retired instance of the same vault to
// end: two connections on one file (opened without SQLite's locks, see
// store.LockDir) would corrupt it. With pin, the instance is pinned: the
// caller's next letter must be pinned too, and the vault unpins when it
// takes it, so the instance cannot retire between acquire and that
// letter, and an unborn one always gets the letter it was started for.
// Events waiting for the vault (route.go) move into the instance. No
// instance starts for a vault quarantined, or moving to, from or away
// from this node (its place).
func (m *Manager) acquire(ctx context.Context, addr common.Address, create, pin bool) (*actor.Vault, error) {
	id := actor.ID(addr)
	m.mu.Lock()
	defer m.mu.Unlock()
	reserved := false
	fail := func(err error) (*actor.Vault, error) {
		if reserved {
			m.releaseSlotLocked()
		}
		return nil, err
	}
	for {
		if m.closed {
			return fail(actor.ErrClosed)
		}
		switch p := m.placeOf(id); {
		case p.place == quarantined:
			return fail(actor.ErrQuarantined)
		case p.movingAway():
			return fail(actor.ErrMoving)
		}
		if i := m.vaults[id]; i != nil {
			if reserved {
				m.releaseSlotLocked()
			}
			if pin {
				i.v.Pin()
			}
			m.moveWaitingLocked(i)
			return i.v, nil
		}
		if m.leaving[id] != nil {
			if err := m.waitLeavingLocked(ctx); err != nil {
				return fail(err)
			}
			continue
		}
		if m.checking == id {
			// The integrity check reads its file: a moment.
			done := m.checkDone
			m.mu.Unlock()
			select {
			case <-done:
			case <-ctx.Done():
			}
			m.mu.Lock()
			if ctx.Err() != nil {
				return fail(ctx.Err())
			}
			continue
		}
		if reserved {
			break
		}
		if err := m.takeSlotLocked(ctx, m.closing); err != nil {
			return nil, err
		}
		reserved = true // m.mu may have been released: look again
	}
	exists, err := fileExists(actor.Path(m.cfg.Dir, id))
	switch {
	case err != nil:
		m.cfg.Logger.Error().Err(err).Str("vault", addr.Hex()).Msg("look for vault file")
		return fail(actor.ErrUnavailable)
	case !exists && !create:
		return fail(ErrNoVault)
	}
	i := &instance{m: m, id: id}
	i.v = actor.New(m.actors, addr, i)
	if pin {
		i.v.Pin()
	}
	if exists {
		m.useSlotLocked(i, opening)
	} else {
		m.useSlotLocked(i, unborn)
	}
	m.moveWaitingLocked(i)
	m.handFiredLocked(i)
	go i.v.Run(exists) // owned by the manager: Close waits for every instance
	return i.v, nil
}
