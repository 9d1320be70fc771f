package vault

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
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

	MailboxSize     int // per vault (default 256)
	ChangeLogKeep   int // versions kept for resume (default 1000)
	EvaluationsKeep int // evaluation rows kept per vault (default 1000)
	SnapshotRecent  int // intents and evaluations in a snapshot (default 100)
	MaxTriggers     int // per vault (default 256)
}

func (c *Config) setDefaults() {
	def := func(p *int, v int) {
		if *p <= 0 {
			*p = v
		}
	}
	def(&c.MailboxSize, 256)
	def(&c.ChangeLogKeep, 1000)
	def(&c.EvaluationsKeep, 1000)
	def(&c.SnapshotRecent, 100)
	def(&c.MaxTriggers, 256)
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

// Manager runs the vaults of one node: it opens and creates them, routes
// signals to the vaults whose triggers watch them, and wakes vaults when
// their alarms come due. Create with NewManager, then Start; Close stops
// everything and closes every vault file.
type Manager struct {
	cfg     Config
	metrics *Metrics
	alarms  *alarmQueue

	mu     sync.Mutex
	vaults map[string]*Vault
	closed bool

	imu      sync.Mutex
	interest map[string]map[string]*Vault // signal -> vault id -> vault
	watching map[string]map[string]struct{}

	cancel context.CancelFunc
	wg     sync.WaitGroup
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
	return &Manager{cfg: cfg, metrics: cfg.Metrics, alarms: newAlarmQueue(), vaults: map[string]*Vault{},
		interest: map[string]map[string]*Vault{}, watching: map[string]map[string]struct{}{}}, nil
}

func (m *Manager) now() time.Time { return m.cfg.Clock.Now() }

func (m *Manager) latest(s string) (float64, bool) { return m.cfg.Latest(s) }

// Start opens every vault found in the data directory (so their alarms
// and signal interests are known; alarms missed while the node was down
// fire once now) and starts the alarm scheduler.
func (m *Manager) Start(ctx context.Context) error {
	files, err := filepath.Glob(filepath.Join(m.cfg.Dir, "vaults", "*", "0x*.db"))
	if err != nil {
		return fmt.Errorf("scan vaults: %w", err)
	}
	for _, f := range files {
		id := strings.TrimSuffix(filepath.Base(f), ".db")
		if !common.IsHexAddress(id) {
			continue
		}
		if _, err := m.Vault(ctx, common.HexToAddress(id), false); err != nil {
			return fmt.Errorf("start: %w", err)
		}
	}
	m.cfg.Logger.Info().Int("vaults", len(files)).Msg("vaults opened")
	actx, cancel := context.WithCancel(context.Background())
	m.cancel = cancel
	m.wg.Add(1)
	go func() {
		defer m.wg.Done()
		m.alarms.run(actx, m.cfg.Clock, m.fireAlarm)
	}()
	return nil
}

// ErrNoVault is returned by Vault when the vault does not exist and create
// is false.
var ErrNoVault = protocol.Errorf(protocol.CodeSessionUnknown, "no such vault on this node")

// Vault returns the running vault for addr, opening its file if needed.
// With create, a vault without a file is started "unborn": it creates its
// file only when a sign-in verifies.
func (m *Manager) Vault(ctx context.Context, addr common.Address, create bool) (*Vault, error) {
	id := idOf(addr)
	m.mu.Lock()
	if m.closed {
		m.mu.Unlock()
		return nil, errClosed
	}
	if v, ok := m.vaults[id]; ok && !v.ended() {
		m.mu.Unlock()
		return v, nil
	} else if ok {
		delete(m.vaults, id) // ending; vaultEnded will not find it again
		m.metrics.Open.Dec()
	}
	_, statErr := os.Stat(pathFor(m.cfg.Dir, id))
	exists := statErr == nil
	if !exists && !create {
		m.mu.Unlock()
		return nil, ErrNoVault
	}
	v := newVault(m, addr)
	m.vaults[id] = v
	m.metrics.Open.Inc()
	if exists {
		// The first message in the mailbox, so it runs before any other.
		v.mailbox <- func() {
			if err := v.openFile(ctx, false); err != nil {
				v.log.Error().Err(err).Msg("open vault")
				v.forget = true
				return
			}
			v.afterChange()
		}
	}
	go v.run()
	m.mu.Unlock()
	if exists {
		// Wait for the open, so a broken file is reported here.
		if err := v.do(ctx, func() error { return nil }); err != nil {
			return nil, fmt.Errorf("open vault %s: %w", addr.Hex(), err)
		}
	}
	return v, nil
}

// vaultEnded forgets a vault whose goroutine has ended.
func (m *Manager) vaultEnded(v *Vault) {
	m.mu.Lock()
	if m.vaults[v.id] == v {
		delete(m.vaults, v.id)
		m.metrics.Open.Dec()
	}
	m.mu.Unlock()
	m.alarms.set(v.id, 0)
	m.setInterest(v, nil)
}

func (m *Manager) setAlarm(v *Vault, at int64) { m.alarms.set(v.id, at) }

func (m *Manager) fireAlarm(id string) {
	m.mu.Lock()
	v := m.vaults[id]
	m.mu.Unlock()
	if v == nil {
		return
	}
	m.metrics.Alarms.Inc()
	v.post(context.Background(), func() {
		if err := v.handle(event{cause: "alarm", now: m.now()}); err != nil {
			v.log.Error().Err(err).Msg("alarm evaluation")
		}
		v.afterChange() // re-arm even when nothing changed
	})
}

// setInterest records which signals v's active triggers watch.
func (m *Manager) setInterest(v *Vault, signals map[string]struct{}) {
	m.imu.Lock()
	defer m.imu.Unlock()
	for s := range m.watching[v.id] {
		if _, keep := signals[s]; !keep {
			delete(m.interest[s], v.id)
			if len(m.interest[s]) == 0 {
				delete(m.interest, s)
			}
		}
	}
	for s := range signals {
		if m.interest[s] == nil {
			m.interest[s] = map[string]*Vault{}
		}
		m.interest[s][v.id] = v
	}
	if len(signals) == 0 {
		delete(m.watching, v.id)
	} else {
		m.watching[v.id] = signals
	}
}

// Interested returns how many vaults have an active trigger on signal.
func (m *Manager) Interested(signal string) int {
	m.imu.Lock()
	defer m.imu.Unlock()
	return len(m.interest[signal])
}

// Signal delivers a signal value to every vault with an active trigger on
// it, and to no other. It queues the work and returns without waiting for
// the evaluations; it blocks only while a vault's mailbox is full, and
// gives up on that vault when ctx ends.
func (m *Manager) Signal(ctx context.Context, name string, value float64) int {
	m.imu.Lock()
	targets := make([]*Vault, 0, len(m.interest[name]))
	for _, v := range m.interest[name] {
		targets = append(targets, v)
	}
	m.imu.Unlock()
	for _, v := range targets {
		v := v
		ok := v.post(ctx, func() {
			if err := v.handle(event{cause: "signal:" + name, signal: name, value: value, hasValue: true, now: m.now()}); err != nil {
				v.log.Error().Err(err).Str("signal", name).Msg("signal evaluation")
			}
		})
		if ok {
			m.metrics.SignalDispatch.Inc()
		}
	}
	return len(targets)
}

// Close stops the scheduler and closes every vault after it finishes the
// work already in its mailbox. It is safe to call more than once.
func (m *Manager) Close() {
	m.mu.Lock()
	m.closed = true
	vs := make([]*Vault, 0, len(m.vaults))
	for _, v := range m.vaults {
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
	m.cfg.Logger.Info().Int("vaults", len(vs)).Msg("vaults closed")
}

// OpenVaults returns the number of running vaults.
func (m *Manager) OpenVaults() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.vaults)
}

func idOf(a common.Address) string { return strings.ToLower(a.Hex()) }
