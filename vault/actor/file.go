package actor

import (
	"context"
	"fmt"

	"zombiezen.com/go/sqlite"

	"github.com/spells-dev/spells/vault/store"
)

// A vault's own file work (creating, migrating, loading, committing) is
// never cancelled by the client that asked for it: it runs to completion
// or rolls back whole, on the vault's goroutine, whatever happens to the
// socket.

// openFile opens the vault's file, migrating it forward if needed, and
// loads its state into memory.
func (v *Vault) openFile() error {
	conn, err := store.Open(v.path())
	if err != nil {
		return fmt.Errorf("open vault %s: %w", v.id, err)
	}
	conn.SetInterrupt(v.cfg.Stop)
	v.conn = conn
	if err := v.load(); err != nil {
		conn.Close()
		v.conn = nil
		return fmt.Errorf("open vault %s: %w", v.id, err)
	}
	store.ReleaseMemory(conn)
	return v.startRecording()
}

// startRecording starts recording the open file's changes for the backup, before
// anything is written to it.
func (v *Vault) startRecording() error {
	if v.cfg.Backup == nil || v.rec != nil {
		return nil
	}
	rec, err := store.NewRecorder(v.conn)
	if err != nil {
		return fmt.Errorf("open vault %s: %w", v.id, err)
	}
	v.rec = rec
	return nil
}

// backupChanges gives the backup what the vault committed since it last
// did, or its whole file when the backup asks for it: once Backup.Every
// has passed since the first of those changes (the vault's alarm is set
// for then), or at once with force (the file closes). Generating a
// changeset reads every table's schema, so it is done once per interval,
// not per transaction. It runs between transactions.
func (v *Vault) backupChanges(force bool) {
	if v.rec == nil || v.conn == nil || v.batch != nil || !v.unshipped {
		return
	}
	now := v.now().UnixMilli()
	if !force {
		if v.backupDue == 0 {
			v.backupDue = now + v.cfg.Backup.Every().Milliseconds()
			v.dirty = true // its alarm is reported
			return
		}
		if now < v.backupDue {
			return
		}
	}
	v.backupDue, v.unshipped = 0, false
	cs, err := v.rec.Take()
	if err != nil {
		v.log.Error().Err(err).Msg("backup: take the vault's changes; shipping its whole file instead")
	} else if cs == nil {
		return
	}
	at := v.now().UnixMilli()
	if err == nil && !v.cfg.Backup.Changed(v.id, v.version, at, cs) {
		return
	}
	file, err := store.Snapshot(v.conn)
	if err != nil {
		v.log.Error().Err(err).Msg("backup: snapshot the vault's file")
		return
	}
	v.cfg.Backup.Base(v.id, v.version, at, file)
}

// Rebase gives the backup the vault's whole file now: the bucket lost
// what it held of it.
func (v *Vault) Rebase(ctx context.Context) error {
	return v.do(ctx, func() error {
		if v.cfg.Backup == nil || v.conn == nil {
			return nil
		}
		if v.rec != nil {
			if _, err := v.rec.Take(); err != nil { // in the whole file
				v.log.Warn().Err(err).Msg("backup: drop the vault's changes before its whole file")
			}
		}
		v.backupDue, v.unshipped = 0, false
		file, err := store.Snapshot(v.conn)
		if err != nil {
			return fmt.Errorf("backup: snapshot the vault's file: %w", err)
		}
		v.cfg.Backup.Base(v.id, v.version, v.now().UnixMilli(), file)
		return nil
	})
}

// stopRecording ends the backup's recording before the file closes.
func (v *Vault) stopRecording() {
	if v.rec != nil {
		v.rec.Close()
		v.rec = nil
	}
}

// createFile makes the vault's file for its first sign-in, whole or not at
// all (store.Create): its row, owned by its address, and its keys.
func (v *Vault) createFile() error {
	var fault func(string) error
	if h := v.hooks().CreateFault.Load(); h != nil {
		fault = *h
	}
	err := store.Create(v.path(), func(conn *sqlite.Conn) error {
		if err := store.InsertHead(conn, v.addr, v.now().UnixMilli()); err != nil {
			return err
		}
		return v.createKeys(conn)
	}, fault)
	if err != nil {
		return fmt.Errorf("create vault %s: %w", v.id, err)
	}
	return nil
}

// load reads the vault's state into memory.
func (v *Vault) load() error {
	h, err := store.ReadHead(v.conn)
	if err != nil {
		return err
	}
	v.owner, v.version, v.epoch, v.move = h.Owner, h.Version, h.Epoch, h.Move
	if err := v.loadKeys(); err != nil {
		return err
	}
	if v.triggers, err = loadTriggers(v.conn); err != nil {
		return err
	}
	sessions, err := store.LoadSessions(v.conn, v.now())
	if err != nil {
		return err
	}
	for _, s := range sessions {
		v.addSession(s)
	}
	v.born = true
	v.eventsSeen, v.dirty = nil, true // its event conditions ask for their logs (askNewEvents)
	return nil
}

// closeFile closes the vault's SQLite file if it is open, first writing
// the resume nonces used since the last write.
func (v *Vault) closeFile() {
	if v.conn == nil {
		return
	}
	v.flushNonces()
	v.backupChanges(true)
	v.stopRecording()
	if err := v.conn.Close(); err != nil {
		v.log.Error().Err(err).Msg("close vault file")
	}
	v.conn = nil
}
