package vault

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/ethereum/go-ethereum/common"

	"github.com/spells-dev/spells/internal/clock"
	"github.com/spells-dev/spells/vault/actor"
	"github.com/spells-dev/spells/vault/exec"
	"github.com/spells-dev/spells/vault/keys"
	"github.com/spells-dev/spells/vault/notify"
	"github.com/spells-dev/spells/vault/store"
)

// A node's vaults as a whole: starting them, stopping them, and what the
// node tells of them.

// NewManager checks cfg and prepares the data directory.
func NewManager(cfg Config) (*Manager, error) {
	if cfg.Dir == "" || cfg.Nonces == nil || cfg.KEK == nil {
		return nil, errors.New("vault manager: Dir, Nonces and KEK are required")
	}
	cfg.setDefaults()
	if err := os.MkdirAll(filepath.Join(cfg.Dir, "vaults"), 0o700); err != nil {
		return nil, fmt.Errorf("vault manager: %w", err)
	}
	lock, err := store.LockDir(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("vault manager: %w", err)
	}
	if err := keys.CheckDir(cfg.Dir, cfg.KEK); err != nil {
		lock.Close()
		return nil, fmt.Errorf("vault manager: %w", err)
	}
	m := &Manager{cfg: cfg, metrics: cfg.Metrics, alarms: clock.NewSchedule(cfg.Clock), index: newInterestIndex(),
		started: cfg.Clock.Now().UnixMilli(), vaults: map[string]*instance{}, leaving: map[string]*instance{},
		freed: make(chan struct{}), closing: make(chan struct{}), waiting: map[string]*actor.Inbox{},
		wakeUp: make(chan struct{}, 1), places: map[string]spot{}, lock: lock,
		asleep: map[string]*actor.Asleep{}, fired: map[string][]*firing{}, journalUp: make(chan struct{}, 1), applyQueued: map[string]bool{}}
	if err := m.openJournal(); err != nil {
		lock.Close()
		return nil, fmt.Errorf("vault manager: %w", err)
	}
	m.ctx, m.cancelCtx = context.WithCancel(context.Background())
	m.stop, m.stopWork = context.WithCancel(context.Background())
	m.intents = &exec.Config{Chain: cfg.Chain, Confirmations: cfg.Confirmations, BumpAfter: cfg.BumpAfter, Clock: cfg.Clock, Metrics: cfg.Metrics.Exec}
	if cfg.Client != nil && cfg.Chain != nil {
		m.executor = exec.NewExecutor(exec.ExecutorConfig{Chain: cfg.Client, Info: cfg.Chain, PollEvery: cfg.PollEvery, Finality: cfg.Finality, Clock: cfg.Clock,
			Logger: cfg.Logger, Post: m.postExec, Watched: m.watched})
		m.intents.Executor = m.executor
	}
	m.notifier = notify.New(notify.Config{AllowPrivate: cfg.AlertsAllowPrivate, Post: m.postAlert, Clock: cfg.Clock, Logger: cfg.Logger,
		Metrics: cfg.Metrics.Notify, RetryBase: cfg.AlertRetryBase, SMTP: cfg.AlertSMTP, Telegram: cfg.AlertTelegram, VAPID: cfg.AlertVAPID})
	m.actors = &actor.Config{Notifier: m.notifier, Dir: cfg.Dir, KEK: cfg.KEK, Chain: cfg.Chain, Intents: m.intents, Clock: cfg.Clock, Logger: cfg.Logger,
		Metrics: cfg.Metrics.Actor, Latest: cfg.Latest, KeyMade: cfg.KeyMade, Claim: cfg.Claim, Backup: cfg.Backup, Stop: m.stop.Done(),
		NonceTTL: cfg.NonceTTL, MaxSessionTTL: cfg.MaxSessionTTL, IdleAfter: cfg.IdleAfter, MailboxSize: cfg.MailboxSize,
		InboxSize: cfg.InboxSize, ChangeLogKeep: cfg.ChangeLogKeep, EvaluationsKeep: cfg.EvaluationsKeep,
		SnapshotRecent: cfg.SnapshotRecent, MaxTriggers: cfg.MaxTriggers}
	if cfg.Restore != nil {
		m.actors.Restore = m.ownerRestore
	}
	if h := cfg.Hooks; h != nil {
		m.intents.Hooks, m.actors.Hooks = h.Exec, h.Actor
	}
	return m, nil
}

// Start reads every vault file in the data directory once (scan.go), to
// learn its next alarm and the signal thresholds it reacts to, and leaves
// it closed (hibernated) until something needs it; a file it cannot read
// is quarantined, never the node's reason not to start. Alarms missed
// while the node was down fire once, now. Then it starts the executor,
// the alarm scheduler, the waker of hibernated vaults and the janitor.
func (m *Manager) Start(ctx context.Context) error {
	if err := m.Scan(ctx); err != nil {
		return err
	}
	m.Run()
	return nil
}

