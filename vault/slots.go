package vault

import (
	"context"
	"fmt"
	"sort"

	"github.com/spells-dev/spells/vault/actor"
)

// File slots: a node keeps at most MaxOpen vault files open. Starting an
// instance (or reopening a dozing one's file) takes a slot; at MaxOpen,
// callers wait first come, first served, and evictions are asked of the
// least recently active open vaults.

// setLifeLocked moves v to state to. It keeps in step, in one place:
// the per-state counts and the files held (what MaxOpen bounds), the
// gauges, the routing maps (vaults for routed states, leaving for retired
// ones), and the callers waiting for a slot or for a retired instance to
// end. A transition the machine does not allow is logged and counted
// (spells_vault_life_errors_total) and made anyway. m.mu is held.
func (m *Manager) setLifeLocked(v *instance, to life) {
	from := v.life
	if from == to {
		return
	}
	if !lifeAllowed(from, to) {
		m.metrics.LifeErrors.Inc()
		m.cfg.Logger.Error().Str("vault", v.id).Stringer("from", from).Stringer("to", to).Msg("vault life: transition not allowed")
	}
	v.life = to
	if from != none {
		m.count[from]--
	}
	if to != gone {
		m.count[to]++
	}
	switch {
	case to.routed():
		m.vaults[v.id] = v
	case m.vaults[v.id] == v:
		delete(m.vaults, v.id)
	}
	switch {
	case to.leaving():
		m.leaving[v.id] = v
	case m.leaving[v.id] == v:
		delete(m.leaving, v.id)
		m.broadcastLocked() // a new instance may start now
	}
	if from.holdsFile() != to.holdsFile() {
		if to.holdsFile() {
			m.files++
			m.peak = max(m.peak, m.files+m.reserved)
		} else {
			m.files--
		}
	}
	m.metrics.Open.Set(float64(len(m.vaults)))
	m.metrics.Dozing.Set(float64(m.count[dozing]))
	m.metrics.FilesOpen.Set(float64(m.files + m.reserved))
	switch to {
	case evicting:
		m.metrics.Evictions.Inc()
	case dozingOff:
		m.metrics.Dozes.Inc()
	case closing:
		m.metrics.Hibernations.Inc()
	case ending:
		if from == dozing { // a dozing vault that lost its dashboards hibernates
			m.metrics.Hibernations.Inc()
		}
	case open:
		if from == opening || from == waking {
			m.metrics.Activations.Inc()
		}
	}
	// Waiters look again when a file closes, or when an instance becomes
	// one that can be evicted (a file opened, an eviction gave up).
	if len(m.slotWaiters) > 0 && (from.holdsFile() && !to.holdsFile() || to == open) {
		m.slotsChangedLocked()
	}
}

// setLife is setLifeLocked for a caller that does not hold m.mu: the
// goroutine of an instance recording where it got to.
func (m *Manager) setLife(i *instance, to life) {
	m.mu.Lock()
	m.setLifeLocked(i, to)
	m.mu.Unlock()
}

// checkLifeLocked verifies the manager's bookkeeping against its
// instances: the counts, the files held, the routing maps. Tests call it
// after randomized operations; it returns the first difference found.
// m.mu is held.
func (m *Manager) checkLifeLocked() error {
	var count [numLives]int
	files := 0
	for id, v := range m.vaults {
		if v.id != id || !v.life.routed() {
			return fmt.Errorf("vaults[%s] is %s", id, v.life)
		}
		count[v.life]++
		if v.life.holdsFile() {
			files++
		}
	}
	for id, v := range m.leaving {
		if v.id != id || !v.life.leaving() {
			return fmt.Errorf("leaving[%s] is %s", id, v.life)
		}
		if m.vaults[id] == v {
			return fmt.Errorf("%s is both routed and leaving", id)
		}
		count[v.life]++
		if v.life.holdsFile() {
			files++
		}
	}
	for l := unborn; l < gone; l++ {
		if count[l] != m.count[l] {
			return fmt.Errorf("%d instances %s, counted %d", count[l], l, m.count[l])
		}
	}
	if files != m.files {
		return fmt.Errorf("%d instances hold files, counted %d", files, m.files)
	}
	if m.reserved < 0 {
		return fmt.Errorf("%d slots reserved", m.reserved)
	}
	if len(m.slotWaiters) > 0 && m.files+m.reserved < m.cfg.MaxOpen {
		return fmt.Errorf("%d callers wait for a slot while %d of %d are taken", len(m.slotWaiters), m.files+m.reserved, m.cfg.MaxOpen)
	}
	return nil
}

// takeSlotLocked reserves a file slot for a caller about to start an
// instance or reopen a dozing one's file, waiting (FIFO, with evictions
// asked for) while MaxOpen are held. The reservation becomes the
// instance's when it enters a state that holds a file (useSlotLocked).
// With nothing that can close, it reserves one over the limit rather than
// wait for ever. It returns with m.mu held, or with ctx's (or done's)
// error and m.mu held.
func (m *Manager) takeSlotLocked(ctx context.Context, done <-chan struct{}) error {
	if len(m.slotWaiters) == 0 && m.files+m.reserved < m.cfg.MaxOpen {
		m.reserveLocked()
		return nil
	}
	w := &slotWaiter{granted: make(chan struct{})}
	m.slotWaiters = append(m.slotWaiters, w)
	if !m.evictLocked(m.files + m.reserved + len(m.slotWaiters) - m.cfg.MaxOpen) {
		m.grantLocked(true)
	}
	m.mu.Unlock()
	var err error
	select {
	case <-w.granted:
	case <-ctx.Done():
		err = ctx.Err()
	case <-done:
		err = actor.ErrClosed
	}
	m.mu.Lock()
	if err == nil {
		return nil
	}
	if w.done { // granted meanwhile: hand it on
		m.reserved--
		m.grantLocked(false)
		return err
	}
	w.done = true
	for i, x := range m.slotWaiters {
		if x == w {
			m.slotWaiters = append(m.slotWaiters[:i], m.slotWaiters[i+1:]...)
			break
		}
	}
	return err
}

