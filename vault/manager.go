package vault

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/rs/zerolog"

	"github.com/spells-dev/spells/internal/clock"
	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/vault/exec"
	"github.com/spells-dev/spells/vault/keys"
	"github.com/spells-dev/spells/vault/store"
)

// Config configures a Manager. Dir and Nonces are required; every other
// zero value gets a working default.
type Config struct {
	Dir     string                // data directory; vault files go under Dir/vaults
	Domains []string              // SIWE domains this node serves
	ChainID uint64                // SIWE chain id (default 1)
	Nonces  *protocol.NonceIssuer // the node's nonce key, shared with the hub
	KEK     *keys.KEK             // the node's key-encryption key: it wraps every vault's data key (keys.go)
	// Chain describes the chain intents execute on and its contracts;
	// nil: none (grants are refused with no_chain). Client is the
	// connection to it; nil: intents are recorded and never executed.
	Chain  *protocol.ChainInfo
	Client exec.Chain
	// Confirmations is the blocks an intent's transaction needs (its own
	// included) to be confirmed (default 2); PollEvery is how often the
	// watcher looks for a new block (default 1s).
	Confirmations int
	PollEvery     time.Duration
	// BumpAfter is how long a sent transaction may wait for a block before
	// it is replaced with higher fees (default 30s).
	BumpAfter time.Duration

	NonceTTL      time.Duration // lifetime of a sign-in nonce (default 5m)
	MaxSessionTTL time.Duration // longest session, whatever the SIWE expiry (default 24h)

	Clock   clock.Clock    // default RealClock
	Logger  zerolog.Logger // default: discard
	Metrics *Metrics       // default: unregistered collectors

	// Latest returns the newest value of a signal, so a new trigger starts
	// from where the market is. Default: nothing known.
	Latest func(signal string) (float64, bool)

	// KeyMade, if set, is told of every new session key once it is
	// stored: at a vault's creation and at each rotation (the dev chain's
	// faucet funds it). It runs on the vault's goroutine and must not
	// block.
	KeyMade func(owner, sessionKey common.Address)

	// MailboxSize bounds a vault's queue (default 32). Every running vault
	// allocates it, dashboards' vaults included; a sender waits when it is
	// full. A small mailbox costs pipelined commands nothing (a group
	// commit keeps taking commands as they arrive, up to maxBatch) and
	// saves memory in every running vault.
	MailboxSize     int
	ChangeLogKeep   int // versions kept for resume (default 1000)
	EvaluationsKeep int // evaluation rows kept per vault (default 1000; trimmed every 32 rows)
	SnapshotRecent  int // intents and evaluations in a snapshot (default 100)
	MaxTriggers     int // per vault (default 256)

	// Hibernation: a vault with no subscriber, idle for IdleAfter and with
	// nothing due within IdleAfter is closed (goroutine ended, file closed)
	// and reopened on demand. MaxOpen bounds the open vaults (each holds
	// FilesPerVault file descriptors); past it the least recently used vault
	// without subscribers is closed.
	IdleAfter time.Duration // default 2m
	MaxOpen   int           // default DefaultMaxOpen

	// Claim, when set, is asked before this node creates a vault's file
	// (after the sign-in that creates it was verified): in a cluster it
	// records this node as the vault's home in the directory. An error
	// refuses the sign-in, and nothing is written; a *protocol.Error is
	// passed on to the client as it is.
	Claim func(ctx context.Context, vault common.Address) error

	// InboxSize bounds the signal values and alarms waiting for one vault
	// (default 256); past it the oldest are shed and counted
	// (spells_signal_values_shed_total).
	InboxSize int

	// Hooks are for tests: they stop or bend the node at chosen steps. Nil
	// in production.
	Hooks *Hooks
}

// Hooks let a test stop or bend a node at chosen steps.
type Hooks struct {
	Exec *exec.Hooks // an intent's steps
}

