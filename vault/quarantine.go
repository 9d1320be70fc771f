package vault

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"sync"
	"time"

	"github.com/spells-dev/spells/internal/atomicfile"
	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/vault/store"
)

// One vault can never take the node down. A vault file that cannot be read
// as a vault (damaged pages, a foreign or empty file, a directory in its
// place, no vault row) is quarantined: moved with its WAL to
// Dir/quarantine/<id>.<time>.db, logged, counted, reported by /readyz, and
// remembered, so that its owner is told (vault_quarantined) and no fresh,
// empty vault ever replaces it. The node keeps serving every other vault.
// An operator restores one by moving the file back to vaults/ and
// restarting the node. Errors that may pass (a full disk, a descriptor
// limit) are not damage: the vault is unavailable for now and tried again.

var (
	errQuarantined = protocol.Errorf(protocol.CodeVaultQuarantined,
		"this vault's file could not be read and was set aside; the node's operator can restore it (its log names the file)")
	errStorageFull = protocol.Errorf(protocol.CodeStorageFull,
		"the node's disk is full: nothing was written; retry later")
)

// fault turns an error from the vault's file into what a caller is told,
// and acts on it: a damaged file is quarantined (the instance ends), a
// full disk is reported to the manager (readiness), anything else is
// logged as an internal error. It runs on the goroutine.
func (v *Vault) fault(what string, err error) error {
	switch {
	case store.IsDamaged(err):
		v.quarantine(what, err)
		return errQuarantined
	case store.IsFull(err):
		v.m.storage.full(v.m, what, err)
		v.log.Warn().Err(err).Msg(what + ": the disk is full")
		return errStorageFull
	}
	v.log.Error().Err(err).Msg(what)
	return protocol.Errorf(protocol.CodeInternal, "internal error")
}

// quarantine sets the vault's damaged file aside and ends the instance;
// the manager remembers the vault as quarantined before the instance has
// ended, so no new one starts. It runs on the goroutine.
func (v *Vault) quarantine(what string, cause error) {
	v.end(errQuarantined)
	if v.conn != nil {
		// No closing writes (flushNonces, a checkpoint of a bad file).
		v.conn.Close()
		v.conn = nil
	}
	v.m.quarantine(v.id, fmt.Errorf("%s: %w", what, cause))
}

func (m *Manager) quarantineDir() string { return filepath.Join(m.cfg.Dir, "quarantine") }

// quarantine moves vault id's file (and its WAL) to the quarantine folder
// and remembers the vault as quarantined. If the move fails, the vault is
// still refused while the node runs, and the next start tries again. No
// instance of the vault may have the file open.
func (m *Manager) quarantine(id string, cause error) {
	src := pathFor(m.cfg.Dir, id)
	dst := filepath.Join(m.quarantineDir(), fmt.Sprintf("%s.%s.db", id, m.now().UTC().Format("20060102T150405.000Z")))
	moved := dst
	err := os.MkdirAll(m.quarantineDir(), 0o700)
	if err == nil {
		err = os.Rename(src, dst)
	}
	if err == nil {
		for _, suffix := range []string{"-wal", "-journal"} {
			if rerr := os.Rename(src+suffix, dst+suffix); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
				err = rerr
			}
		}
		_ = os.WriteFile(dst+".reason", []byte(cause.Error()+"\n"), 0o600)
		_ = atomicfile.SyncDir(filepath.Dir(src))
		_ = atomicfile.SyncDir(m.quarantineDir())
	}
	if err != nil {
		moved = src
		m.cfg.Logger.Error().Err(err).Str("vault", id).Msg("could not move the damaged vault file aside; it is refused until the node restarts")
	}
	m.forget(id)
	m.mu.Lock()
	m.quarantined[id] = moved
	n := len(m.quarantined)
	m.mu.Unlock()
	m.metrics.Quarantined.Set(float64(n))
	m.metrics.Quarantines.Inc()
	m.cfg.Logger.Error().Str("vault", id).Str("file", moved).AnErr("reason", cause).
		Msg("vault quarantined: its file cannot be read; every other vault keeps serving")
}

// loadQuarantine learns, at start, which vaults were quarantined before:
// those with a file in the quarantine folder and none in vaults/ (a file
// an operator moved back is read again).
func (m *Manager) loadQuarantine() error {
	ents, err := os.ReadDir(m.quarantineDir())
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read quarantine: %w", err)
	}
	for _, e := range ents {
		mm := quarantineFileRe.FindStringSubmatch(e.Name())
		if mm == nil {
			continue
		}
		if exists, _ := fileExists(pathFor(m.cfg.Dir, mm[1])); exists {
			continue
		}
		m.quarantined[mm[1]] = filepath.Join(m.quarantineDir(), e.Name())
	}
	m.metrics.Quarantined.Set(float64(len(m.quarantined)))
	if len(m.quarantined) > 0 {
		m.cfg.Logger.Warn().Int("vaults", len(m.quarantined)).Str("folder", m.quarantineDir()).
			Msg("quarantined vaults are refused until their files are restored")
	}
	return nil
}

// quarantineFileRe matches the files quarantine writes: <id>.<time>.db.
var quarantineFileRe = regexp.MustCompile(`^(0x[0-9a-f]{40})\.[0-9T.]+Z\.db$`)

// Quarantined returns how many vaults are quarantined on this node.
func (m *Manager) Quarantined() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.quarantined)
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

const (
	storageProbeEvery = time.Second
	storageProbeSize  = 256 << 10
)

func (s *storageState) full(m *Manager, what string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.isFull {
		return
	}
	s.isFull, s.since = true, time.Now()
	m.metrics.StorageFull.Set(1)
	m.cfg.Logger.Error().Err(err).Str("during", what).Msg("the disk is full: writes are refused with storage_full and the node reports not ready until there is room")
}

// StorageFull reports whether the last vault write found the disk full
// (and no probe has found room since).
func (m *Manager) StorageFull() bool {
	m.storage.mu.Lock()
	defer m.storage.mu.Unlock()
	return m.storage.isFull
}

// probeStorage checks, while the disk is marked full, whether it has room
// again.
func (m *Manager) probeStorage() {
	s := &m.storage
	s.mu.Lock()
	if !s.isFull || time.Since(s.probed) < storageProbeEvery {
		s.mu.Unlock()
		return
	}
	s.probed = time.Now()
	s.mu.Unlock()
	p := filepath.Join(m.cfg.Dir, ".space-probe")
	err := writeProbe(p)
	os.Remove(p)
	if err != nil {
		return
	}
	s.mu.Lock()
	s.isFull = false
	since := s.since
	s.mu.Unlock()
	m.metrics.StorageFull.Set(0)
	m.cfg.Logger.Info().Dur("after", time.Since(since)).Msg("the disk has room again")
}

func writeProbe(p string) error {
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(make([]byte, storageProbeSize))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}
