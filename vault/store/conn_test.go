package store

import (
	"os"
	"path/filepath"
	"testing"

	"zombiezen.com/go/sqlite"
	"zombiezen.com/go/sqlite/sqlitex"
)

// Closing a vault file checkpoints its WAL and truncates it to zero bytes,
// keeping the file for the next activation; an empty WAL is what lets the
// start-up scan read the vault as an immutable snapshot.
func TestClosedVaultKeepsAnEmptyWAL(t *testing.T) {
	path := filepath.Join(t.TempDir(), "v.db")
	conn, err := openConn(path, true)
	if err != nil {
		t.Fatal(err)
	}
	if err := sqlitex.ExecuteTransient(conn, `INSERT INTO nonces (nonce, used_at) VALUES ('n1', 1);`, nil); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path + "-wal"); err != nil || fi.Size() == 0 {
		t.Fatalf("open vault after a commit: WAL %v, %v; want a non-empty WAL", fi, err)
	}
	if err := conn.Close(); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path + "-wal")
	if err != nil {
		t.Fatalf("after close the WAL is gone (%v); want it kept, empty", err)
	}
	if fi.Size() != 0 {
		t.Fatalf("after close the WAL holds %d bytes, want 0", fi.Size())
	}
	snap, err := OpenSnapshot(path)
	if err != nil || snap == nil {
		t.Fatalf("openSnapshot after a clean close = %v, %v; want a snapshot", snap, err)
	}
	n := 0
	err = sqlitex.ExecuteTransient(snap, `SELECT count(*) FROM nonces;`, &sqlitex.ExecOptions{ResultFunc: func(s *sqlite.Stmt) error {
		n = s.ColumnInt(0)
		return nil
	}})
	snap.Close()
	if err != nil || n != 1 {
		t.Fatalf("the snapshot holds %d nonces (%v), want the 1 committed", n, err)
	}

	// Reopened (journal_mode is not set again on an existing file), the
	// vault is still in WAL mode and commits into the kept WAL.
	conn, err = openConn(path, false)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	mode := ""
	if err := sqlitex.ExecuteTransient(conn, `PRAGMA journal_mode;`, &sqlitex.ExecOptions{ResultFunc: func(s *sqlite.Stmt) error {
		mode = s.ColumnText(0)
		return nil
	}}); err != nil || mode != "wal" {
		t.Fatalf("reopened vault: journal_mode %q (%v), want wal", mode, err)
	}
	if err := sqlitex.ExecuteTransient(conn, `INSERT INTO nonces (nonce, used_at) VALUES ('n2', 2);`, nil); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path + "-wal"); err != nil || fi.Size() == 0 {
		t.Fatalf("reopened vault after a commit: WAL %v, %v; want the commit in the WAL", fi, err)
	}
}
