package vault

import (
	"context"
	"path/filepath"
	"time"

	"github.com/ethereum/go-ethereum/common"

	"github.com/spells-dev/spells/vault/actor"
	"github.com/spells-dev/spells/vault/journal"
	"github.com/spells-dev/spells/vault/rules"
	"github.com/spells-dev/spells/vault/store"
)

// Firing hibernated vaults without opening them (ARCHITECTURE.md §6).
//
// A signal value that crosses a hibernated vault's threshold is evaluated
// here, on the signal path, against what the node keeps of the vault's
// triggers (actor.Asleep), into a record of what it did (actor.Fired).
// The record is queued for the firing journal; the journal writer makes
// every queued record durable with one sync, and only then counts its
// intents and queues its vault to be woken. The vault's next instance
// applies its records to its file before anything else (the waker starts
// one once it has nothing more urgent to do; a command or an alarm that
// starts one earlier hands them over the same way). A mass crossing thus
// costs one evaluation and a few hundred bytes of journal per vault before
// every intent is durable, instead of an open, a transaction, a sync and
// a close.
//
// The fast path is taken only for a vault with no instance, no event
// waiting for one, held here, whose triggers the node kept when its last
// instance hibernated cleanly (or the start-up scan read them): anything
// else goes the usual way (route.go).

// firing is a journal record on its way: the record, and where it stands.
// Its fields are under Manager.mu.
type firing struct {
	id        string
	f         *actor.Fired
	body      []byte
	journaled bool // durable in the journal
	applied   bool // in the vault's file
	counted   bool // its intents were counted (when it was first durable)
}

// fireChunk is how many crossed vaults are evaluated under one hold of
// Manager.mu, so that a mass crossing never holds the lock for long.
const fireChunk = 512

// Records not yet applied are bounded, so that values that cross
// thresholds back and forth faster than vaults can apply their firings
// grow neither the journal nor the node's memory without end: past
// maxFiredPerVault for one vault, or maxFired in all, a crossing takes the
// usual way (its events wait in the vault's bounded inbox, the newest
// kept), as it does while the disk is full.
const (
	maxFiredPerVault = 4
	maxFired         = 250_000
)

// journalDir is the firing journal's directory in the data directory.
func journalDir(dataDir string) string { return filepath.Join(dataDir, "journal") }

// openJournal opens the node's firing journal; the records it holds wait
// for the scan to hand them to their vaults (replayJournal).
func (m *Manager) openJournal() error {
	j, recs, err := journal.Open(journalDir(m.cfg.Dir), m.now())
	if j == nil {
		return err
	}
	if err != nil {
		m.cfg.Logger.Error().Err(err).Msg("firing journal: a segment is damaged; the firings after the damage are lost (the signals' own journal publishes the newest values again)")
	}
	m.journal, m.journalAtEnd = j, recs
	return nil
}

