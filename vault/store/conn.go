package store

import (
	"context"
	"fmt"
	"net/url"
	"os"
	"path/filepath"
	"reflect"

	"modernc.org/libc"
	lib "modernc.org/sqlite/lib"
	"zombiezen.com/go/sqlite"
	"zombiezen.com/go/sqlite/sqlitemigration"
	"zombiezen.com/go/sqlite/sqlitex"
)

// A node keeps thousands of SQLite connections open, one per vault, and
// each one's fixed memory is multiplied by that count. These settings are
// the ones that measurably shrink it (see DECISIONS.md, "A vault's
// file").

func init() {
	// No lookaside buffers: SQLite's default gives every connection 40
	// slots of 1,200 bytes (48 KB) for small allocations; a vault's few
	// statements do not need them. This must run before SQLite
	// initializes, hence init; if something else initialized it first,
	// the call fails and connections simply keep the default.
	tls := libc.NewTLS()
	defer tls.Close()
	sqliteConfig(tls, lib.SQLITE_CONFIG_LOOKASIDE, int32(0), int32(0))
	// No up-front page cache block: SQLite gives every connection a bulk
	// allocation for 20 pages at open (here about 70 KB, since the cache
	// is capped at 64 KiB), big enough to be its own mapping that is
	// mapped at every activation and unmapped at every close. A vault
	// touches a handful of pages; they are allocated one by one instead.
	sqliteConfig(tls, lib.SQLITE_CONFIG_PAGECACHE, uintptr(0), int32(0), int32(0))
}

func sqliteConfig(tls *libc.TLS, op int32, args ...any) {
	va := libc.NewVaList(args...)
	if va != 0 {
		defer libc.Xfree(tls, va)
		lib.Xsqlite3_config(tls, op, va)
	}
}

// FilesPerVault is how many file descriptors an open vault holds: its
// database file and its WAL (no -shm file in exclusive locking mode).
const FilesPerVault = 2

// Open opens and prepares an existing vault file (a missing one is an
// error, and not created), migrating it forward if needed. Preparing it
// is never interrupted: a migration runs whole or not at all.
func Open(path string) (*sqlite.Conn, error) { return openConn(path, false) }

// openConn is Open; with create it creates a missing file (Create).
func openConn(path string, create bool) (*sqlite.Conn, error) {
	flags := sqlite.OpenReadWrite | sqlite.OpenNoMutex
	if create {
		flags |= sqlite.OpenCreate
	}
	if vaultVFS != "" {
		abs, err := filepath.Abs(path)
		if err != nil {
			return nil, err
		}
		u := url.URL{Scheme: "file", Path: abs, RawQuery: "vfs=" + vaultVFS}
		path, flags = u.String(), flags|sqlite.OpenURI
	}
	conn, err := sqlite.OpenConn(path, flags)
	if err != nil {
		return nil, err
	}
	if err := prepareConn(conn, create); err != nil {
		conn.Close()
		return nil, err
	}
	return conn, nil
}

