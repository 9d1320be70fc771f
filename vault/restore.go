package vault

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/ethereum/go-ethereum/common"

	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/vault/actor"
)

// Restores in place, as the host runs them: the copy is read from the
// backup (Config.Restore) into the data directory's restored/ off every
// vault's goroutine, then handed to the vault, which alone changes its
// file.

// restoreTimeout bounds reading one vault's copy from the backup.
const restoreTimeout = 10 * time.Minute

// Restore makes the triggers of the vault at addr those of the restored
// copy at path (dry: only tells what would change), for an operator; the
// vault pushes the restore frame to its dashboards too.
func (m *Manager) Restore(ctx context.Context, addr common.Address, path string, pt actor.RestorePoint, dry bool) (protocol.RestoreFrame, error) {
	v, err := m.Vault(ctx, addr)
	if err != nil {
		return protocol.RestoreFrame{}, err
	}
	return v.RestoreFrom(ctx, path, pt, dry)
}

// ownerRestore is actor.Config.Restore: it reads the copy the owner's
// command asks for and hands it to the vault.
func (m *Manager) ownerRestore(addr common.Address, a protocol.RestoreArgs) {
	m.wg.Add(1)
	go func() { // stopped by m.ctx, waited for by Close
		defer m.wg.Done()
		ctx, cancel := context.WithTimeout(m.ctx, restoreTimeout)
		defer cancel()
		id := actor.ID(addr)
		path := filepath.Join(m.cfg.Dir, "restored", fmt.Sprintf(".%s-%d.restore", id, time.Now().UnixNano()))
		defer os.Remove(path)
		err := os.MkdirAll(filepath.Dir(path), 0o700)
		var pt actor.RestorePoint
		if err == nil {
			pt, err = m.cfg.Restore(ctx, id, a, path)
		}
		v, verr := m.Vault(ctx, addr)
		if verr != nil {
			m.cfg.Logger.Warn().Err(verr).Str("vault", id).Msg("restore: the vault could not be reached to apply it")
			return
		}
		if err == nil {
			_, err = v.RestoreFrom(ctx, path, pt, a.Dry)
		}
		if err != nil {
			m.cfg.Logger.Warn().Err(err).Str("vault", id).Msg("restore asked by the owner did not run")
			v.RestoreFailed(ctx, a.Dry, err)
		}
	}()
}

// RebaseAll has every vault this node holds give the backup its whole
// file again (the bucket lost them), one vault at a time, opening the
// hibernated ones; it returns at once, the work runs on a goroutine Close
// waits for.
func (m *Manager) RebaseAll() {
	m.wg.Add(1)
	go func() { // stopped by m.ctx, waited for by Close
		defer m.wg.Done()
		began, done, failed := time.Now(), 0, 0
		for _, id := range m.inPlace(held) {
			if m.ctx.Err() != nil {
				return
			}
			v, err := m.Vault(m.ctx, common.HexToAddress(id))
			if err == nil {
				err = v.Rebase(m.ctx)
			}
			if err != nil {
				failed++
				m.cfg.Logger.Warn().Err(err).Str("vault", id).Msg("backup: a vault did not give its whole file again; it does at its next change")
				continue
			}
			done++
		}
		m.cfg.Logger.Info().Int("vaults", done).Int("failed", failed).Dur("took", time.Since(began)).Msg("backup: every vault gave its whole file again")
	}()
}
