//go:build !unix

package store

import "os"

// vaultVFS is SQLite's default here: it keeps its per-file locks, which
// also keep a second node off the files.
const vaultVFS = ""

// LockDir does nothing where flock is not available; see vaultVFS.
func LockDir(string) (*os.File, error) { return nil, nil }
