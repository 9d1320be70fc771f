//go:build unix

package store

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// vaultVFS is the SQLite VFS vault files are opened with. One node owns its
// data directory (LockDir), and one vault goroutine owns each file, so
// SQLite's own per-file locks only cost: fcntl calls at every open and
// close, and two walks of a process-wide list of open files under a global
// mutex (linear in the files open, thousands here). "unix-none" skips them.
// WAL still works because every connection is in exclusive locking mode
// (its WAL index lives in the connection's memory).
const vaultVFS = "unix-none"

// LockDir takes an exclusive lock on dir/LOCK, held while the returned file
// stays open: a second node on the same data directory is refused instead
// of writing the same vault files.
func LockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(filepath.Join(dir, "LOCK"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		f.Close()
		if errors.Is(err, syscall.EWOULDBLOCK) {
			return nil, fmt.Errorf("data directory %s is in use by another node", dir)
		}
		return nil, fmt.Errorf("lock data directory %s: %w", dir, err)
	}
	return f, nil
}
