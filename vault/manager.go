package vault

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/rs/zerolog"

	"github.com/spells-dev/spells/protocol"
)

// Config configures a Manager. Dir and Nonces are required; every other
// zero value gets a working default.
type Config struct {
	Dir     string                // data directory; vault files go under Dir/vaults
	Domains []string              // SIWE domains this node serves
	ChainID uint64                // SIWE chain id (default 1)
	Nonces  *protocol.NonceIssuer // the node's nonce key, shared with the hub

	NonceTTL      time.Duration // lifetime of a sign-in nonce (default 5m)
	MaxSessionTTL time.Duration // longest session, whatever the SIWE expiry (default 24h)

	Clock   Clock          // default RealClock
	Logger  zerolog.Logger // default: discard
	Metrics *Metrics       // default: unregistered collectors

	// Latest returns the newest value of a signal, so a new trigger starts
	// from where the market is. Default: nothing known.
	Latest func(signal string) (float64, bool)

	// MailboxSize bounds a vault's queue (default 32). Every running vault
	// allocates it, dashboards' vaults included; a sender waits when it is
	// full. 32 measured as fast as 256 for pipelined commands into one
	// vault (a group commit keeps taking commands as they arrive, up to
	// maxBatch) and saves 3.5 KB per running vault.
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
		c.Clock = RealClock{}
	}
	if c.Metrics == nil {
		c.Metrics = NewMetrics(nil)
	}
	if c.Latest == nil {
		c.Latest = func(string) (float64, bool) { return 0, false }
	}
}

// DefaultMaxOpen is how many vault files a node keeps open by default. On
// the 2-core benchmark machine 1,000 fired 10,000 dashboards' vaults and
// 9,900 hibernated ones as fast as 2,000 did, with 190 MiB less at the peak
// (BENCHMARKS.md).
const DefaultMaxOpen = 1000

// Manager runs the vaults of one node: it opens and creates them, routes
// signals to the vaults whose triggers watch them, and wakes vaults when
// their alarms come due. Create with NewManager, then Start; Close stops
// everything and closes every vault file.
type Manager struct {
	cfg     Config
	metrics *Metrics
	alarms  *alarmQueue
	// started is when this Manager took the data directory's lock: every
	// socket of an earlier run of the node was closed before it, so no
	// nonce issued before it can be used legitimately (checkNonce). Unix
	// milliseconds, the resolution of a nonce's issue time.
	started int64

	mu     sync.Mutex
	vaults map[string]*Vault
	// leaving holds the retired vaults (gone from vaults) whose file is
	// not closed yet, by id: a new instance of one must not open its file
	// before the old one has closed it. Under mu.
	leaving map[string]*Vault
	dozers  int // vaults in vaults whose file is closed (dozing); under mu
	// evicting counts vaults asked to close their file (Vault.evicting) and
	// waking those dozing with a slot reserved for their wake-up
	// (Vault.reserved): slots that will free up or become evictable
	// without another scan. Under mu.
	evicting, waking int
	// closing counts retired vaults (gone from vaults) whose file is not
	// closed yet: they still hold their descriptors. Under mu.
	closing int
	peak    int // most files open at once so far (filesLocked); under mu
	closed  bool
	freed   chan struct{} // closed (and replaced) whenever a vault leaves vaults

	index *interestIndex

	cancel context.CancelFunc
	wg     sync.WaitGroup
	lock   *os.File // the data directory's lock (lockDir), released by Close
}

// NewManager checks cfg and prepares the data directory.
func NewManager(cfg Config) (*Manager, error) {
	if cfg.Dir == "" || cfg.Nonces == nil {
		return nil, errors.New("vault manager: Dir and Nonces are required")
	}
	cfg.setDefaults()
	if err := os.MkdirAll(filepath.Join(cfg.Dir, "vaults"), 0o700); err != nil {
		return nil, fmt.Errorf("vault manager: %w", err)
	}
	lock, err := lockDir(cfg.Dir)
	if err != nil {
		return nil, fmt.Errorf("vault manager: %w", err)
	}
	return &Manager{cfg: cfg, metrics: cfg.Metrics, alarms: newAlarmQueue(), vaults: map[string]*Vault{}, leaving: map[string]*Vault{},
		index: newInterestIndex(), freed: make(chan struct{}), lock: lock, started: cfg.Clock.Now().UnixMilli()}, nil
}

