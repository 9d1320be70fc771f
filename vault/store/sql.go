package store

import (
	"zombiezen.com/go/sqlite"
	"zombiezen.com/go/sqlite/sqlitex"
)

// exec runs one statement with args (cached by the connection).
func exec(conn *sqlite.Conn, query string, args ...any) error {
	return sqlitex.Execute(conn, query, &sqlitex.ExecOptions{Args: args})
}

// each runs query with args and calls fn for every row.
func each(conn *sqlite.Conn, query string, fn func(s *sqlite.Stmt) error, args ...any) error {
	return sqlitex.Execute(conn, query, &sqlitex.ExecOptions{Args: args, ResultFunc: fn})
}

// exists reports whether query with args returns a row.
func exists(conn *sqlite.Conn, query string, args ...any) (bool, error) {
	found := false
	err := each(conn, query, func(*sqlite.Stmt) error { found = true; return nil }, args...)
	return found, err
}

func columnBytes(s *sqlite.Stmt, col int) []byte {
	b := make([]byte, s.ColumnLen(col))
	s.ColumnBytes(col, b)
	return b
}

// TrimEvery is how often the change log and the evaluation log are
// trimmed: at every TrimEvery-th row, not at each, so each holds between
// its keep and keep+TrimEvery-1 rows and a firing's transaction runs one
// statement less.
const TrimEvery = 32