// OpenSnapshot opens a vault file read-only as immutable, for the start-up
// scan: no lock, no WAL file created and deleted, which makes reading a
// cleanly closed vault several times cheaper. It returns nil (and no
// error) when that would not be safe or enough: a WAL is present (a crash
// left committed transactions in it; immutable would not see them), or the
// file is not at the latest migration.
func OpenSnapshot(path string) (*sqlite.Conn, error) {
	if fi, err := os.Stat(path + "-wal"); err == nil && fi.Size() > 0 {
		return nil, nil
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	u := url.URL{Scheme: "file", Path: abs, RawQuery: "immutable=1"}
	conn, err := sqlite.OpenConn(u.String(), sqlite.OpenReadOnly|sqlite.OpenURI|sqlite.OpenNoMutex)
	if err != nil {
		return nil, err
	}
	if current, err := schemaCurrent(conn); err != nil || !current {
		conn.Close()
		return nil, err
	}
	return conn, nil
}

// prepareConn sets up a freshly opened vault connection and migrates it.
// WAL mode is recorded in the file, so only a new file needs it set. An
// existing file is migrated only if it is a vault of an older schema: an
// empty or foreign file is damage, never turned into a fresh vault.
func prepareConn(conn *sqlite.Conn, create bool) error {
	// Exclusive: the vault's goroutine is the file's only user, ever. In
	// WAL mode this keeps the WAL index in memory instead of a -shm file
	// created, mapped and locked at every activation, and it takes the
	// file lock once instead of at every transaction.
	if err := sqlitex.ExecuteTransient(conn, "PRAGMA locking_mode = EXCLUSIVE;", nil); err != nil {
		return err
	}
	if create {
		if err := sqlitex.ExecuteTransient(conn, "PRAGMA journal_mode = WAL;", nil); err != nil {
			return err
		}
	}
	if err := keepWAL(conn); err != nil {
		return err
	}
	// FULL makes every committed transaction durable before it is
	// acknowledged, also in WAL mode.
	if err := sqlitex.ExecuteTransient(conn, "PRAGMA synchronous = FULL;", nil); err != nil {
		return err
	}
	// A vault is small and one of thousands open: a 64 KiB page cache per
	// connection instead of SQLite's 2 MiB default.
	if err := sqlitex.ExecuteTransient(conn, "PRAGMA cache_size = -64;", nil); err != nil {
		return err
	}
	app, version, err := schemaVersion(conn)
	switch {
	case err != nil:
		return err
	case app == appID && version == int64(len(schema.Migrations)):
		return nil
	case create && app == 0 && version == 0:
	case app != appID:
		return Damaged("not a vault file (application id %#x)", app)
	case version <= 0:
		return Damaged("a vault file without a schema (version %d)", version)
	case version > int64(len(schema.Migrations)):
		return fmt.Errorf("the vault file has schema version %d, newer than this node's %d: run a newer node", version, len(schema.Migrations))
	}
	return sqlitemigration.Migrate(context.Background(), conn, schema)
}

// walAutoCheckpoint is SQLite's default automatic checkpoint (pages of
// WAL), which vault connections keep.
const walAutoCheckpoint = 1000

// SetDurable switches a connection between FULL (every commit synced, the
// vault's normal mode) and OFF (no sync, and no automatic checkpoint), for
// records whose loss with the machine does no harm.
func SetDurable(conn *sqlite.Conn, on bool) error {
	sync, ckpt := "OFF", "0"
	if on {
		sync, ckpt = "FULL", fmt.Sprint(walAutoCheckpoint)
	}
	if err := exec(conn, "PRAGMA synchronous = "+sync+";"); err != nil {
		return err
	}
	return exec(conn, "PRAGMA wal_autocheckpoint = "+ckpt+";")
}

// Durable reports whether conn syncs every commit and checkpoints
// automatically: the vault's normal mode, which SetDurable(conn, false)
// leaves for one transaction.
func Durable(conn *sqlite.Conn) (bool, error) {
	sync, err := pragmaInt(conn, "synchronous")
	if err != nil {
		return false, err
	}
	ckpt, err := pragmaInt(conn, "wal_autocheckpoint")
	return sync == 2 && ckpt == walAutoCheckpoint, err
}

// keepWAL makes closing the connection truncate its WAL file to zero bytes
// (after the closing checkpoint) instead of deleting it. Otherwise every
// activation creates the WAL anew, which also costs an fsync of the
// directory at the first commit, and every close unlinks it; in profiles
// of cold activations that was a large share of the CPU (DECISIONS.md).
// An empty WAL still marks a cleanly closed vault (OpenSnapshot relies on
// that): SQLite only truncates once the checkpoint has completed and
// synced.
func keepWAL(conn *sqlite.Conn) error {
	if err := sqlitex.ExecuteTransient(conn, "PRAGMA journal_size_limit = 0;", nil); err != nil {
		return err
	}
	db, err := connHandle(conn)
	if err != nil {
		return err
	}
	tls := libc.NewTLS()
	defer tls.Close()
	name, err := libc.CString("main")
	if err != nil {
		return err
	}
	defer libc.Xfree(tls, name)
	// The argument is a pointer to a C int holding 1. A one-item va_list
	// is exactly that: C memory holding the value as a 64-bit word, whose
	// first four bytes are the int on the little-endian machines modernc
	// runs on.
	on := libc.NewVaList(int32(1))
	if on == 0 {
		return fmt.Errorf("keep the WAL file: out of memory")
	}
	defer libc.Xfree(tls, on)
	if rc := lib.Xsqlite3_file_control(tls, db, name, lib.SQLITE_FCNTL_PERSIST_WAL, on); rc != lib.SQLITE_OK {
		return fmt.Errorf("keep the WAL file: sqlite3_file_control returned %d", rc)
	}
	return nil
}

// connHandle returns conn's sqlite3 pointer. zombiezen.com/go/sqlite keeps
// it unexported and offers no file controls, so it is read by reflection;
// if a new zombiezen version renames the field, every vault open fails
// with this error (and so does every vault test), never silently.
func connHandle(conn *sqlite.Conn) (uintptr, error) {
	f := reflect.ValueOf(conn).Elem().FieldByName("conn")
	if !f.IsValid() || f.Kind() != reflect.Uintptr || f.Uint() == 0 {
		return 0, fmt.Errorf("zombiezen.com/go/sqlite.Conn has no sqlite3 handle field %q (its layout changed)", "conn")
	}
	return uintptr(f.Uint()), nil
}

// schemaCurrent reports whether the file already is a vault at the latest
// migration: two header reads instead of the migrator's transaction, on
// the path of every activation. (Two plain pragmas: one SELECT over the
// pragma table functions took three times as long to prepare and run.)
func schemaCurrent(conn *sqlite.Conn) (bool, error) {
	app, version, err := schemaVersion(conn)
	return app == appID && version == int64(len(schema.Migrations)), err
}

// schemaVersion reads a file's application id and schema version.
func schemaVersion(conn *sqlite.Conn) (app, version int64, err error) {
	if app, err = pragmaInt(conn, "application_id"); err != nil {
		return 0, 0, err
	}
	version, err = pragmaInt(conn, "user_version")
	return app, version, err
}

// pragmaInt reads a pragma whose value is one integer.
func pragmaInt(conn *sqlite.Conn, name string) (int64, error) {
	var v int64
	err := sqlitex.ExecuteTransient(conn, "PRAGMA "+name+";", &sqlitex.ExecOptions{
		ResultFunc: func(s *sqlite.Stmt) error { v = s.ColumnInt64(0); return nil }})
	return v, err
}

// ReleaseMemory gives back the page cache filled while loading the state,
// which the vault now holds in memory anyway.
func ReleaseMemory(conn *sqlite.Conn) {
	_ = sqlitex.ExecuteTransient(conn, "PRAGMA shrink_memory;", nil)
}