func (m *Manager) now() time.Time { return m.cfg.Clock.Now() }

func (m *Manager) latest(s string) (float64, bool) { return m.cfg.Latest(s) }

// Start reads every vault file in the data directory once, to learn its
// next alarm and the signal thresholds it reacts to, and leaves it closed
// (hibernated) until something needs it. Alarms missed while the node was
// down fire once, now. Then it starts the alarm scheduler and the
// hibernation janitor.
func (m *Manager) Start(ctx context.Context) error {
	files, err := filepath.Glob(filepath.Join(m.cfg.Dir, "vaults", "*", "0x*.db"))
	if err != nil {
		return fmt.Errorf("scan vaults: %w", err)
	}
	began := time.Now()
	if err := m.scan(ctx, files); err != nil {
		return fmt.Errorf("start: %w", err)
	}
	m.cfg.Logger.Info().Int("vaults", len(files)).Dur("took", time.Since(began)).Msg("vault index built")
	actx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	m.wg.Add(2)
	go func() {
		defer m.wg.Done()
		m.alarms.run(actx, m.cfg.Clock, m.fireAlarm)
	}()
	go func() {
		defer m.wg.Done()
		m.janitor(actx)
	}()
	return nil
}

// scanWorkers is how many files the start-up scan opens at once. Opening a
// vault waits on the disk (its WAL file is created) more than on the CPU,
// so there are more workers than cores.
const scanWorkers = 16

// scan opens each file on a pool of workers, reports its alarm and leaves,
// and closes it again. No vault goroutine runs yet, so each worker is the
// only owner of the connection it opens.
func (m *Manager) scan(ctx context.Context, files []string) error {
	work := make(chan string)
	errc := make(chan error, 1)
	var wg sync.WaitGroup
	for i := 0; i < scanWorkers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for f := range work {
				if err := m.scanFile(ctx, f); err != nil {
					select {
					case errc <- err:
					default:
					}
				}
			}
		}()
	}
	for _, f := range files {
		work <- f
	}
	close(work)
	wg.Wait()
	select {
	case err := <-errc:
		return err
	default:
		return nil
	}
}

func (m *Manager) scanFile(ctx context.Context, f string) error {
	id := strings.TrimSuffix(filepath.Base(f), ".db")
	if !common.IsHexAddress(id) {
		return nil
	}
	v := newVault(m, common.HexToAddress(id))
	conn, err := openSnapshot(f)
	if err != nil {
		return fmt.Errorf("scan vault %s: %w", id, err)
	}
	if conn == nil {
		// A WAL left by a crash, or a file to migrate: the full open
		// recovers or migrates it.
		if err := v.openFile(ctx, false); err != nil {
			return err
		}
	} else {
		v.conn = conn
		if err := v.load(false); err != nil {
			v.closeFile()
			return fmt.Errorf("scan vault %s: %w", id, err)
		}
	}
	v.report()
	if err := v.conn.Close(); err != nil {
		return fmt.Errorf("close vault %s: %w", id, err)
	}
	v.conn = nil
	return nil
}

// ErrNoVault is returned by Vault when the vault does not exist and create
// is false.
var ErrNoVault = protocol.Errorf(protocol.CodeSessionUnknown, "no such vault on this node")

// Vault returns the running vault for addr, opening its file if needed.
// With create, a vault without a file is started "unborn": it creates its
// file only when a sign-in verifies.
func (m *Manager) Vault(ctx context.Context, addr common.Address, create bool) (*Vault, error) {
	return m.acquire(ctx, addr, create, false)
}

