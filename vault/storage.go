package vault

import (
	"os"
	"path/filepath"
	"time"
)

// A full disk is storage_full to the vault's caller, and marks the node
// not ready until the janitor's probe finds room again.

const (
	storageProbeEvery = time.Second
	storageProbeSize  = 256 << 10
)

// full records that a write found the disk full.
func (s *storageState) full(m *Manager, what string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.isFull {
		return
	}
	s.isFull, s.since = true, m.now()
	m.diskFull.Store(true)
	m.metrics.StorageFull.Set(1)
	m.cfg.Logger.Error().Err(err).Str("during", what).Msg("the disk is full: writes are refused with storage_full and the node reports not ready until there is room")
}

// DiskFull records that a write outside the vaults (the node's start)
// found the disk full: the same state as a vault's, left the same way.
func (m *Manager) DiskFull(what string, err error) { m.storage.full(m, what, err) }

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
	now := m.now()
	s.mu.Lock()
	if !s.isFull || now.Sub(s.probed) < storageProbeEvery {
		s.mu.Unlock()
		return
	}
	s.probed = now
	s.mu.Unlock()
	p := filepath.Join(m.cfg.Dir, ".space-probe")
	err := writeProbe(p)
	os.Remove(p)
	if err != nil {
		return
	}
	s.mu.Lock()
	s.isFull = false
	m.diskFull.Store(false)
	since := s.since
	s.mu.Unlock()
	m.metrics.StorageFull.Set(0)
	m.cfg.Logger.Info().Dur("after", m.now().Sub(since)).Msg("the disk has room again")
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