// replayJournal hands the records the journal held at start to their
// vaults: each vault applies those it has not applied yet, when the waker
// opens it. The triggers the scan read of such a vault are older than
// its records, so it is not fired asleep until it has applied them.
func (m *Manager) replayJournal() {
	recs := m.journalAtEnd
	m.journalAtEnd = nil
	if len(recs) == 0 {
		return
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	dropped := 0
	for _, r := range recs {
		f, err := actor.DecodeFired(r.Seq, r.Body)
		if err != nil || m.placeOf(r.Vault).place != held {
			if err != nil {
				m.cfg.Logger.Error().Err(err).Str("vault", r.Vault).Msg("firing journal: a record does not read; dropped")
			}
			dropped++
			m.journal.Done(r.Seq)
			continue
		}
		delete(m.asleep, r.Vault)
		m.fired[r.Vault] = append(m.fired[r.Vault], &firing{id: r.Vault, f: f, journaled: true, counted: true})
		m.firedN++
		m.queueApplyLocked(r.Vault)
	}
	m.metrics.JournalPending.Set(float64(m.journal.Pending()))
	m.cfg.Logger.Info().Int("records", len(recs)-dropped).Int("vaults", len(m.applyQ)).Int("dropped", dropped).
		Msg("firing journal read: its vaults apply what they have not applied yet")
}

// fireAsleepLocked evaluates the value o for vault id without opening it,
// if it can be (see above), and reports whether it did. m.mu is held.
func (m *Manager) fireAsleepLocked(id string, o rules.Offer, now time.Time) bool {
	a := m.asleep[id]
	if a == nil || m.closed || m.vaults[id] != nil || m.leaving[id] != nil || m.waiting[id] != nil || m.placeOf(id).place != held ||
		len(m.fired[id]) >= maxFiredPerVault || m.firedN >= maxFired || m.diskFull.Load() {
		return false
	}
	resend, ok := m.fireOneLocked(id, a, o, now)
	if !ok {
		return false
	}
	for _, again := range resend {
		// A value a leaf has not seen (its trigger is newer than it):
		// evaluated now, as the vault's report would have it.
		if _, ok := m.fireOneLocked(id, a, again, now); !ok {
			break
		}
	}
	return true
}

// fireOneLocked evaluates o on a, queues the record of what it did (if
// anything), and sets the vault's alarm and leaves from what it left,
// even when nothing was recorded (a publisher's value a leaf did not take
// left the index ahead of the vault). It returns the values the index
// knows that a leaf has not seen; false if the record could not be made
// (the vault then evaluates for itself: what the node kept of it is
// dropped, being ahead of its file). m.mu is held.
func (m *Manager) fireOneLocked(id string, a *actor.Asleep, o rules.Offer, now time.Time) (map[string]rules.Offer, bool) {
	f, next, leaves := a.Fire(id, o, now)
	if f != nil {
		body, err := f.Encode()
		if err != nil {
			delete(m.asleep, id)
			m.cfg.Logger.Error().Err(err).Str("vault", id).Msg("firing journal: encode a record")
			return nil, false
		}
		f.Seq = m.journal.Reserve()
		fg := &firing{id: id, f: f, body: body}
		m.fired[id] = append(m.fired[id], fg)
		m.firedN++
		m.toJournal = append(m.toJournal, fg)
	}
	m.alarms.Set(id, next)
	return m.index.set(id, leaves), true
}

// journalWriter writes the queued records in batches, one sync each, until
// the manager closes (then it writes what is queued once more).
func (m *Manager) journalWriter(ctx context.Context) {
	for {
		m.mu.Lock()
		batch := m.toJournal
		m.toJournal = nil
		m.mu.Unlock()
		if len(batch) > 0 {
			m.writeJournal(batch)
			continue
		}
		select {
		case <-m.journalUp:
			if m.journal.Pending() == 0 {
				m.compactJournal()
			}
		case <-ctx.Done():
			m.mu.Lock()
			batch = m.toJournal
			m.toJournal = nil
			m.mu.Unlock()
			m.writeJournal(batch)
			return
		}
	}
}

// compactJournal empties the journal once every record in it is applied.
func (m *Manager) compactJournal() {
	if err := m.journal.Compact(); err != nil {
		m.cfg.Logger.Warn().Err(err).Msg("firing journal: start an empty segment (the applied records are read again at the next start, and skipped)")
	}
}

func (m *Manager) writeJournal(batch []*firing) {
	if len(batch) == 0 {
		return
	}
	recs := make([]journal.Record, len(batch))
	for i, fg := range batch {
		recs[i] = journal.Record{Seq: fg.f.Seq, Vault: fg.id, Body: fg.body}
	}
	began := time.Now()
	err := m.journal.Write(recs)
	m.metrics.JournalSync.Observe(time.Since(began).Seconds())
	m.mu.Lock()
	defer m.mu.Unlock()
	if err != nil {
		// The firings are still held for their vaults, which apply them
		// to their own files: durable there, and counted then.
		m.metrics.JournalErrors.Inc()
		if store.IsFull(err) {
			m.storage.full(m, "firing journal", err)
		}
		m.cfg.Logger.Error().Err(err).Int("records", len(batch)).Msg("firing journal: a batch could not be written; its vaults are opened to apply it")
	}
	for _, fg := range batch {
		fg.body = nil
		if err == nil {
			fg.journaled = true
			m.countLocked(fg)
			m.metrics.Journaled.Inc()
			if fg.applied {
				m.journal.Done(fg.f.Seq)
			}
		}
		if !fg.applied {
			m.queueApplyLocked(fg.id)
		}
	}
	m.metrics.JournalPending.Set(float64(m.journal.Pending()))
	select {
	case m.wakeUp <- struct{}{}:
	default:
	}
}

// countLocked counts a firing's intents once, when it is first durable.
func (m *Manager) countLocked(fg *firing) {
	if !fg.counted {
		fg.counted = true
		m.actors.Metrics.Intents.Add(float64(fg.f.Intents()))
	}
}

func (m *Manager) queueApplyLocked(id string) {
	if !m.applyQueued[id] {
		m.applyQueued[id] = true
		m.applyQ = append(m.applyQ, id)
	}
}

// nextApplyLocked returns the next vault with records to apply, "" if
// none. m.mu is held.
func (m *Manager) nextApplyLocked() string {
	for len(m.applyQ) > 0 {
		id := m.applyQ[0]
		m.applyQ[0] = ""
		m.applyQ = m.applyQ[1:]
		if len(m.applyQ) == 0 {
			m.applyQ = nil
		}
		delete(m.applyQueued, id)
		if len(m.fired[id]) > 0 && m.vaults[id] == nil {
			return id
		}
	}
	return ""
}

// applyNext starts an instance for a vault with records to apply (it
// applies them as it opens). It reports whether there was one. While a
// signal value is still being evaluated for the vaults it crosses, it
// waits: the opens would take the cores the rest of the crossing needs to
// become durable.
func (m *Manager) applyNext(ctx context.Context) bool {
	m.mu.Lock()
	for m.evaluating > 0 && len(m.applyQ) > 0 {
		if m.waitLeavingLocked(ctx) != nil {
			m.mu.Unlock()
			return false
		}
	}
	id := m.nextApplyLocked()
	m.mu.Unlock()
	if id == "" {
		return false
	}
	if _, err := m.acquire(ctx, common.HexToAddress(id), false, false); err != nil {
		m.wakeFailed(ctx, id, err)
	}
	return true
}

// retryFired queues again the vaults whose records are not applied and
// that nothing is opening: their open or their apply failed (a full disk,
// an error that may pass), and nothing else may wake them soon. The
// janitor calls it with its rescans.
func (m *Manager) retryFired() {
	m.mu.Lock()
	defer m.mu.Unlock()
	n := 0
	for id := range m.fired {
		if m.vaults[id] == nil && m.leaving[id] == nil && !m.applyQueued[id] {
			m.queueApplyLocked(id)
			n++
		}
	}
	if n == 0 {
		return
	}
	m.cfg.Logger.Info().Int("vaults", n).Msg("firing journal: vaults whose firings are not applied yet are opened again")
	select {
	case m.wakeUp <- struct{}{}:
	default:
	}
}

// handFiredLocked gives a new instance the records its vault has not
// applied: it applies them first. What the node kept of its triggers is
// dropped: from now on the instance is the vault. m.mu is held.
func (m *Manager) handFiredLocked(i *instance) {
	delete(m.asleep, i.id)
	if fs := m.fired[i.id]; len(fs) > 0 {
		out := make([]*actor.Fired, len(fs))
		for k, fg := range fs {
			out[k] = fg.f
		}
		i.v.Journaled(out)
	}
}

// applied records that vault id applied record seq to its file: the
// record is done in the journal once it is durable there too.
func (m *Manager) applied(id string, seq uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	fs := m.fired[id]
	for k, fg := range fs {
		if fg.f.Seq != seq {
			continue
		}
		fg.applied = true
		m.countLocked(fg)
		if fg.journaled {
			m.journal.Done(seq)
		}
		m.fired[id] = append(fs[:k:k], fs[k+1:]...)
		m.firedN--
		if len(m.fired[id]) == 0 {
			delete(m.fired, id)
		}
		pending := m.journal.Pending()
		m.metrics.JournalPending.Set(float64(pending))
		if pending == 0 {
			select { // the writer empties the journal
			case m.journalUp <- struct{}{}:
			default:
			}
		}
		return
	}
}

// dropFired drops the records of a vault that will not apply them (its
// file is gone, set aside, or moved), saying so.
func (m *Manager) dropFired(id, why string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.asleep, id)
	fs := m.fired[id]
	if len(fs) == 0 {
		return
	}
	delete(m.fired, id)
	m.firedN -= len(fs)
	for _, fg := range fs {
		fg.applied = true // nothing will apply it: it must not hold the journal
		if fg.journaled {
			m.journal.Done(fg.f.Seq)
		}
	}
	m.cfg.Logger.Error().Str("vault", id).Int("records", len(fs)).Str("why", why).Msg("firing journal: records its vault will never apply were dropped")
}