// acquire is Vault; with pin it also pins the vault (the caller unpins
// once its message is in the mailbox), so it cannot hibernate in between
// and strand the message.
func (m *Manager) acquire(ctx context.Context, addr common.Address, create, pin bool) (*Vault, error) {
	id := idOf(addr)
	m.mu.Lock()
	for {
		if m.closed {
			m.mu.Unlock()
			return nil, errClosed
		}
		v, ok := m.vaults[id]
		if ok && v.ended() {
			m.dropLocked(v) // ending; vaultEnded will not find it again
			ok = false
		}
		if !ok && m.leaving[id] != nil {
			// Its previous instance is still closing the file: two
			// connections on one file (without SQLite's locks, see
			// vaultVFS) would corrupt it. Its close frees a slot, which
			// wakes this wait.
			if err := m.waitFreedLocked(ctx); err != nil {
				return nil, err
			}
			continue
		}
		// At MaxOpen, close idle vaults and wait for a slot: a wake-up
		// (opening a hibernated vault, or a delivery to a dozing one)
		// waits rather than running the node out of file descriptors.
		// With nothing that can close, it goes over the limit.
		needsFile := !ok || (pin && v.asleep.Load() && !v.reserved)
		if !needsFile || m.filesLocked() < m.cfg.MaxOpen || !m.evictLocked(m.filesLocked()-m.cfg.MaxOpen+1) {
			if ok {
				if needsFile {
					// Its slot is taken now; rewake will not count it again.
					v.reserved = true
					m.waking++
					m.dozers--
					m.metrics.Dozing.Dec()
					m.filesGrewLocked()
				}
				if pin {
					v.pins.Add(1)
				}
				m.mu.Unlock()
				return v, nil
			}
			break
		}
		if err := m.waitFreedLocked(ctx); err != nil {
			return nil, err
		}
	}
	_, statErr := os.Stat(pathFor(m.cfg.Dir, id))
	exists := statErr == nil
	if !exists && !create {
		m.mu.Unlock()
		return nil, ErrNoVault
	}
	v := newVault(m, addr)
	m.vaults[id] = v
	m.filesGrewLocked()
	m.metrics.Open.Inc()
	if pin {
		v.pins.Add(1)
	}
	if exists {
		// The first message in the mailbox, so it runs before any other.
		v.mailbox <- letter{fn: func() {
			if err := v.openFile(context.Background(), false); err != nil {
				v.log.Error().Err(err).Msg("open vault")
				v.forget = true
				return
			}
			m.metrics.Activations.Inc()
			v.afterChange()
		}}
	}
	go v.run()
	m.mu.Unlock()
	if exists && !pin {
		// Wait for the open, so a broken file is reported here. A pinned
		// delivery does not wait: its message runs after the open (or is
		// dropped with the open's error logged), so the caller, often the
		// signal bus, can wake many vaults in parallel.
		if err := v.do(ctx, func() error { return nil }); err != nil {
			return nil, fmt.Errorf("open vault %s: %w", addr.Hex(), err)
		}
	}
	return v, nil
}

// waitFreedLocked releases m.mu until a slot frees or a vault leaves (or
// ctx ends, when it returns ctx's error with m.mu released), then takes
// m.mu again.
func (m *Manager) waitFreedLocked(ctx context.Context) error {
	freed := m.freed
	m.mu.Unlock()
	select {
	case <-freed:
	case <-ctx.Done():
		return ctx.Err()
	}
	m.mu.Lock()
	return nil
}

// wakeWaiters makes callers waiting for an open slot look again: a vault
// lost its last subscriber and can be evicted now. Without it they would
// wait for the janitor.
func (m *Manager) wakeWaiters() {
	m.mu.Lock()
	m.slotsChangedLocked()
	m.mu.Unlock()
}

// dropLocked removes v from the open vaults and wakes those waiting for a
// slot. m.mu is held.
func (m *Manager) dropLocked(v *Vault) {
	if m.vaults[v.id] != v {
		return
	}
	delete(m.vaults, v.id)
	if v.asleep.Load() && !v.reserved {
		m.dozers--
		m.metrics.Dozing.Dec()
	}
	if v.reserved {
		v.reserved = false
		m.waking--
	}
	if v.evicting.Swap(false) {
		m.evicting--
	}
	m.metrics.Open.Dec()
	m.slotsChangedLocked()
}

