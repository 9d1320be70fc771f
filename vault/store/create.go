package store

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"sync"

	"zombiezen.com/go/sqlite"

	"github.com/spells-dev/spells/internal/atomicfile"
)

// NewSuffix marks a vault file being created (Create); the node's start-up
// removes what a creation that did not finish left.
const NewSuffix = ".new"

// template is an empty vault file at the current schema, made once by the
// process: every creation starts from a copy of it instead of running the
// migrations again (a dozen statements, SQLite reading its whole schema
// again after each: more than half of a first sign-in's CPU). Without it
// (it could not be made) a creation migrates its own file.
var template struct {
	once sync.Once
	b    []byte
}

func schemaTemplate() []byte {
	template.once.Do(func() {
		dir, err := os.MkdirTemp("", "spells-schema-")
		if err != nil {
			return
		}
		defer os.RemoveAll(dir)
		p := filepath.Join(dir, "template.db")
		conn, err := openConn(p, true)
		if err != nil {
			return
		}
		if conn.Close() != nil {
			return
		}
		if b, err := os.ReadFile(p); err == nil {
			template.b = b
		}
	})
	return template.b
}

// Create makes the vault file at path: it is built whole under a temporary
// name (the schema, then what init writes, synced by the closing
// checkpoint), then renamed into place and its folder synced. So the file
// appears whole or not at all, whatever happens to the process or the disk
// meanwhile (a full disk or a crash leaves only the temporary file, which
// is removed). fault, a test's, runs between the temporary file's
// completion and its rename; an error from it fails the creation there.
func Create(path string, init func(conn *sqlite.Conn) error, fault func(tmp string) error) (err error) {
	tmp := path + NewSuffix
	removeTemp := func() {
		for _, f := range []string{tmp, tmp + "-wal", tmp + "-journal"} {
			os.Remove(f)
		}
	}
	defer func() {
		if err != nil {
			removeTemp()
		}
	}()
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	removeTemp()
	var conn *sqlite.Conn
	if t := schemaTemplate(); t != nil {
		// The schema comes whole from the template (its pages are synced
		// with the rest of the file by the closing checkpoint).
		if err := os.WriteFile(tmp, t, 0o600); err != nil {
			return err
		}
		conn, err = openConn(tmp, false)
	} else {
		conn, err = openConn(tmp, true)
	}
	if err != nil {
		return err
	}
	err = init(conn)
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
	if fault != nil {
		if err := fault(tmp); err != nil {
			return err
		}
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return atomicfile.SyncDir(filepath.Dir(path))
}
