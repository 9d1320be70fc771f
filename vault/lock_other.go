//go:build !unix

package vault

import "os"

// vaultVFS is SQLite's default here: it keeps its per-file locks, which
// also keep a second node off the files.
const vaultVFS = ""

// lockDir does nothing where flock is not available; see vaultVFS.
func lockDir(string) (*os.File, error) { return nil, nil }