// mayDoze marks v as dozing unless a caller has pinned it (it is about to
// post; under mu, so acquire either sees the pin's vault awake or takes a
// file slot for waking it).
func (m *Manager) mayDoze(v *Vault) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.vaults[v.id] != v || v.pins.Load() > 0 || len(v.mailbox) > 0 {
		return false
	}
	v.asleep.Store(true)
	m.dozers++
	m.closing++ // until doze has closed the file (dozed)
	m.metrics.Dozing.Inc()
	m.metrics.Dozes.Inc()
	return true
}

// dozed frees the slot of a vault that mayDoze let doze, now that its file
// is closed.
func (m *Manager) dozed() {
	m.mu.Lock()
	m.closing--
	m.slotsChangedLocked()
	m.mu.Unlock()
}

// woke counts a dozing vault as holding its file again. Waking without a
// slot taken by acquire (a command on a bound socket) can take the node
// past MaxOpen files; then it asks others to close.
func (m *Manager) woke(v *Vault) {
	m.mu.Lock()
	defer m.mu.Unlock()
	v.asleep.Store(false)
	if m.vaults[v.id] != v {
		return
	}
	if v.reserved { // acquire counted it already
		v.reserved = false
		m.waking--
		// Evictable again: callers waiting for a slot may close it.
		m.slotsChangedLocked()
		return
	}
	m.dozers--
	m.metrics.Dozing.Dec()
	m.filesGrewLocked()
	if over := m.filesLocked() - m.cfg.MaxOpen; over > 0 {
		m.evictLocked(over)
	}
}

// filesLocked is how many vaults hold their file open (or are opening
// it). m.mu is held.
func (m *Manager) filesLocked() int { return len(m.vaults) - m.dozers + m.closing }

// filesGrewLocked records a vault file opening (or about to). m.mu is
// held.
func (m *Manager) filesGrewLocked() {
	n := m.filesLocked()
	m.peak = max(m.peak, n)
	m.metrics.FilesOpen.Set(float64(n))
}

// slotsChangedLocked records that files closed or became closable (or an
// eviction gave up), and wakes the callers waiting for a slot to look
// again. If the node is over MaxOpen (vaults woken by their own sockets
// can take it there), it asks for more evictions: the ones counted on
// before may have given up. m.mu is held.
func (m *Manager) slotsChangedLocked() {
	n := m.filesLocked()
	m.metrics.FilesOpen.Set(float64(n))
	if over := n - m.cfg.MaxOpen; over > 0 && !m.closed {
		m.evictLocked(over)
	}
	close(m.freed)
	m.freed = make(chan struct{})
}

// retire removes v from the open vaults if nothing can still reach it: no
// pin, nothing queued, no subscriber. It runs on v's goroutine.
func (m *Manager) retire(v *Vault) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	if v.pins.Load() > 0 || len(v.mailbox) > 0 || len(v.subs) > 0 || m.vaults[v.id] != v {
		return false
	}
	m.dropLocked(v)
	if v.conn != nil {
		// Its slot is free once shutdown has closed the file.
		v.closingSlot = true
		m.closing++
		m.leaving[v.id] = v
	}
	return true
}

// vaultEnded forgets a vault whose goroutine has ended.
func (m *Manager) vaultEnded(v *Vault) {
	m.mu.Lock()
	m.dropLocked(v)
	if v.closingSlot {
		v.closingSlot = false
		m.closing--
		if m.leaving[v.id] == v {
			delete(m.leaving, v.id)
		}
		m.slotsChangedLocked()
	}
	m.mu.Unlock()
	// Its alarm and its index entries stay: a hibernated vault is still
	// woken on time and by the signals it reacts to.
}

func (m *Manager) setAlarm(v *Vault, at int64) { m.alarms.set(v.id, at) }

