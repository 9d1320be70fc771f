package vault

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/ethereum/go-ethereum/common"

	"github.com/spells-dev/spells/vault/exec"
	"github.com/spells-dev/spells/vault/rules"
)

// The signal path never waits on a vault. A signal value that crosses a
// vault's threshold, or an alarm that comes due, is an event pushed into
// the vault's inbox, never into its mailbox (which a sender may have to
// wait on): the push is a slice append under Manager.mu. A running
// instance is woken by a non-blocking send and handles its events before
// its next letter. A vault with no running instance (hibernated, or its
// previous instance still closing) has its events held in
// Manager.waiting, and one waker goroutine starts instances for them in
// turn, waiting for file slots itself; the events move into the new
// instance as it is registered, under the same lock, so none is lost or
// reordered.

// inboxEvent is a signal value (signal set), a chain result (exec set) or
// an alarm (neither).
type inboxEvent struct {
	exec     *exec.Result
	signal   string
	value    float64
	received time.Time // when the node received it: the lag to evaluation is measured from here
}

// inbox holds a vault's events in arrival order, at most InboxSize: past
// it the oldest are shed (and counted), so a vault that cannot keep up is
// handed the newest values instead of a growing backlog.
type inbox struct {
	mu     sync.Mutex
	events []inboxEvent
}

func (b *inbox) len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.events)
}

// push appends ev and reports how many events it shed to keep within max.
func (b *inbox) push(ev inboxEvent, max int) (shed int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.events) >= max {
		shed = len(b.events) - max + 1
		b.events = append(b.events[:0], b.events[shed:]...)
	}
	b.events = append(b.events, ev)
	return shed
}

// take returns the events and empties the inbox.
func (b *inbox) take() []inboxEvent {
	b.mu.Lock()
	defer b.mu.Unlock()
	evs := b.events
	b.events = nil
	return evs
}

// postLocked hands ev to vault id: into its running instance's inbox, or
// held for the waker to start one. m.mu is held.
func (m *Manager) postLocked(id string, ev inboxEvent) {
	if v := m.vaults[id]; v != nil {
		m.shed(v.in.push(ev, m.cfg.InboxSize))
		select {
		case v.inWake <- struct{}{}:
		default:
		}
		return
	}
	if m.closed {
		return
	}
	w := m.waiting[id]
	if w == nil {
		w = &inbox{}
		m.waiting[id] = w
		m.wakeQ = append(m.wakeQ, id)
		select {
		case m.wakeUp <- struct{}{}:
		default:
		}
	}
	m.shed(w.push(ev, m.cfg.InboxSize))
}

func (m *Manager) shed(n int) {
	if n > 0 {
		m.metrics.SignalsShed.WithLabelValues("vault_behind").Add(float64(n))
	}
}

// moveWaitingLocked moves the events held for v's vault into v's inbox.
// m.mu is held.
func (m *Manager) moveWaitingLocked(v *Vault) {
	w := m.waiting[v.id]
	if w == nil {
		return
	}
	delete(m.waiting, v.id)
	for _, ev := range w.take() {
		m.shed(v.in.push(ev, m.cfg.InboxSize))
	}
	select {
	case v.inWake <- struct{}{}:
	default:
	}
}

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
		if id == "" {
			select {
			case <-m.wakeUp:
				continue
			case <-ctx.Done():
				return
			}
		}
		if _, err := m.acquire(ctx, common.HexToAddress(id), false, false); err != nil {
			if errors.Is(err, ErrNoVault) {
				m.forget(id) // its file is gone: nothing will wake it again
			}
			m.mu.Lock()
			dropped := 0
			if w := m.waiting[id]; w != nil && m.vaults[id] == nil {
				dropped = len(w.take())
				delete(m.waiting, id)
			}
			m.mu.Unlock()
			if ctx.Err() != nil {
				return
			}
			if errors.Is(err, errMoving) {
				// The node it moves to offers it the latest values when it
				// opens there.
				m.cfg.Logger.Info().Str("vault", id).Int("events", dropped).Msg("vault moving: its signals and alarms here were dropped")
				continue
			}
			m.cfg.Logger.Error().Err(err).Str("vault", id).Int("events", dropped).Msg("wake vault: its signals and alarms were dropped")
		}
	}
}

// drainInbox handles the events queued for the vault, in order. A dozing
// vault reopens its file first.
func (v *Vault) drainInbox() {
	evs := v.in.take()
	for i, ev := range evs {
		if ev.exec != nil && ev.exec.Kind == exec.PortfolioRead {
			v.showPortfolio(ev.exec.Portfolio) // chain state: no file needed
			continue
		}
		if v.forget || (v.dozingNow() && !v.rewake()) {
			v.m.shed(len(evs) - i)
			return
		}
		if ev.exec != nil {
			if v.conn != nil {
				v.intents.On(ev.exec)
			}
			continue
		}
		if ev.signal == "" {
			if err := v.handle(rules.AlarmEvent(v.m.now())); err != nil {
				v.fault("alarm evaluation", err)
			}
			v.afterChange() // re-arm even when nothing changed
			v.startFresh()
			continue
		}
		v.m.metrics.SignalLag.Observe(time.Since(ev.received).Seconds())
		v.signal(ev.signal, ev.value)
	}
}

// forget drops what the node keeps of vault id while it hibernates (its
// alarm and its threshold leaves), for a vault whose file is gone or was
// quarantined: no signal or alarm should try to wake it again.
func (m *Manager) forget(id string) {
	m.alarms.Set(id, 0)
	m.index.set(id, nil)
}

// postExec hands a chain result to vault id's inbox, waking it if it
// hibernates.
func (m *Manager) postExec(id string, r *exec.Result) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.postLocked(id, inboxEvent{exec: r, received: time.Now()})
}

// watched lists up to max vaults with a dashboard open, for the chain
// watcher to read their balances.
func (m *Manager) watched(max int) []exec.Account {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []exec.Account
	for id, v := range m.vaults {
		if len(out) >= max {
			break
		}
		if v.subCount.Load() == 0 {
			continue
		}
		if k := v.keyAddr.Load(); k != nil {
			out = append(out, exec.Account{ID: id, Owner: v.addr, Key: *k})
		}
	}
	return out
}
