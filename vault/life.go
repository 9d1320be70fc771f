package vault

import "fmt"

// life is where one instance of a vault stands in its life on this node.
// Every change of it goes through Manager.setLifeLocked, which keeps the
// counts, the gauges, the routing maps and the callers waiting for a file
// slot in step (ARCHITECTURE.md draws the machine). An instance is one run
// of a vault's goroutine; a hibernated vault has none, only its file, its
// alarm in the node's heap and its leaves in the interest index.
//
//	none ──► unborn ──► open            (a first sign-in creates the file)
//	none ──► opening ─► open            (a hibernated vault is woken)
//	open ──► evicting ─► open            (the eviction found work and gave up)
//	open, evicting ──► dozingOff ──► dozing ──► waking ──► open
//	open, evicting ──► closing ──► gone  (hibernation: the file closes as the goroutine ends)
//	unborn, opening, dozing, waking ──► ending ──► gone (no file to close)
//
// Any state may end in gone when the goroutine stops (a failed commit, the
// node closing). Quarantine is not a state of an instance but of the vault:
// its file was moved aside and no instance is started for it again (see
// quarantine.go). Where a vault stands on the node beyond its instances
// (held, moving, moved, arriving, quarantined) is its place (place.go).
type life uint8

const (
	none      life = iota // not yet registered
	unborn                // no file yet: its first letter, a verified sign-in, creates it
	opening               // its goroutine is opening the file
	open                  // file open
	evicting              // open, asked to close its file to free a slot (hibernate or doze)
	dozingOff             // closing its file, keeping its goroutine, state and subscribers
	dozing                // file closed; goroutine, state and subscribers kept
	waking                // dozing, with a slot taken to reopen its file
	closing               // hibernating: out of routing, goroutine ending, file still open
	ending                // out of routing, goroutine ending, no file
	gone                  // its goroutine has ended
	numLives
)

var lifeNames = [numLives]string{"none", "unborn", "opening", "open", "evicting", "dozing_off", "dozing", "waking", "closing", "ending", "gone"}

func (l life) String() string {
	if l < numLives {
		return lifeNames[l]
	}
	return fmt.Sprintf("life(%d)", uint8(l))
}

// holdsFile reports whether an instance in this state holds a vault file's
// descriptors, or is about to: what MaxOpen bounds.
func (l life) holdsFile() bool {
	switch l {
	case unborn, opening, open, evicting, dozingOff, waking, closing:
		return true
	}
	return false
}

// routed reports whether the instance is the one requests for its vault
// reach (in Manager.vaults).
func (l life) routed() bool { return l >= unborn && l <= waking }

// leaving reports whether the instance is retired but its goroutine still
// runs (in Manager.leaving): a new instance must wait for it.
func (l life) leaving() bool { return l == closing || l == ending }

// lifeMoves lists the allowed transitions. Besides these, every state
// may end in gone, and every routed state may be abandoned (ending, or
// closing when it holds a file).
var lifeMoves = map[life][]life{
	none:      {unborn, opening},
	unborn:    {open, ending},
	opening:   {open, ending},
	open:      {evicting, dozingOff, closing},
	evicting:  {open, dozingOff, closing},
	dozingOff: {dozing},
	dozing:    {waking, ending},
	waking:    {open, ending},
	closing:   {},
	ending:    {},
}

func lifeAllowed(from, to life) bool {
	switch {
	case to == gone && from != none:
		return true
	case from.routed() && (to == ending || to == closing && from.holdsFile()):
		return true // an instance that ends for a reason of its own (Manager.abandon)
	}
	for _, l := range lifeMoves[from] {
		if l == to {
			return true
		}
	}
	return false
}

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
