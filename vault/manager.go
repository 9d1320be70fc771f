package vault

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spells-dev/spells/internal/clock"
	"github.com/spells-dev/spells/vault/actor"
	"github.com/spells-dev/spells/vault/exec"
	"github.com/spells-dev/spells/vault/journal"
	"github.com/spells-dev/spells/vault/notify"
)

// The manager's state: what it keeps of every vault on the node, under one
// lock, and the goroutines it owns.

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
	checked string // the vault the integrity check read last
	// checking is the vault the integrity check reads now: no instance
	// starts for it until checkDone is closed (two connections on one
	// file, without SQLite's locks, would read each other's writes half
	// done).
	checking  string
	checkDone chan struct{}
	wakeUp    chan struct{}

	// The firing journal (fire.go): what a signal can fire of each
	// hibernated vault, the records its vault has not applied yet, the
	// records waiting to be written, and the vaults to wake to apply them
	// once the waker has nothing else to do.
	journal      *journal.Journal
	asleep       map[string]*actor.Asleep
	fired        map[string][]*firing
	firedN       int // records in fired
	toJournal    []*firing
	journalUp    chan struct{}
	applyQ       []string
	applyQueued  map[string]bool
	evaluating   int              // signal values being evaluated for their crossed vaults (route.go)
	journalAtEnd []journal.Record // records read at start, handed out by Scan

	places       map[string]spot // every vault this node has a file or a record of (place.go)
	quarantinedN int             // how many of them are quarantined
	storage      storageState    // whether the disk was last found full (storage.go)
	diskFull     atomic.Bool     // storage.isFull, read without its lock

	intents  *exec.Config   // what every vault's intents share
	executor *exec.Executor // nil without a chain client
	// resumeAtStart are the vaults the start-up scan found with intents
	// that have not ended: Start wakes them to carry those on.
	resumeAtStart []string
	notifier      *notify.Notifier // delivers every vault's alerts
	events        EventSource      // the node's log watcher (nil: none yet); under mu
	// alertsAtStart are the vaults the start-up scan found with alerts
	// waiting for delivery: Start wakes them to queue those again.
	alertsAtStart []string

	// ctx ends when Close begins: the manager's goroutines stop. stop ends
	// when Close runs out of time: the vaults' SQLite work is interrupted.
	ctx, stop           context.Context
	cancelCtx, stopWork context.CancelFunc
	wg                  sync.WaitGroup // every goroutine the manager started, but the vaults'
	lock                *os.File       // the data directory's lock (store.LockDir), released by Close
}

// instance is one run of a vault's goroutine on this node, as the manager
// keeps it: the actor, and where it stands in its life (life.go), which
// only the manager changes, under its lock. It is the actor's Host: each
// method is the actor telling the manager where it got to, on the actor's
// goroutine.
type instance struct {
	m    *Manager
	v    *actor.Vault
	id   string
	life life // under m.mu
}

// slotWaiter is a caller waiting for a file slot; granted is closed when
// one is reserved for it.
type slotWaiter struct {
	granted chan struct{}
	done    bool // granted or given up; under m.mu
}

// storageState is whether the disk was last found full: a write failed for
// want of space, and no probe has found room since. While it is, the node
// is not ready (/readyz), and the janitor probes every storageProbeEvery
// by writing and syncing a scratch file of storageProbeSize in the data
// directory.
type storageState struct {
	mu     sync.Mutex
	isFull bool
	since  time.Time
	probed time.Time
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

func (m *Manager) hooks() *Hooks {
	if m.cfg.Hooks == nil {
		return &noHooks
	}
	return m.cfg.Hooks
}

var noHooks Hooks

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
