package vault

import (
	"time"

	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/vault/actor"
	"github.com/spells-dev/spells/vault/exec"
	"github.com/spells-dev/spells/vault/notify"
	"github.com/spells-dev/spells/vault/rules"
)

// The signal path never waits on a vault. A signal value that crosses a
// vault's threshold, an alarm that comes due, or a chain result is an
// event pushed into the vault's inbox, never into its mailbox (which a
// sender may have to wait on): the push is a slice append under
// Manager.mu. A running instance is woken by a non-blocking send and
// handles its events before its next letter. A vault with no running
// instance (hibernated, or its previous instance still closing) has its
// events held in Manager.waiting, and one waker goroutine starts instances
// for them in turn, waiting for file slots itself; the events move into
// the new instance as it is registered, under the same lock, so none is
// lost or reordered.

// Signal hands a signal value to the vaults with an active threshold it
// crosses, and to no other: a value that crosses nothing wakes no vault.
// It never waits: the value is queued in each crossed vault's inbox (or,
// for a hibernated one, until the waker has opened it), so no vault's
// slot, file or mailbox can hold up the signal path. It returns how many
// vaults the value was queued for.
func (m *Manager) Signal(name string, value float64) int {
	return m.SignalReceived(name, value, time.Now(), protocol.SignalOrigin{})
}

// SignalReceived is Signal for a value from origin that the node received
// at received (the lag to its evaluation is measured from there, in wall
// time).
func (m *Manager) SignalReceived(name string, value float64, received time.Time, origin protocol.SignalOrigin) int {
	ids := m.index.dispatch(name, value, origin)
	if len(ids) == 0 {
		return 0
	}
	ev := actor.Event{Signal: name, Value: value, Origin: origin, Received: received}
	o, now := rules.Offer{Signal: name, Value: value, Origin: origin}, m.now()
	m.mu.Lock()
	m.evaluating++ // the waker leaves applying firings until this tick is evaluated
	m.mu.Unlock()
	for start := 0; start < len(ids); start += fireChunk {
		asleep := false
		m.mu.Lock()
		for _, id := range ids[start:min(start+fireChunk, len(ids))] {
			if m.fireAsleepLocked(id, o, now) {
				asleep = true
			} else {
				m.postLocked(id, ev)
			}
		}
		m.mu.Unlock()
		if asleep {
			// The writer syncs this chunk while the next is evaluated.
			select {
			case m.journalUp <- struct{}{}:
			default:
			}
		}
	}
	m.mu.Lock()
	if m.evaluating--; m.evaluating == 0 {
		m.broadcastLocked()
	}
	m.mu.Unlock()
	m.metrics.SignalDispatch.Add(float64(len(ids)))
	return len(ids)
}

func (m *Manager) fireAlarm(id string) {
	m.metrics.Alarms.Inc()
	m.mu.Lock()
	m.postLocked(id, actor.Event{Received: time.Now()})
	m.mu.Unlock()
}

// postExec hands a chain result to vault id's inbox, waking it if it
// hibernates.
func (m *Manager) postExec(id string, r *exec.Result) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if r.Kind == exec.DelegationDisabled {
		// Any address may disable its delegations: only a vault this node
		// holds hears of it.
		if p := m.placeOf(id).place; p != held && p != unread {
			return
		}
	}
	m.postLocked(id, actor.Event{Exec: r, Received: time.Now()})
}

// Reads returns the chain reads the node's vaults wait on, open or
// hibernated: each read's signal and what to read (rules.ReadKey). The
// node's reader makes them at every block and publishes each as its
// signal.
func (m *Manager) Reads() map[string]string { return m.index.watchedMade(protocol.ReadPrefix) }

// Moves returns the moves the node's vaults wait on: each move's signal
// and what it measures (rules.MoveKey). The node computes them from each
// value of their signal and publishes each as its signal.
func (m *Manager) Moves() map[string]string { return m.index.watchedMade(protocol.MovePrefix) }

// ReadFailed tells the vaults waiting on read signal name that the read
// failed, and why: each records it in its activity (its owner sees it).
func (m *Manager) ReadFailed(name, why string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, id := range m.index.readVaults(name) {
		m.postLocked(id, actor.Event{Signal: name, ReadFailed: why, Received: time.Now()})
	}
}

// postAlert hands a delivery's outcome (or a resume) to vault id, waking
// it if it sleeps.
func (m *Manager) postAlert(id string, r *notify.Result) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.placeOf(id).place == quarantined {
		return // its outbox is in the damaged file
	}
	m.postLocked(id, actor.Event{Alert: r, Received: time.Now()})
}

// postLocked hands ev to vault id: into its running instance's inbox, or
// held for the waker to start one. m.mu is held.
func (m *Manager) postLocked(id string, ev actor.Event) {
	if i := m.vaults[id]; i != nil {
		m.shed(i.v.Post(ev))
		return
	}
	if m.closed {
		return
	}
	w := m.waiting[id]
	if w == nil {
		w = &actor.Inbox{}
		m.waiting[id] = w
		m.wakeQ = append(m.wakeQ, id)
		select {
		case m.wakeUp <- struct{}{}:
		default:
		}
	}
	m.shed(w.Push(ev, m.cfg.InboxSize))
}

func (m *Manager) shed(n int) {
	if n > 0 {
		m.metrics.SignalsShed.WithLabelValues("vault_behind").Add(float64(n))
	}
}

// moveWaitingLocked moves the events held for i's vault into i's inbox.
// m.mu is held.
func (m *Manager) moveWaitingLocked(i *instance) {
	w := m.waiting[i.id]
	if w == nil {
		return
	}
	delete(m.waiting, i.id)
	for _, ev := range w.Take() {
		m.shed(i.v.Post(ev))
	}
}

// forget drops what the node keeps of vault id while it hibernates (its
// alarm and its threshold leaves), for a vault whose file is gone or was
// quarantined: no signal or alarm should try to wake it again.
func (m *Manager) forget(id string) {
	m.alarms.Set(id, 0)
	m.index.set(id, nil)
	m.dropFired(id, "its file is gone or set aside")
}

// watched lists up to max vaults with a dashboard open, for the chain
// watcher to read their balances.
func (m *Manager) watched(max int) []exec.Account {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []exec.Account
	for id, i := range m.vaults {
		if len(out) >= max {
			break
		}
		if i.v.Subscribers() == 0 {
			continue
		}
		if k := i.v.SessionKey(); k != nil {
			out = append(out, exec.Account{ID: id, Owner: i.v.Address(), Key: *k})
		}
	}
	return out
}
