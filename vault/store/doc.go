// Package store is a vault's SQLite file: opening, creating and migrating
// it, its schema, its transactions and change log, and every row it holds.
// Nothing else in the node writes SQL. Every function takes the vault's
// connection, and only the vault's goroutine holds that (the package keeps
// no state of its own but SQLite's process-wide settings).
//
// Files, from the ground up:
//   - sql.go: running a statement; how often the logs are trimmed.
//   - errors.go: sorting a file's errors (damaged, full, interrupted).
//   - schema.go: the append-only list of migrations.
//   - lock_unix.go, lock_other.go: the VFS vault files use and the data
//     directory's lock that stands in for SQLite's own.
//   - conn.go: opening a vault file, set up for being one of thousands
//     open; the immutable snapshot the start-up scan reads.
//   - create.go: making a vault's file whole or not at all.
//   - integrity.go: SQLite's quick_check over a vault file.
//   - wal.go: reading a write-ahead log a crash left, to tell a transaction
//     cut short from damage that would drop acknowledged ones.
//   - session.go: recording committed changes as changesets, snapshots of
//     the whole file, and applying changesets (the backup).
//   - tx.go: one state transition's changes and effects, savepoints, and
//     the group commit's transaction.
//   - log.go: the change log of versions a dashboard resumes from.
//   - head.go: the vault's own row (owner, version, epoch, move mark,
//     next transaction nonce).
//   - keys.go: the sealed keys' rows.
//   - triggers.go, intents.go, evaluations.go, sessions.go, grants.go, alerts.go:
//     the rows of each.
package store