func (m *Manager) fireAlarm(id string) {
	m.metrics.Alarms.Inc()
	m.deliver(context.Background(), id, func(v *Vault) {
		if err := v.handle(event{cause: "alarm", now: m.now()}); err != nil {
			v.log.Error().Err(err).Msg("alarm evaluation")
		}
		v.afterChange() // re-arm even when nothing changed
	})
}

// deliver runs fn on vault id, opening it first if it is hibernated.
func (m *Manager) deliver(ctx context.Context, id string, fn func(v *Vault)) bool {
	v, err := m.acquire(ctx, common.HexToAddress(id), false, true)
	if err != nil {
		m.cfg.Logger.Error().Err(err).Str("vault", id).Msg("wake vault")
		return false
	}
	defer v.pins.Add(-1)
	v.touch()
	return v.post(ctx, func() { fn(v) })
}

// Interested returns how many vaults (open or hibernated) have an active
// threshold trigger on signal.
func (m *Manager) Interested(signal string) int { return m.index.watchers(signal) }

// Signal delivers a signal value to the vaults with an active threshold it
// crosses, and to no other: a value that crosses nothing wakes no vault.
// Hibernated vaults are opened. It returns the number of vaults reached.
// It blocks only while a vault's mailbox is full or a vault is opening,
// and gives up on that vault when ctx ends.
func (m *Manager) Signal(ctx context.Context, name string, value float64) int {
	n := 0
	for _, id := range m.index.dispatch(name, value) {
		if m.deliver(ctx, id, func(v *Vault) { v.signal(name, value) }) {
			n++
			m.metrics.SignalDispatch.Inc()
		}
	}
	return n
}

// janitorEvery is the longest pause between two janitor sweeps, and
// janitorParallel how many files the janitor closes at once.
//
// Closing a file is a checkpoint and several syncs. The janitor used to
// find every vault idle since its last sweep (IdleAfter/2 ago) and ask all
// of them to close at once: a burst of hundreds of closes, each on its own
// goroutine, that held the processors while wake-ups waited (in the cold
// benchmark every activation over 5 ms fell within a few milliseconds of a
// sweep). Short sweeps and one close at a time spread that work out
// (`cold -vaults 2000`, alternated: p99 5.9-8.4 ms in seven runs with
// four at a time, 5.1-6.4 ms in four with one, 6.6-10.5 ms in seven
// before). Evictions at MaxOpen, which a wake-up waits for, are not
// paced, so a janitor that falls behind only leaves the least recently
// used files to them.
const (
	janitorEvery    = time.Second
	janitorParallel = 1
)

// janitor hibernates idle vaults and dozes idle watched ones,
// janitorParallel files at a time.
func (m *Manager) janitor(ctx context.Context) {
	every := min(m.cfg.IdleAfter/2, janitorEvery)
	slots := make(chan struct{}, janitorParallel)
	timer := m.cfg.Clock.NewTimer(every)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C():
		}
		cutoff := m.now().Add(-m.cfg.IdleAfter).UnixMilli()
		m.mu.Lock()
		var idle, drowsy []*Vault
		for _, v := range m.vaults {
			switch {
			case v.lastActive.Load() > cutoff:
			case v.subCount.Load() == 0:
				idle = append(idle, v)
			case !v.asleep.Load():
				drowsy = append(drowsy, v)
			}
		}
		m.mu.Unlock()
		for _, v := range idle {
			if !paced(ctx, slots, v, func() { v.hibernate(false) }) {
				return
			}
		}
		for _, v := range drowsy {
			if !paced(ctx, slots, v, func() { v.doze(false) }) {
				return
			}
		}
		timer.Reset(every)
	}
}

// slotWaitHook, when set by a test, runs when the janitor finds every
// slot taken and waits for one.
var slotWaitHook func()

