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

	"github.com/spells-dev/spells/vault/actor"
	"github.com/spells-dev/spells/vault/store"
)

// The start-up scan: every vault file is read once, by a pool of workers,
// to learn its next alarm and its threshold leaves, and closed again; the
// node starts with every vault hibernated. A file that is not a readable
// vault is quarantined; one that cannot be read for a reason that may pass
// is tried again by the janitor. Neither stops the node.

// scanWorkers is how many files the start-up scan reads at once. Opening a
// vault waits on the disk more than on the CPU, so there are more workers
// than cores.
const scanWorkers = 16

// scanDir learns the quarantined vaults, removes what interrupted
// creations left, and reads every vault file.
func (m *Manager) scanDir(ctx context.Context) error {
	if err := m.loadQuarantine(); err != nil {
		return err
	}
	m.removeLeftovers()
	files, err := filepath.Glob(filepath.Join(m.cfg.Dir, "vaults", "*", "0x*.db"))
	if err != nil {
		return fmt.Errorf("scan vaults: %w", err)
	}
	began := time.Now()
	work := make(chan string)
	var wg sync.WaitGroup
	for i := 0; i < scanWorkers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for f := range work {
				m.scanFile(f)
			}
		}()
	}
	for _, f := range files {
		work <- f
	}
	close(work)
	wg.Wait()
	m.scanIncoming() // after the files: a tombstone here stays under a received copy
	m.cfg.Logger.Info().Int("vaults", len(files)).Int("quarantined", m.Quarantined()).Int("unread", len(m.inPlace(unread))).
		Dur("took", time.Since(began)).Msg("vault index built")
	return nil
}

// removeLeftovers deletes the files of vault creations that never
// finished (a crash or a full disk while creating): a vault's file
// appears in vaults/ whole or not at all (createFile), so these never held
// a vault.
func (m *Manager) removeLeftovers() {
	left, _ := filepath.Glob(filepath.Join(m.cfg.Dir, "vaults", "*", "0x*"+store.NewSuffix+"*"))
	for _, f := range left {
		if err := os.Remove(f); err != nil {
			m.cfg.Logger.Warn().Err(err).Str("file", f).Msg("remove an unfinished vault creation")
			continue
		}
		m.cfg.Logger.Info().Str("file", f).Msg("removed the file of a vault creation that did not finish")
	}
}

// scanFile reads one file, reporting its alarm and leaves. No instance of
// any vault runs yet, so the worker is the file's only user.
func (m *Manager) scanFile(f string) {
	id := strings.TrimSuffix(filepath.Base(f), ".db")
	if !common.IsHexAddress(id) || id != strings.ToLower(id) {
		m.cfg.Logger.Warn().Str("file", f).Msg("not a vault file name; ignored")
		return
	}
	err := m.readFile(f, id)
	switch {
	case err == nil:
	case store.IsDamaged(err):
		m.quarantine(id, err)
	default:
		m.setPlace(id, spot{place: unread})
		m.cfg.Logger.Error().Err(err).Str("vault", id).Msg("could not read a vault file at start; it is tried again")
	}
}

func (m *Manager) readFile(f string, id string) error {
	fi, err := os.Lstat(f)
	if err != nil {
		return err
	}
	if !fi.Mode().IsRegular() {
		return store.Damaged("%s is not a regular file (%s)", f, fi.Mode().Type())
	}
	// A WAL a crash left is checked before SQLite replays it: one damaged
	// in the middle would open the vault at an older version, silently.
	if rep, err := store.CheckWAL(f + "-wal"); err != nil {
		return err
	} else if rep.Dropped > 0 {
		m.cfg.Logger.Warn().Str("vault", id).Str("wal", rep.String()).Msg("the vault's last transaction was cut short by a crash (never acknowledged); it is dropped")
	}
	conn, err := store.OpenSnapshot(f)
	if err == nil && conn == nil {
		// A WAL left by a crash, or a file to migrate: the full open
		// recovers or migrates it.
		conn, err = store.Open(f)
	}
	if err != nil {
		return err
	}
	s, err := actor.Summarize(conn, id, m.now())
	if cerr := conn.Close(); err == nil && cerr != nil {
		// What it holds is read, and stays in its WAL: the next open
		// checkpoints it again.
		m.cfg.Logger.Warn().Err(cerr).Str("vault", id).Msg("close vault file after the start-up scan")
	}
	if err != nil {
		return err
	}
	mv := s.Head.Move
	switch {
	case mv.Done:
		m.setPlace(id, spot{place: moved, node: mv.To})
		return nil
	case mv.To != "":
		m.setPlace(id, spot{place: left, node: mv.To, epoch: s.Head.Epoch})
		m.cfg.Logger.Warn().Str("vault", id).Str("to", mv.To).Msg("a move out of this node did not finish; the vault waits for the cluster's directory to settle it")
		return nil
	}
	m.alarms.Set(id, s.Next)
	m.index.set(id, s.Leaves)
	if s.Asleep != nil {
		m.mu.Lock()
		m.asleep[id] = s.Asleep
		m.mu.Unlock()
	}
	m.setPlace(id, spot{place: held, epoch: s.Head.Epoch})
	if s.PendingAlerts {
		m.mu.Lock()
		m.alertsAtStart = append(m.alertsAtStart, id)
		m.mu.Unlock()
	}
	if m.executor != nil && s.OpenIntents {
		m.mu.Lock()
		m.resumeAtStart = append(m.resumeAtStart, id)
		m.mu.Unlock()
	}
	return nil
}

// rescan opens the vaults the start-up scan could not read, each as an
// instance that then hibernates as usual (never beside one already
// running: acquire hands that one back).
func (m *Manager) rescan(ctx context.Context) {
	for _, id := range m.inPlace(unread) {
		_, err := m.Vault(ctx, common.HexToAddress(id))
		switch {
		case err == nil, ctx.Err() != nil:
		case errors.Is(err, ErrNoVault):
			m.setPlace(id, spot{place: nowhere})
		case errors.Is(err, actor.ErrQuarantined):
		default:
			m.cfg.Logger.Warn().Err(err).Str("vault", id).Msg("vault still cannot be read; it is tried again")
		}
	}
}
