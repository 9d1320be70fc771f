package backup

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/spells-dev/spells/vault/keys"
)

// Config configures a Shipper.
type Config struct {
	Bucket *Bucket
	KEK    *keys.KEK
	Node   string        // this node's id, in log object names
	Every  time.Duration // the most a committed change waits before it is shipped (default 1 s)
	// MaxBacklog bounds the bytes waiting while the store does not take
	// them (default 256 MiB); past it the oldest are dropped and their
	// vaults ship a whole file at their next change.
	MaxBacklog int
	// RebaseAfter is how many changes a vault ships before it ships a
	// whole file again (default 1000), so a restore replays at most that
	// many.
	RebaseAfter uint64
	// CheckEvery is how often the shipper checks that the bucket still
	// holds its backup key (default 1m): a store wiped or replaced gets
	// the key again and a whole file of every vault (OnWiped).
	CheckEvery time.Duration
	// OnWiped, if set, is told that the bucket lost this node's objects:
	// every vault must give its whole file again (the vaults that change
	// do so at their next change by themselves). It must not block.
	OnWiped func()
	Logger  zerolog.Logger
	Metrics *Metrics
}

// Shipper ships every vault's committed changes to the bucket: each flush
// (every Config.Every) is one log object holding the changes of every
// vault that changed since the flush before, so a node with many vaults
// costs one request per flush, and none when nothing changed. A vault's
// changes form a chain from a whole file (its base); a vault starts one
// when the shipper has none for it (its first change since this process
// started, a change dropped, or RebaseAfter reached). Start, then Close.
type Shipper struct {
	cfg  Config
	seal *sealer

	mu      sync.Mutex
	chains  map[string]*chain
	pending []pending
	bases   []pendingBase
	backlog int
	oldest  time.Time
	seq     uint64

	wake   chan struct{}
	cancel context.CancelFunc
	done   chan struct{}
}

type chain struct {
	id     string
	n      uint64
	broken bool // a change was dropped, or its base not shipped
}

type pending struct {
	e    Entry
	body []byte
}

type pendingBase struct {
	vault   string
	version uint64
	at      int64
	chain   string
	file    []byte
}

// Start opens the bucket's backup keys (making one if there is none) and
// starts the flushes.
func Start(ctx context.Context, cfg Config) (*Shipper, error) {
	if cfg.Every <= 0 {
		cfg.Every = time.Second
	}
	if cfg.MaxBacklog <= 0 {
		cfg.MaxBacklog = 256 << 20
	}
	if cfg.RebaseAfter == 0 {
		cfg.RebaseAfter = 1000
	}
	if cfg.CheckEvery <= 0 {
		cfg.CheckEvery = time.Minute
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics(nil)
	}
	s, err := loadSealer(ctx, cfg.Bucket, cfg.KEK, true)
	if err != nil {
		return nil, err
	}
	runCtx, cancel := context.WithCancel(context.Background())
	sh := &Shipper{cfg: cfg, seal: s, chains: map[string]*chain{}, wake: make(chan struct{}, 1), cancel: cancel, done: make(chan struct{})}
	go sh.run(runCtx)
	return sh, nil
}

// Changed takes a vault's changes since its last call (cs, a changeset),
// which leave it at version, committed by at. It reports whether the
// vault must ship its whole file (Base) instead: it has no chain the
// changes could extend, or its chain is long enough to start another.
func (s *Shipper) Changed(vault string, version uint64, at int64, cs []byte) (wantBase bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	c := s.chains[vault]
	if c == nil || c.broken {
		return true
	}
	c.n++
	s.add(pending{e: Entry{Vault: vault, Chain: c.id, N: c.n, Version: version, At: at}, body: cs})
	return c.n >= s.cfg.RebaseAfter
}

// Every is how often a vault gives its changes (Config.Every).
func (s *Shipper) Every() time.Duration { return s.cfg.Every }

// Forget drops vault's chain: its file was replaced, and its next change
// ships the whole file.
func (s *Shipper) Forget(vault string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.chains, vault)
}

// Base takes a vault's whole file at version: the start of a new chain.
func (s *Shipper) Base(vault string, version uint64, at int64, file []byte) {
	id := make([]byte, 8)
	_, _ = rand.Read(id)
	s.mu.Lock()
	defer s.mu.Unlock()
	c := &chain{id: hex.EncodeToString(id)}
	s.chains[vault] = c
	s.bases = append(s.bases, pendingBase{vault: vault, version: version, at: at, chain: c.id, file: file})
	s.grow(len(file))
	s.kick()
}

func (s *Shipper) add(p pending) {
	s.pending = append(s.pending, p)
	s.grow(len(p.body))
}

// grow counts n more bytes waiting, dropping the oldest changes past the
// bound (their chains break: the vault ships a base at its next change).
func (s *Shipper) grow(n int) {
	if s.backlog == 0 {
		s.oldest = time.Now()
	}
	s.backlog += n
	for s.backlog > s.cfg.MaxBacklog && len(s.pending) > 0 {
		p := s.pending[0]
		s.pending = s.pending[1:]
		s.backlog -= len(p.body)
		if c := s.chains[p.e.Vault]; c != nil && c.id == p.e.Chain {
			c.broken = true
		}
		s.cfg.Metrics.Dropped.Inc()
	}
	s.cfg.Metrics.Backlog.Set(float64(s.backlog))
}