func (c *Config) setDefaults() {
	def := func(p *int, v int) {
		if *p <= 0 {
			*p = v
		}
	}
	def(&c.MailboxSize, 32)
	def(&c.ChangeLogKeep, 1000)
	def(&c.EvaluationsKeep, 1000)
	def(&c.SnapshotRecent, 100)
	def(&c.MaxTriggers, 256)
	def(&c.MaxOpen, DefaultMaxOpen)
	def(&c.InboxSize, 256)
	def(&c.Confirmations, 2)
	if c.PollEvery <= 0 {
		c.PollEvery = time.Second
	}
	if c.BumpAfter <= 0 {
		c.BumpAfter = 30 * time.Second
	}
	if c.IdleAfter <= 0 {
		c.IdleAfter = 2 * time.Minute
	}
	if c.ChainID == 0 {
		c.ChainID = 1
	}
	if c.NonceTTL <= 0 {
		c.NonceTTL = 5 * time.Minute
	}
	if c.MaxSessionTTL <= 0 {
		c.MaxSessionTTL = 24 * time.Hour
	}
	if c.Clock == nil {
		c.Clock = clock.Real{}
	}
	if c.Metrics == nil {
		c.Metrics = NewMetrics(nil)
	}
	if c.Latest == nil {
		c.Latest = func(string) (float64, bool) { return 0, false }
	}
}

// FilesPerVault is how many file descriptors an open vault holds.
const FilesPerVault = store.FilesPerVault

// DefaultMaxOpen is how many vault files a node keeps open by default
// (BENCHMARKS.md has the figures it was chosen by).
const DefaultMaxOpen = 1000

// Manager runs the vaults of one node: it opens and creates them, routes
// signals and alarms to them, hibernates idle ones, and quarantines files
// it cannot read. Create with NewManager, then Start; Close stops
// everything and closes every vault file.
//
// Each vault running on the node is one instance (a goroutine owning the
// vault's file and state) whose place in its life (life.go) only the
// manager changes, under mu.
type Manager struct {
	cfg     Config
	metrics *Metrics
	alarms  *clock.Schedule
	index   *interestIndex
	// started is when this Manager took the data directory's lock: every
	// socket of an earlier run of the node was closed before it, so no
	// nonce issued before it can be used legitimately (checkNonce). Unix
	// milliseconds, the resolution of a nonce's issue time.
	started int64

	mu      sync.Mutex
	vaults  map[string]*Vault // routed instances, by id (see life.routed)
	leaving map[string]*Vault // retired instances whose goroutine still runs
	count   [numLives]int     // instances per state
	// files is how many instances hold a file (life.holdsFile), reserved
	// how many slots callers took for instances about to; together what
	// MaxOpen bounds. peak is the most there ever were.
	files, reserved, peak int
	slotWaiters           []*slotWaiter // callers waiting for a slot, first come first served
	freed                 chan struct{} // closed (and replaced) when a retired instance ends
	closed                bool
	closing               chan struct{} // closed by Close: slot waits give up

	// waiting holds the events (signal values, alarms) for vaults with no
	// routed instance, until the waker starts one (inbox.go).
	waiting map[string]*inbox
	wakeQ   []string
	wakeUp  chan struct{}

	held map[string]uint64 // vault id → epoch, for every vault file on this node (Held)
	// Moves (move.go): vaults leaving now (→ the node they go to), whose
	// leaving a stop interrupted, whose files here are tombstones (→
	// where they went), and received files not installed yet (→ epoch).
	moving      map[string]string
	pending     map[string]store.MoveMark
	tombstones  map[string]string
	incoming    map[string]uint64
	quarantined map[string]string // vault id → where its file was moved (quarantine.go)
	unscanned   map[string]bool   // files the start-up scan could not read for a passing reason
	storage     storageState      // whether the disk was last found full (quarantine.go)

	intents  *exec.Config   // what every vault's intents share
	executor *exec.Executor // nil without a chain client
	// resumeAtStart are the vaults the start-up scan found with intents
	// that have not ended: Start wakes them to carry those on.
	resumeAtStart []string
	cancel        context.CancelFunc
	wg            sync.WaitGroup
	lock          *os.File // the data directory's lock (lockDir), released by Close
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
		started: cfg.Clock.Now().UnixMilli(), vaults: map[string]*Vault{}, leaving: map[string]*Vault{},
		freed: make(chan struct{}), closing: make(chan struct{}), waiting: map[string]*inbox{},
		wakeUp: make(chan struct{}, 1), held: map[string]uint64{},
		moving: map[string]string{}, pending: map[string]store.MoveMark{}, tombstones: map[string]string{}, incoming: map[string]uint64{}, quarantined: map[string]string{}, unscanned: map[string]bool{}, lock: lock}
	m.intents = &exec.Config{Chain: cfg.Chain, Confirmations: cfg.Confirmations, BumpAfter: cfg.BumpAfter, Clock: cfg.Clock, Metrics: cfg.Metrics.Exec}
	if cfg.Hooks != nil {
		m.intents.Hooks = cfg.Hooks.Exec
	}
	if cfg.Client != nil && cfg.Chain != nil {
		m.executor = exec.NewExecutor(exec.ExecutorConfig{Chain: cfg.Client, Info: cfg.Chain, PollEvery: cfg.PollEvery, Clock: cfg.Clock,
			Logger: cfg.Logger, Post: m.postExec, Watched: m.watched})
		m.intents.Executor = m.executor
	}
	return m, nil
}

