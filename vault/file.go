package vault

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/spells-dev/spells/internal/atomicfile"

	"github.com/ethereum/go-ethereum/common"
	"zombiezen.com/go/sqlite"
	"zombiezen.com/go/sqlite/sqlitex"
)

// A vault's own file work (creating, migrating, loading, committing) is
// never cancelled by the client that asked for it: it runs to completion
// or rolls back whole, on the vault's goroutine, whatever happens to the
// socket.

// createFault, when set by a test, runs between the temporary file's
// completion and its rename; an error fails the creation there.
var createFault func(tmp string) error

// newSuffix marks a vault file being created (createFile); the start-up
// scan removes what a creation that did not finish left.
const newSuffix = ".new"

// openFile opens the vault's file, migrating it forward if needed, and
// loads its state into memory.
func (v *Vault) openFile() error {
	conn, err := openConn(v.path(), false)
	if err != nil {
		return fmt.Errorf("open vault %s: %w", v.id, err)
	}
	v.conn = conn
	if err := v.load(); err != nil {
		conn.Close()
		v.conn = nil
		return fmt.Errorf("open vault %s: %w", v.id, err)
	}
	releaseMemory(conn)
	return nil
}

// createFile makes the vault's file for its first sign-in: it is built
// whole under a temporary name (schema, vault row, synced), then renamed
// into place and its folder synced. So the file appears whole, with its
// row, or not at all, whatever happens to the process or the disk meanwhile
// (a full disk or a crash leaves only the temporary file, which is
// removed).
func (v *Vault) createFile() (err error) {
	p := v.path()
	tmp := p + newSuffix
	removeTemp := func() {
		for _, f := range []string{tmp, tmp + "-wal", tmp + "-journal"} {
			os.Remove(f)
		}
	}
	defer func() {
		if err != nil {
			removeTemp()
			err = fmt.Errorf("create vault %s: %w", v.id, err)
		}
	}()
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return err
	}
	removeTemp()
	conn, err := openConn(tmp, true)
	if err != nil {
		return err
	}
	err = sqlitex.Execute(conn, "INSERT INTO vault (id, address, owner, version, created_at) VALUES (1, ?, ?, 0, ?);",
		&sqlitex.ExecOptions{Args: []any{v.addr.Hex(), v.addr.Hex(), v.m.now().UnixMilli()}})
	if err == nil {
		err = v.createKeys(conn)
	}
	// The closing checkpoint copies everything into the database file and
	// syncs it (synchronous=FULL), then empties the WAL.
	if cerr := conn.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := os.Remove(tmp + "-wal"); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return err
	}
	if createFault != nil {
		if err := createFault(tmp); err != nil {
			return err
		}
	}
	if err := os.Rename(tmp, p); err != nil {
		return err
	}
	return atomicfile.SyncDir(filepath.Dir(p))
}

// load reads the vault's state into memory.
func (v *Vault) load() error {
	found := false
	err := sqlitex.ExecuteTransient(v.conn, "SELECT owner, version, epoch, move_to, move_epoch, moved FROM vault WHERE id = 1;", &sqlitex.ExecOptions{
		ResultFunc: func(s *sqlite.Stmt) error {
			found = true
			v.owner = common.HexToAddress(s.ColumnText(0))
			v.version = uint64(s.ColumnInt64(1))
			v.epoch = uint64(s.ColumnInt64(2))
			v.move = moveMark{to: s.ColumnText(3), epoch: uint64(s.ColumnInt64(4)), done: s.ColumnInt64(5) != 0}
			return nil
		},
	})
	if err != nil {
		return err
	}
	if !found {
		return damaged("the file has no vault row")
	}
	if err := v.loadKeys(); err != nil {
		return err
	}
	if v.triggers, err = loadTriggers(v.conn); err != nil {
		return err
	}
	sessions, err := loadSessions(v.conn, v.m.now())
	if err != nil {
		return err
	}
	for _, s := range sessions {
		v.addSession(s)
	}
	v.born = true
	return nil
}