func (s *Shipper) kick() {
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// Close ships what waits (for as long as ctx allows) and stops.
func (s *Shipper) Close(ctx context.Context) {
	s.cancel()
	<-s.done
	for !s.flush(ctx) {
		select {
		case <-ctx.Done():
			s.cfg.Logger.Warn().Int("backlog_bytes", s.Backlog()).Msg("backup: stopped with changes not shipped; the next start ships every vault's whole file")
			return
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func (s *Shipper) run(ctx context.Context) {
	defer close(s.done)
	t := time.NewTicker(s.cfg.Every)
	defer t.Stop()
	failing := false
	checked := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-s.wake:
			continue // a base is shipped with the next flush
		}
		if time.Since(checked) >= s.cfg.CheckEvery && !failing {
			checked = time.Now()
			s.checkKey(ctx)
		}
		ok := s.flush(ctx)
		if !ok && !failing {
			s.cfg.Logger.Warn().Int("backlog_bytes", s.Backlog()).Msg("backup: the object store does not take the changes; keeping them and trying again")
		}
		if ok && failing {
			s.cfg.Logger.Info().Msg("backup: the object store takes the changes again; caught up")
		}
		failing = !ok
	}
}

// OnWiped sets Config.OnWiped, for a caller that has what it calls only
// after the shipper started.
func (s *Shipper) OnWiped(f func()) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.cfg.OnWiped = f
}

// checkKey checks that the bucket still holds the backup key; one that
// lost it (wiped, or another store behind the same address) gets it back,
// every chain starts again from a whole file, and OnWiped is told so every
// vault gives its whole file.
func (s *Shipper) checkKey(ctx context.Context) {
	name := "keys/" + s.seal.id
	ok, err := s.cfg.Bucket.exists(ctx, name)
	if err != nil || ok {
		return // a store that does not answer is the flush's to report
	}
	if err := s.cfg.Bucket.put(ctx, name, s.seal.stored); err != nil {
		s.cfg.Logger.Error().Err(err).Msg("backup: the bucket lost this node's backup key and does not take it again")
		return
	}
	s.mu.Lock()
	s.chains = map[string]*chain{}
	s.mu.Unlock()
	s.cfg.Metrics.Wiped.Inc()
	s.cfg.Logger.Error().Msg("backup: the bucket lost this node's objects (wiped, or another store): its key is stored again and every vault ships its whole file again")
	s.mu.Lock()
	onWiped := s.cfg.OnWiped
	s.mu.Unlock()
	if onWiped != nil {
		onWiped()
	}
}

// Backlog is the bytes waiting to be shipped.
func (s *Shipper) Backlog() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.backlog
}

// flush ships the waiting bases, then the waiting changes as one log
// object; what the store does not take waits for the next flush. It
// reports whether everything was shipped.
func (s *Shipper) flush(ctx context.Context) bool {
	s.mu.Lock()
	bases, ps := s.bases, s.pending
	s.bases, s.pending = nil, nil
	s.mu.Unlock()
	var keep []pendingBase
	for _, b := range bases {
		name := baseName(b.vault, b.at, b.version, b.chain)
		if err := s.upload(ctx, "base", name, b.file); err != nil {
			keep = append(keep, b)
			continue
		}
		s.shipped(len(b.file))
	}
	ok := len(keep) == 0
	if len(ps) > 0 {
		// A chain whose base is not shipped yet waits with it.
		waiting := map[string]bool{}
		for _, b := range keep {
			waiting[b.chain] = true
		}
		var now, later []pending
		for _, p := range ps {
			if waiting[p.e.Chain] {
				later = append(later, p)
			} else {
				now = append(now, p)
			}
		}
		if len(now) > 0 {
			es := make([]Entry, len(now))
			bodies := make([][]byte, len(now))
			size := 0
			for i, p := range now {
				es[i], bodies[i] = p.e, p.body
				size += len(p.body)
			}
			s.mu.Lock()
			s.seq++
			seq := s.seq
			s.mu.Unlock()
			if err := s.upload(ctx, "log", logName(time.Now().UnixMilli(), s.cfg.Node, seq), encodeLog(s.cfg.Node, es, bodies)); err != nil {
				later = append(now, later...)
				ok = false
			} else {
				s.shipped(size)
			}
		}
		ps = later
	}
	if len(keep) > 0 || len(ps) > 0 {
		s.mu.Lock()
		s.bases = append(keep, s.bases...)
		s.pending = append(ps, s.pending...)
		s.mu.Unlock()
	}
	s.mu.Lock()
	if s.backlog > 0 {
		s.cfg.Metrics.Lag.Set(time.Since(s.oldest).Seconds())
	} else {
		s.cfg.Metrics.Lag.Set(0)
	}
	s.mu.Unlock()
	return ok
}

// shipped counts n bytes no longer waiting.
func (s *Shipper) shipped(n int) {
	s.mu.Lock()
	s.backlog -= n
	if s.backlog <= 0 {
		s.backlog = 0
	}
	s.oldest = time.Now()
	s.cfg.Metrics.Backlog.Set(float64(s.backlog))
	s.mu.Unlock()
}

func (s *Shipper) upload(ctx context.Context, kind, name string, plain []byte) error {
	sealed, err := s.seal.seal(name, plain)
	if err == nil {
		uctx, cancel := context.WithTimeout(ctx, 30*time.Second)
		err = s.cfg.Bucket.put(uctx, name, sealed)
		cancel()
	}
	if err != nil {
		s.cfg.Metrics.Uploads.WithLabelValues(kind, "error").Inc()
		return fmt.Errorf("upload %s: %w", name, err)
	}
	s.cfg.Metrics.Uploads.WithLabelValues(kind, "ok").Inc()
	s.cfg.Metrics.Bytes.Add(float64(len(sealed)))
	return nil
}
