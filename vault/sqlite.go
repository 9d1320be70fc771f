package vault

import (
	"context"

	"modernc.org/libc"
	lib "modernc.org/sqlite/lib"
	"zombiezen.com/go/sqlite"
	"zombiezen.com/go/sqlite/sqlitemigration"
	"zombiezen.com/go/sqlite/sqlitex"
)

// A node keeps thousands of SQLite connections open, one per vault, and
// each one's fixed memory is multiplied by that count. These settings are
// the ones that measurably shrink it (see BENCHMARKS.md, "memory per
// vault").

func init() {
	// No lookaside buffers: SQLite's default gives every connection 40
	// slots of 1,200 bytes (48 KB) for small allocations; a vault's few
	// statements do not need them. This must run before SQLite
	// initializes, hence init; if something else initialized it first,
	// the call fails and connections simply keep the default.
	tls := libc.NewTLS()
	defer tls.Close()
	va := libc.NewVaList(int32(0), int32(0))
	if va != 0 {
		defer libc.Xfree(tls, va)
		lib.Xsqlite3_config(tls, lib.SQLITE_CONFIG_LOOKASIDE, va)
	}
}

// prepareConn sets up a freshly opened vault connection and migrates it.
func prepareConn(ctx context.Context, conn *sqlite.Conn) error {
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
	return sqlitemigration.Migrate(ctx, conn, schema)
}

// releaseMemory gives back the page cache filled while loading the state,
// which the vault now holds in memory anyway.
func releaseMemory(conn *sqlite.Conn) {
	_ = sqlitex.ExecuteTransient(conn, "PRAGMA shrink_memory;", nil)
}
