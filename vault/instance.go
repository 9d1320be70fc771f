package vault

import (
	"context"

	"github.com/spells-dev/spells/vault/actor"
	"github.com/spells-dev/spells/vault/rules"
)

var _ actor.Host = (*instance)(nil)

// Opened records that its goroutine opened (or created) its file, at
// epoch: the node holds the vault.
func (i *instance) Opened(epoch uint64) {
	m := i.m
	m.mu.Lock()
	m.setLifeLocked(i, open)
	if p := m.placeOf(i.id).place; p == nowhere || p == unread {
		m.setPlaceLocked(i.id, spot{place: held, epoch: epoch})
	}
	m.mu.Unlock()
}

// Retire takes the instance out of routing when nothing can reach it any
// more: no pin, nothing in its mailbox or inbox, no subscriber
// (hibernation). One with its file open is closing until its goroutine
// has closed it; one without (dozing) is ending.
func (i *instance) Retire() bool {
	m := i.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if !i.life.routed() || i.life == unborn || i.life == opening || i.v.Busy() || i.v.Subscribers() > 0 {
		return false
	}
	switch i.life {
	case open, evicting:
		m.setLifeLocked(i, closing)
	case dozing:
		m.setLifeLocked(i, ending)
	default:
		return false
	}
	return true
}

// RetireUnborn ends an unborn instance whose letters created no file (its
// sign-in was refused, or the file could not be made), unless a caller
// pinned it meanwhile: that caller's letter comes next.
func (i *instance) RetireUnborn() bool {
	m := i.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if i.life != unborn || i.v.Busy() {
		return false
	}
	m.setLifeLocked(i, ending)
	return true
}

// Abandon takes the instance out of routing because its goroutine ends for
// a reason of its own (a failed commit or reopen, a damaged file, a move):
// requests made from now on start a new instance, after this one has
// ended.
func (i *instance) Abandon(hasFile bool) {
	m := i.m
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case !i.life.routed():
	case hasFile:
		m.setLifeLocked(i, closing)
	default:
		m.setLifeLocked(i, ending)
	}
}

// MayDoze lets the instance close its file and keep its goroutine unless
// something is on its way to it (a pin, a letter, an event).
func (i *instance) MayDoze() bool {
	m := i.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if (i.life != open && i.life != evicting) || i.v.Busy() {
		return false
	}
	m.setLifeLocked(i, dozingOff)
	return true
}

// Dozed records that the dozing instance's file is closed.
func (i *instance) Dozed() { i.m.setLife(i, dozing) }

// Ended records that the instance's goroutine has stopped; a vault that
// hibernated cleanly leaves what a signal can fire of it (fire.go).
func (i *instance) Ended(a *actor.Asleep) {
	m := i.m
	m.mu.Lock()
	if a != nil && m.vaults[i.id] == nil && !m.closed && m.journal != nil {
		m.asleep[i.id] = a
	}
	m.setLifeLocked(i, gone)
	m.mu.Unlock()
}

// Applied records that the vault applied the firing journal's record seq.
func (i *instance) Applied(seq uint64) { i.m.applied(i.id, seq) }

// WakeSlot takes a file slot for a dozing instance about to reopen its
// file, waiting while MaxOpen are held, until the instance or the node
// closes.
func (i *instance) WakeSlot(quit <-chan struct{}) error {
	m := i.m
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.takeSlotLocked(context.Background(), quit); err != nil {
		return err
	}
	m.useSlotLocked(i, waking)
	return nil
}

// EvictionEnded records that an eviction did not close the file (work
// arrived, or the vault ended first): it is open again, and evictable.
func (i *instance) EvictionEnded() { i.m.evictionEnded(i) }

// Evictable tells callers waiting for a slot that the vault lost its last
// subscriber, so it may be evicted now; without it they would wait for
// the janitor.
func (i *instance) Evictable() {
	m := i.m
	m.mu.Lock()
	if len(m.slotWaiters) > 0 {
		m.slotsChangedLocked()
	}
	m.mu.Unlock()
}

// Report records when the vault must be woken next and the thresholds it
// reacts to: both stay with the node while the vault sleeps.
func (i *instance) Report(next int64, leaves []rules.Leaf) map[string]rules.Offer {
	i.m.alarms.Set(i.id, next)
	return i.m.index.set(i.id, leaves)
}

// Quarantine sets the vault's damaged file aside.
func (i *instance) Quarantine(cause error) { i.m.quarantine(i.id, cause) }

// DiskFull records that a write found the disk full.
func (i *instance) DiskFull(what string, err error) { i.m.storage.full(i.m, what, err) }

// Shed counts events dropped before the vault evaluated them.
func (i *instance) Shed(n int) { i.m.shed(n) }