func (m *Manager) reserveLocked() {
	m.reserved++
	m.peak = max(m.peak, m.files+m.reserved)
	m.metrics.FilesOpen.Set(float64(m.files + m.reserved))
}

// useSlotLocked moves v into a state that holds a file with the slot
// reserved for it by takeSlotLocked.
func (m *Manager) useSlotLocked(v *instance, to life) {
	m.reserved--
	m.setLifeLocked(v, to)
}

// releaseSlotLocked gives back a slot reserved by takeSlotLocked that
// will not be used.
func (m *Manager) releaseSlotLocked() {
	m.reserved--
	m.metrics.FilesOpen.Set(float64(m.files + m.reserved))
	m.slotsChangedLocked()
}

// grantLocked reserves slots for the callers waiting first, as many as are
// free (or one over the limit when over is set and nothing can free one).
func (m *Manager) grantLocked(over bool) {
	for len(m.slotWaiters) > 0 && (over || m.files+m.reserved < m.cfg.MaxOpen) {
		w := m.slotWaiters[0]
		m.slotWaiters = m.slotWaiters[1:]
		w.done = true
		m.reserveLocked()
		close(w.granted)
		over = false
	}
}

// slotsChangedLocked runs when files closed or one became closable again:
// it grants freed slots to the callers waiting, asks for evictions while
// they still wait (or the node is over MaxOpen), and, if nothing can close
// at all, lets the first waiter over the limit. m.mu is held.
func (m *Manager) slotsChangedLocked() {
	m.grantLocked(false)
	need := m.files + m.reserved + len(m.slotWaiters) - m.cfg.MaxOpen
	if need > 0 && !m.closed && !m.evictLocked(need) {
		m.grantLocked(true)
	}
}

// broadcastLocked wakes the callers waiting for a retired instance to end.
func (m *Manager) broadcastLocked() {
	close(m.freed)
	m.freed = make(chan struct{})
}

// waitLeavingLocked releases m.mu until a retired instance ends (or ctx
// does), then takes it again.
func (m *Manager) waitLeavingLocked(ctx context.Context) error {
	freed := m.freed
	m.mu.Unlock()
	defer m.mu.Lock()
	select {
	case <-freed:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// evictLocked makes sure evictions are on their way for n more slots: it
// keeps between one and two batches of MaxOpen/32 in flight (never asking
// for fewer than a batch, so a burst of wake-ups has many files closing in
// parallel, and never more than two however many callers wait, so that a
// crossing that wakes thousands of vaults at once scans the vaults once
// per batch, not once per freed slot). It asks the least recently active
// open vaults (those without subscribers hibernate; if they are not
// enough, those with subscribers doze). It reports whether any file is
// closing, asked to, or about to become evictable (so waiting for a slot
// makes sense). m.mu is held.
func (m *Manager) evictLocked(n int) bool {
	if n <= 0 {
		return true
	}
	if m.closed {
		return false // the vaults are closing anyway
	}
	pending := m.count[evicting] + m.count[dozingOff] + m.count[closing]
	// Instances still opening a file become evictable once it is open
	// (setLifeLocked asks again then): waiting for them makes sense too.
	soon := m.count[unborn] + m.count[opening] + m.count[waking]
	batch := max(1, m.cfg.MaxOpen/32)
	target := max(batch, min(n, 2*batch))
	if pending > 0 && 2*pending >= target {
		return true
	}
	want := target - pending
	var idle, watched []*instance
	for _, v := range m.vaults {
		if v.life != open {
			continue // (an eviction queues behind the work it has)
		}
		if v.v.Subscribers() > 0 {
			watched = append(watched, v)
		} else {
			idle = append(idle, v)
		}
	}
	asked := 0
	ask := func(vs []*instance, doze bool) {
		if len(vs) > want-asked {
			sort.Slice(vs, func(i, j int) bool { return vs[i].v.LastActive() < vs[j].v.LastActive() })
			vs = vs[:want-asked]
		}
		for _, v := range vs {
			m.setLifeLocked(v, evicting)
			// Queued behind its pending work, which may fill its mailbox:
			// the letter is posted from a goroutine the manager owns.
			m.spawn(func(ctx context.Context) {
				if !v.v.Rest(ctx, doze, true, nil) {
					m.evictionEnded(v)
				}
			})
		}
		asked += len(vs)
	}
	ask(idle, false)
	if asked < want {
		ask(watched, true)
	}
	return pending+asked+soon > 0
}

// evictionEnded records that v's eviction did not close its file (work
// arrived, or the vault ended first): it is open again, and evictable.
func (m *Manager) evictionEnded(v *instance) {
	m.mu.Lock()
	if v.life == evicting {
		m.setLifeLocked(v, open)
	}
	m.mu.Unlock()
}