func (m *Manager) now() time.Time { return m.cfg.Clock.Now() }

func (m *Manager) latest(s string) (float64, bool) { return m.cfg.Latest(s) }

// Start reads every vault file in the data directory once (scan.go), to
// learn its next alarm and the signal thresholds it reacts to, and leaves
// it closed (hibernated) until something needs it; a file it cannot read
// is quarantined, never the node's reason not to start. Alarms missed
// while the node was down fire once, now. Then it starts the alarm
// scheduler, the waker of hibernated vaults and the janitor.
func (m *Manager) Start(ctx context.Context) error {
	if err := m.scanDir(ctx); err != nil {
		return fmt.Errorf("start: %w", err)
	}
	actx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
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
	m.wg.Add(3)
	go func() {
		defer m.wg.Done()
		m.alarms.Run(actx, m.fireAlarm)
	}()
	go func() {
		defer m.wg.Done()
		m.waker(actx)
	}()
	go func() {
		defer m.wg.Done()
		m.janitor(actx)
	}()
	return nil
}

// ErrNoVault is returned for a vault that does not exist on this node.
var ErrNoVault = protocol.Errorf(protocol.CodeSessionUnknown, "no such vault on this node")

// Vault returns the running instance of the vault at addr, opening its
// file if it is hibernated, for tools and tests; clients reach vaults
// through SignIn and Resume. A file that cannot be opened is reported here.
func (m *Manager) Vault(ctx context.Context, addr common.Address) (*Vault, error) {
	v, err := m.acquire(ctx, addr, false, true)
	if err != nil {
		return nil, err
	}
	if err := v.doPinned(ctx, func() error { return nil }); err != nil {
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
// vaultVFS) would corrupt it. With pin, the instance is pinned: the
// caller's next letter must be pinned too (doPinned), and the vault unpins
// when it takes it, so the instance cannot retire between acquire and that
// letter, and an unborn one always gets the letter it was started for.
// Events waiting for the vault (inbox.go) move into the instance.
func (m *Manager) acquire(ctx context.Context, addr common.Address, create, pin bool) (*Vault, error) {
	id := idOf(addr)
	m.mu.Lock()
	defer m.mu.Unlock()
	reserved := false
	fail := func(err error) (*Vault, error) {
		if reserved {
			m.releaseSlotLocked()
		}
		return nil, err
	}
	for {
		if m.closed {
			return fail(errClosed)
		}
		if m.quarantined[id] != "" {
			return fail(errQuarantined)
		}
		if err := m.moveRefusalLocked(id); err != nil {
			return fail(err)
		}
		if v := m.vaults[id]; v != nil {
			if reserved {
				m.releaseSlotLocked()
			}
			if pin {
				v.pins.Add(1)
			}
			m.moveWaitingLocked(v)
			return v, nil
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
	exists, err := fileExists(pathFor(m.cfg.Dir, id))
	switch {
	case err != nil:
		m.cfg.Logger.Error().Err(err).Str("vault", addr.Hex()).Msg("look for vault file")
		return fail(errUnavailable)
	case !exists && !create:
		return fail(ErrNoVault)
	}
	v := newVault(m, addr)
	if pin {
		v.pins.Add(1)
	}
	if exists {
		m.useSlotLocked(v, opening)
	} else {
		m.useSlotLocked(v, unborn)
	}
	m.moveWaitingLocked(v)
	go v.run(exists)
	return v, nil
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

// SignIn verifies a Sign-In with Ethereum for the vault it names and binds
// req.Sub to a new session. The stateless half of the check (the text,
// the wallet signature, the domain, chain and times, and that this node
// issued the nonce recently) runs first on the caller's goroutine, so a
// refused sign-in touches no vault, file or slot; the vault itself checks
// the rest (its owner, that the nonce is unused and is this socket's)
// before it writes anything. The first sign-in of an address creates its
// vault. Errors are *protocol.Error.
func (m *Manager) SignIn(ctx context.Context, req SignInRequest) (Bound, error) {
	msg, err := m.verifySignIn(req)
	if err != nil {
		m.metrics.AuthFailures.WithLabelValues(codeOf(err)).Inc()
		return Bound{}, err
	}
	v, err := m.acquire(ctx, msg.Address, true, true)
	if err != nil {
		return Bound{}, err
	}
	return v.signIn(ctx, msg, req)
}

// Resume binds sub to an existing session of the vault the signed body
// names (see Vault.resume). A nonce this node did not issue recently, or a
// session id that is no sign-in nonce of this node, is refused before any
// vault is opened.
func (m *Manager) Resume(ctx context.Context, body, sig, nonce string, sub Subscriber) (Bound, error) {
	r, err := protocol.ParseResume(body)
	if err == nil && !common.IsHexAddress(r.Vault) {
		err = protocol.Errorf(protocol.CodeWrongVault, "vault %q is not an address", truncateID(r.Vault))
	}
	if err == nil {
		err = m.checkNonce(r.Nonce, m.now())
	}
	if err == nil {
		// A session's id is the nonce of the sign-in that made it, issued
		// here at most NonceTTL before a session of at most MaxSessionTTL:
		// anything else names no session, and opens no vault.
		if _, serr := m.cfg.Nonces.Check(r.Session, m.now(), m.cfg.NonceTTL+m.cfg.MaxSessionTTL); serr != nil {
			err = protocol.Errorf(protocol.CodeSessionUnknown, "this node has no session %q", truncateID(r.Session))
		}
	}
	if err != nil {
		m.metrics.AuthFailures.WithLabelValues(codeOf(err)).Inc()
		return Bound{}, err
	}
	v, err := m.acquire(ctx, common.HexToAddress(r.Vault), false, true)
	if err != nil {
		return Bound{}, err
	}
	return v.resumeSession(ctx, body, sig, nonce, sub)
}

// retire takes v out of routing when nothing can reach it any more: no
// pin, nothing in its mailbox or inbox, no subscriber (hibernation). A
// vault with its file open is closing until its goroutine has closed it;
// one without (dozing) is ending. It runs on v's goroutine.
func (m *Manager) retire(v *Vault) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if !v.life.routed() || v.life == unborn || v.life == opening || v.busyLocked() || len(v.subs) > 0 {
		return false
	}
	switch v.life {
	case open, evicting:
		m.setLifeLocked(v, closing)
	case dozing:
		m.setLifeLocked(v, ending)
	default:
		return false
	}
	return true
}

// retireUnborn ends an unborn instance whose letters created no file (its
// sign-in was refused, or the file could not be made), unless a caller
// pinned it meanwhile: that caller's letter comes next. It runs on v's
// goroutine.
func (m *Manager) retireUnborn(v *Vault) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if v.life != unborn || v.busyLocked() {
		return false
	}
	m.setLifeLocked(v, ending)
	return true
}

// abandon takes v out of routing because its goroutine ends for a reason
// of its own (a failed commit or reopen, a damaged file): requests made
// from now on start a new instance, after this one has ended. It runs on
// v's goroutine.
func (m *Manager) abandon(v *Vault) {
	m.mu.Lock()
	defer m.mu.Unlock()
	switch {
	case !v.life.routed():
	case v.conn != nil:
		m.setLifeLocked(v, closing)
	default:
		m.setLifeLocked(v, ending)
	}
}

// opened records that v's goroutine opened (or created) its file.
func (m *Manager) opened(v *Vault) {
	m.mu.Lock()
	m.setLifeLocked(v, open)
	delete(m.unscanned, v.id)
	m.mu.Unlock()
}

// evictable tells callers waiting for a slot that a vault lost its last
// subscriber, so it may be evicted now; without it they would wait for
// the janitor.
func (m *Manager) evictable() {
	m.mu.Lock()
	if len(m.slotWaiters) > 0 {
		m.slotsChangedLocked()
	}
	m.mu.Unlock()
}

// mayDoze lets v close its file and keep its goroutine unless something
// is on its way to it (a pin, a letter, an event). It runs on v's
// goroutine.
func (m *Manager) mayDoze(v *Vault) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if (v.life != open && v.life != evicting) || v.busyLocked() {
		return false
	}
	m.setLifeLocked(v, dozingOff)
	return true
}

// setLife is setLifeLocked for a caller that does not hold m.mu: the
// goroutine of v recording where it got to (dozed: its file is closed;
// ended: it has stopped).
func (m *Manager) setLife(v *Vault, to life) {
	m.mu.Lock()
	m.setLifeLocked(v, to)
	m.mu.Unlock()
}

// wakeSlot takes a file slot for a dozing vault about to reopen its file,
// waiting while MaxOpen are held, until the vault or the node closes. It
// runs on v's goroutine.
func (m *Manager) wakeSlot(v *Vault) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := m.takeSlotLocked(context.Background(), v.quit); err != nil {
		return err
	}
	m.useSlotLocked(v, waking)
	return nil
}

func (m *Manager) setAlarm(v *Vault, at int64) { m.alarms.Set(v.id, at) }

// Interested returns how many vaults (open or hibernated) have an active
// threshold trigger on signal.
func (m *Manager) Interested(signal string) int { return m.index.watchers(signal) }

// Signal hands a signal value to the vaults with an active threshold it
// crosses, and to no other: a value that crosses nothing wakes no vault.
// It never waits: the value is queued in each crossed vault's inbox (or,
// for a hibernated one, until the waker has opened it), so no vault's
// slot, file or mailbox can hold up the signal path. It returns how many
// vaults the value was queued for.
func (m *Manager) Signal(name string, value float64) int {
	return m.SignalReceived(name, value, time.Now())
}

// SignalReceived is Signal for a value the node received at received (the
// lag to its evaluation is measured from there).
func (m *Manager) SignalReceived(name string, value float64, received time.Time) int {
	ids := m.index.dispatch(name, value)
	if len(ids) == 0 {
		return 0
	}
	ev := inboxEvent{signal: name, value: value, received: received}
	m.mu.Lock()
	for _, id := range ids {
		m.postLocked(id, ev)
	}
	m.mu.Unlock()
	m.metrics.SignalDispatch.Add(float64(len(ids)))
	return len(ids)
}

func (m *Manager) fireAlarm(id string) {
	m.metrics.Alarms.Inc()
	m.mu.Lock()
	m.postLocked(id, inboxEvent{received: time.Now()})
	m.mu.Unlock()
}

// Close stops the scheduler, the waker and the janitor, and closes every
// vault after it finishes the work already queued for it. It waits for
// the vaults until ctx ends; then it reports how many had not closed (the
// process may exit anyway: every acknowledged change is already durable,
// and an unclosed file is recovered at the next start like a crash). It
// is safe to call more than once.
func (m *Manager) Close(ctx context.Context) error {
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil
	}
	m.closed = true
	close(m.closing)
	vs := make([]*Vault, 0, len(m.vaults)+len(m.leaving))
	for _, v := range m.vaults {
		vs = append(vs, v)
	}
	// Retired instances still closing their file are waited for too: the
	// directory lock is released below, and the next Manager on it must
	// not open a file that is still being closed.
	for _, v := range m.leaving {
		vs = append(vs, v)
	}
	m.mu.Unlock()
	if m.cancel != nil {
		m.cancel()
	}
	m.wg.Wait()
	if m.executor != nil {
		m.executor.Close()
	}
	for _, v := range vs {
		v.close()
	}
	open := 0
	for _, v := range vs {
		select {
		case <-v.done:
		case <-ctx.Done():
			open++
		}
	}
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
// file the start-up scan found or the node created since, and each
// quarantined vault (epoch 0: its file was set aside, but its owner is
// told so here). A cluster's directory records this node as their home.
func (m *Manager) Held() map[string]uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]uint64, len(m.held)+len(m.quarantined)+len(m.unscanned))
	for id := range m.quarantined {
		out[id] = 0
	}
	for id := range m.unscanned {
		out[id] = 0
	}
	for id, e := range m.held {
		out[id] = e
	}
	return out
}

// KEKID names the key-encryption key that seals this node's vaults' keys
// (a vault moves only to a node with the same one).
func (m *Manager) KEKID() string { return m.cfg.KEK.ID() }

// Holds reports whether this node holds the vault at addr (see Held).
func (m *Manager) Holds(addr common.Address) bool {
	id := idOf(addr)
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.held[id]
	return ok || m.quarantined[id] != "" || m.unscanned[id]
}

func (m *Manager) hold(id string, epoch uint64) {
	m.mu.Lock()
	m.held[id] = epoch
	m.mu.Unlock()
}

func idOf(a common.Address) string { return strings.ToLower(a.Hex()) }