// Scan is Start's first half: every vault file read, nothing run yet. A
// node in a cluster stands down the copies the directory gives to another
// node at a higher epoch (StandDown) between Scan and Run, so a stale copy
// never fires an alarm or sends a transaction.
func (m *Manager) Scan(ctx context.Context) error {
	if err := m.scanDir(ctx); err != nil {
		return fmt.Errorf("start: %w", err)
	}
	m.replayJournal()
	return nil
}

// Run is Start's second half: the executor, the alarms, the waker and the
// janitor.
func (m *Manager) Run() {
	if m.executor != nil {
		m.executor.Start()
		m.mu.Lock()
		ids := m.resumeAtStart
		m.resumeAtStart = nil
		m.mu.Unlock()
		for _, id := range ids {
			m.postExec(id, &exec.Result{Kind: exec.ResumeIntents})
		}
	}
	m.notifier.Start()
	m.mu.Lock()
	ids := m.alertsAtStart
	m.alertsAtStart = nil
	m.mu.Unlock()
	for _, id := range ids {
		m.postAlert(id, &notify.Result{Resume: true})
	}
	m.spawn(func(ctx context.Context) { m.alarms.Run(ctx, m.fireAlarm) })
	m.spawn(m.waker)
	m.spawn(m.journalWriter)
	m.spawn(m.janitor)
}

// Close stops the scheduler, the waker, the janitor, the executor and the
// notifier (an alert in flight stays pending in its vault's outbox), and
// closes every vault after it finishes the work already queued for it. It
// waits for the vaults until ctx ends; then it interrupts their SQLite
// work (an interrupted transaction rolls back: nothing acknowledged is
// lost, and the vault's goroutine ends soon after) and reports how many
// had not closed (the process may exit anyway: every acknowledged change
// is already durable, and an unclosed file is recovered at the next start
// like a crash). It is safe to call more than once.
func (m *Manager) Close(ctx context.Context) error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	close(m.closing)
	vs := make([]*actor.Vault, 0, len(m.vaults)+len(m.leaving))
	for _, i := range m.vaults {
		vs = append(vs, i.v)
	}
	// Retired instances still closing their file are waited for too: the
	// directory lock is released below, and the next Manager on it must
	// not open a file that is still being closed.
	for _, i := range m.leaving {
		vs = append(vs, i.v)
	}
	m.mu.Unlock()
	m.cancelCtx()
	m.wg.Wait()
	if m.executor != nil {
		m.executor.Close()
	}
	m.notifier.Close()
	for _, v := range vs {
		v.Close()
	}
	open := waitEnded(ctx, vs)
	m.stopWork()
	if open > 0 {
		m.cfg.Logger.Warn().Int("vaults", open).Msg("vaults still closing when shutdown ran out of time; they are recovered from their files at the next start")
		return fmt.Errorf("close vaults: %d of %d did not close in time", open, len(vs))
	}
	if m.journal.Pending() == 0 {
		m.compactJournal()
	}
	m.mu.Lock()
	if err := m.journal.Close(); err != nil {
		m.cfg.Logger.Warn().Err(err).Msg("close the firing journal")
	}
	if m.lock != nil {
		m.lock.Close()
		m.lock = nil
	}
	m.mu.Unlock()
	m.cfg.Logger.Info().Int("vaults", len(vs)).Msg("vaults closed")
	return nil
}

// waitEnded waits until every vault's goroutine has ended or ctx does, and
// returns how many have not.
func waitEnded(ctx context.Context, vs []*actor.Vault) int {
	open := 0
	for _, v := range vs {
		select {
		case <-v.Done():
		case <-ctx.Done():
			if !v.Ended() {
				open++
			}
		}
	}
	return open
}

// FilesOpen returns how many vault files are open, opening or closing, or
// have a slot taken for them: what MaxOpen bounds.
func (m *Manager) FilesOpen() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.files + m.reserved
}

// OpenVaults returns the number of routed instances (running vaults).
func (m *Manager) OpenVaults() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.vaults)
}

// Held returns every vault this node holds, with its epoch: each vault
// file the start-up scan found or the node created or received since, and
// each one quarantined or not read yet (epoch 0: its owner is told why
// here). A cluster's directory records this node as their home.
func (m *Manager) Held() map[string]uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]uint64, len(m.places))
	for id, s := range m.places {
		if s.holds() {
			out[id] = s.epoch
		}
	}
	return out
}

// Holds reports whether this node holds the vault at addr (see Held).
func (m *Manager) Holds(addr common.Address) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.placeOf(actor.ID(addr)).holds()
}

// KEKID names the key-encryption key that seals this node's vaults' keys
// (a vault moves only to a node with the same one).
func (m *Manager) KEKID() string { return m.cfg.KEK.ID() }

// Interested returns how many vaults (open or hibernated) have an active
// threshold trigger on signal.
func (m *Manager) Interested(signal string) int { return m.index.watchers(signal) }
