package vault

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/ethereum/go-ethereum/common"

	"github.com/spells-dev/spells/internal/clock"
	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/vault/actor"
	"github.com/spells-dev/spells/vault/exec"
	"github.com/spells-dev/spells/vault/keys"
	"github.com/spells-dev/spells/vault/store"
)

// Manager runs the vaults of one node: it opens and creates them, routes
// signals and alarms to them, hibernates idle ones, quarantines files it
// cannot read, and moves vaults to and from other nodes. Create with
// NewManager, then Start; Close stops everything and closes every vault
// file.
//
// Each vault running on the node is one instance (a goroutine owning the
// vault's file and state) whose place in its life (life.go) only the
// manager changes, under mu; a vault's place on the node (place.go) is
// kept the same way. Every goroutine the manager starts, it stops and
// waits for in Close.
type Manager struct {
	cfg     Config
	actors  *actor.Config // what every vault instance shares
	metrics *Metrics
	alarms  *clock.Schedule
	index   *interestIndex
	// started is when this Manager took the data directory's lock: every
	// socket of an earlier run of the node was closed before it, so no
	// nonce issued before it can be used legitimately (checkNonce). Unix
	// milliseconds, the resolution of a nonce's issue time.
	started int64

	mu      sync.Mutex
	vaults  map[string]*instance // routed instances, by id (see life.routed)
	leaving map[string]*instance // retired instances whose goroutine still runs
	count   [numLives]int        // instances per state
	// files is how many instances hold a file (life.holdsFile), reserved
	// how many slots callers took for instances about to; together what
	// MaxOpen bounds. peak is the most there ever were.
	files, reserved, peak int
	slotWaiters           []*slotWaiter // callers waiting for a slot, first come first served
	freed                 chan struct{} // closed (and replaced) when a retired instance ends
	closed                bool
	closing               chan struct{} // closed by Close: slot waits give up

	// waiting holds the events (signal values, alarms) for vaults with no
	// routed instance, until the waker starts one (route.go).
	waiting map[string]*actor.Inbox
	wakeQ   []string
	wakeUp  chan struct{}

	places       map[string]spot // every vault this node has a file or a record of (place.go)
	quarantinedN int             // how many of them are quarantined
	storage      storageState    // whether the disk was last found full (storage.go)

	intents  *exec.Config   // what every vault's intents share
	executor *exec.Executor // nil without a chain client
	// resumeAtStart are the vaults the start-up scan found with intents
	// that have not ended: Start wakes them to carry those on.
	resumeAtStart []string

	// ctx ends when Close begins: the manager's goroutines stop. stop ends
	// when Close runs out of time: the vaults' SQLite work is interrupted.
	ctx, stop           context.Context
	cancelCtx, stopWork context.CancelFunc
	wg                  sync.WaitGroup // every goroutine the manager started, but the vaults'
	lock                *os.File       // the data directory's lock (store.LockDir), released by Close
}

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
		wakeUp: make(chan struct{}, 1), places: map[string]spot{}, lock: lock}
	m.ctx, m.cancelCtx = context.WithCancel(context.Background())
	m.stop, m.stopWork = context.WithCancel(context.Background())
	m.intents = &exec.Config{Chain: cfg.Chain, Confirmations: cfg.Confirmations, BumpAfter: cfg.BumpAfter, Clock: cfg.Clock, Metrics: cfg.Metrics.Exec}
	if cfg.Client != nil && cfg.Chain != nil {
		m.executor = exec.NewExecutor(exec.ExecutorConfig{Chain: cfg.Client, Info: cfg.Chain, PollEvery: cfg.PollEvery, Clock: cfg.Clock,
			Logger: cfg.Logger, Post: m.postExec, Watched: m.watched})
		m.intents.Executor = m.executor
	}
	m.actors = &actor.Config{Dir: cfg.Dir, KEK: cfg.KEK, Chain: cfg.Chain, Intents: m.intents, Clock: cfg.Clock, Logger: cfg.Logger,
		Metrics: cfg.Metrics.Actor, Latest: cfg.Latest, KeyMade: cfg.KeyMade, Claim: cfg.Claim, Stop: m.stop.Done(),
		NonceTTL: cfg.NonceTTL, MaxSessionTTL: cfg.MaxSessionTTL, IdleAfter: cfg.IdleAfter, MailboxSize: cfg.MailboxSize,
		InboxSize: cfg.InboxSize, ChangeLogKeep: cfg.ChangeLogKeep, EvaluationsKeep: cfg.EvaluationsKeep,
		SnapshotRecent: cfg.SnapshotRecent, MaxTriggers: cfg.MaxTriggers}
	if h := cfg.Hooks; h != nil {
		m.intents.Hooks, m.actors.Hooks = h.Exec, h.Actor
	}
	return m, nil
}

func (m *Manager) now() time.Time { return m.cfg.Clock.Now() }

// spawn runs fn on a goroutine the manager owns: fn's ctx ends when Close
// begins, and Close waits for fn to return.
func (m *Manager) spawn(fn func(ctx context.Context)) {
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		fn(m.ctx)
	}()
}

// Start reads every vault file in the data directory once (scan.go), to
// learn its next alarm and the signal thresholds it reacts to, and leaves
// it closed (hibernated) until something needs it; a file it cannot read
// is quarantined, never the node's reason not to start. Alarms missed
// while the node was down fire once, now. Then it starts the executor,
// the alarm scheduler, the waker of hibernated vaults and the janitor.
func (m *Manager) Start(ctx context.Context) error {
	if err := m.scanDir(ctx); err != nil {
		return fmt.Errorf("start: %w", err)
	}
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
	m.spawn(func(ctx context.Context) { m.alarms.Run(ctx, m.fireAlarm) })
	m.spawn(m.waker)
	m.spawn(m.janitor)
	return nil
}

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
	go i.v.Run(exists) // owned by the manager: Close waits for every instance
	return i.v, nil
}

// fileExists reports whether a vault's file is there. Anything but a
// missing file counts as there (a directory in its place is found by the
// open, and quarantined).
func fileExists(p string) (bool, error) {
	_, err := os.Lstat(p)
	switch {
	case err == nil:
		return true, nil
	case errors.Is(err, fs.ErrNotExist):
		return false, nil
	}
	return false, err
}

// setLife is setLifeLocked for a caller that does not hold m.mu: the
// goroutine of an instance recording where it got to.
func (m *Manager) setLife(i *instance, to life) {
	m.mu.Lock()
	m.setLifeLocked(i, to)
	m.mu.Unlock()
}

// Close stops the scheduler, the waker, the janitor and the executor, and
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
	for _, v := range vs {
		v.Close()
	}
	open := waitEnded(ctx, vs)
	m.stopWork()
	if open > 0 {
		m.cfg.Logger.Warn().Int("vaults", open).Msg("vaults still closing when shutdown ran out of time; they are recovered from their files at the next start")
		return fmt.Errorf("close vaults: %d of %d did not close in time", open, len(vs))
	}
	m.mu.Lock()
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