// paced waits for one of slots, then has v run closeFn (a hibernate or a
// doze), and frees the slot once v's file is closed: when the letter has
// run, or when the goroutine it retired has ended (its file closes as it
// ends), or when v ended without running it. It reports false if ctx
// ended first.
func paced(ctx context.Context, slots chan struct{}, v *Vault, closeFn func()) bool {
	select {
	case slots <- struct{}{}:
	default:
		if slotWaitHook != nil {
			slotWaitHook()
		}
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return false
		}
	}
	go func() {
		defer func() { <-slots }()
		retiring := make(chan bool, 1)
		if !v.postNoFile(ctx, func() { closeFn(); retiring <- v.forget }) {
			return
		}
		select {
		case r := <-retiring:
			if !r {
				return
			}
		case <-v.done:
			return
		}
		select {
		case <-v.done:
		case <-ctx.Done():
		}
	}()
	return true
}

// evictLocked makes sure at least n slots are on their way: counting the
// evictions already queued, the files closing and the reserved wake-ups,
// it asks more of the least recently active vaults with an open file to
// close it (those without subscribers hibernate; if they are not enough,
// those with subscribers doze). It asks in batches of MaxOpen/32, so that a
// burst of wake-ups (a crossing reaching thousands of hibernated vaults)
// has many files closing in parallel instead of one close at a time, and
// scans the vaults once per batch. It reports whether any vault is closing
// or can close (so waiting for a slot makes sense). m.mu is held.
func (m *Manager) evictLocked(n int) bool {
	pending := m.evicting + m.waking + m.closing
	batch := max(1, m.cfg.MaxOpen/32)
	if pending >= n && pending >= (batch+1)/2 {
		return true
	}
	want := max(n, batch) - pending
	var idle, watched []*Vault
	for _, v := range m.vaults {
		switch {
		case v.asleep.Load() || v.evicting.Load():
		case v.subCount.Load() > 0:
			watched = append(watched, v)
		default:
			idle = append(idle, v)
		}
	}
	asked := 0
	ask := func(vs []*Vault, close func(v *Vault)) {
		if len(vs) > want-asked {
			sort.Slice(vs, func(i, j int) bool { return vs[i].lastActive.Load() < vs[j].lastActive.Load() })
			vs = vs[:want-asked]
		}
		for _, v := range vs {
			v.evicting.Store(true)
			m.evicting++
			m.metrics.Evictions.Inc()
			go func() {
				// Queued behind its pending work; it closes once that is done.
				if !v.postNoFile(context.Background(), func() { close(v) }) {
					m.evictionEnded(v)
				}
			}()
		}
		asked += len(vs)
	}
	ask(idle, func(v *Vault) { v.hibernate(true) })
	if asked < want {
		ask(watched, func(v *Vault) { v.doze(true) })
	}
	return pending+asked > 0
}

// evictionEnded records that v's queued eviction ran or gave up; callers
// waiting for a slot look again.
func (m *Manager) evictionEnded(v *Vault) {
	m.mu.Lock()
	if v.evicting.Swap(false) {
		m.evicting--
	}
	m.slotsChangedLocked()
	m.mu.Unlock()
}

// Close stops the scheduler and closes every vault after it finishes the
// work already in its mailbox. It is safe to call more than once.
func (m *Manager) Close() {
	m.mu.Lock()
	m.closed = true
	vs := make([]*Vault, 0, len(m.vaults)+len(m.leaving))
	for _, v := range m.vaults {
		vs = append(vs, v)
	}
	// Retired vaults still closing their file are waited for too: the
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
	var wg sync.WaitGroup
	for _, v := range vs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v.close()
		}()
	}
	wg.Wait()
	m.mu.Lock()
	if m.lock != nil {
		m.lock.Close()
		m.lock = nil
	}
	m.mu.Unlock()
	m.cfg.Logger.Info().Int("vaults", len(vs)).Msg("vaults closed")
}

// FilesOpen returns how many running vaults hold their file open (the
// others doze).
func (m *Manager) FilesOpen() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.filesLocked()
}

// OpenVaults returns the number of running vaults.
func (m *Manager) OpenVaults() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.vaults)
}

func idOf(a common.Address) string { return strings.ToLower(a.Hex()) }
