package vault

import (
	"context"
	"errors"
	"time"

	"github.com/spells-dev/spells/vault/actor"
	"github.com/spells-dev/spells/vault/store"
)

// The janitor reads every closed vault file in the background
// (store.QuickCheck), so damage no query reads is found within
// integrityCycle, not when a client resumes: a damaged file is quarantined
// like one found damaged at open.

// integrityCycle is the time in which every file is checked once.
const integrityCycle = 24 * time.Hour

// checkIntegrity checks the next closed vault files after the cursor:
// enough each sweep (every) to cover every file within integrityCycle.
func (m *Manager) checkIntegrity(ctx context.Context, every time.Duration) {
	m.mu.Lock()
	files := 0
	for _, s := range m.places {
		if s.place == held {
			files++
		}
	}
	m.mu.Unlock()
	n := max(1, int(int64(files)*int64(every)/int64(integrityCycle))+1)
	for ; n > 0 && ctx.Err() == nil; n-- {
		id, ok := m.nextToCheck()
		if !ok {
			return
		}
		err := store.QuickCheck(actor.Path(m.cfg.Dir, id))
		damaged := err != nil && store.IsDamaged(err)
		m.mu.Lock()
		if damaged && m.vaults[id] == nil && m.leaving[id] == nil && m.placeOf(id).place == held {
			// Fenced: no instance starts for a quarantined vault.
			m.setPlaceLocked(id, spot{place: quarantined, file: actor.Path(m.cfg.Dir, id)})
		} else {
			damaged = false
		}
		m.checking = ""
		close(m.checkDone)
		m.mu.Unlock()
		if damaged {
			m.quarantine(id, errors.Join(errors.New("found by the background integrity check"), err))
		}
	}
}

// nextToCheck is the next held vault without an instance (running or
// still closing its file) after the cursor, in id order (wrapping around);
// no instance starts for it until the check ends (checkDone).
func (m *Manager) nextToCheck() (string, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	next, first := "", ""
	for id, s := range m.places {
		if s.place != held || m.vaults[id] != nil || m.leaving[id] != nil {
			continue // open, or still closing (its last writes under way)
		}
		if first == "" || id < first {
			first = id
		}
		if id > m.checked && (next == "" || id < next) {
			next = id
		}
	}
	if next == "" {
		next = first
	}
	if next == "" {
		return "", false
	}
	m.checked, m.checking, m.checkDone = next, next, make(chan struct{})
	return next, true
}
