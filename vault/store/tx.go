package store

import (
	"encoding/json"
	"fmt"
	"time"

	"zombiezen.com/go/sqlite"
	"zombiezen.com/go/sqlite/sqlitex"

	"github.com/spells-dev/spells/protocol"
)

// Tx collects the changes of one state transition of a vault: its rows are
// written inside the SQL transaction, the changes become the version's
// change-log row and its diff, and the in-memory updates (Then) run after
// the commit.
type Tx struct {
	Now      time.Time
	changes  []protocol.Change
	onCommit []func()
}

// Put records that entity kind/id now holds data.
func (t *Tx) Put(kind, id string, data any) error {
	b, err := json.Marshal(data)
	if err != nil {
		return fmt.Errorf("encode %s %s: %w", kind, id, err)
	}
	t.changes = append(t.changes, protocol.Change{Kind: kind, Op: protocol.ChangePut, ID: id, Data: b})
	return nil
}

// Del records that entity kind/id is gone.
func (t *Tx) Del(kind, id string) {
	t.changes = append(t.changes, protocol.Change{Kind: kind, Op: protocol.ChangeDelete, ID: id})
}

// Then runs fn once the transaction has committed.
func (t *Tx) Then(fn func()) { t.onCommit = append(t.onCommit, fn) }

// Changes returns what the transaction changed, in order.
func (t *Tx) Changes() []protocol.Change { return t.changes }

// Committed runs what Then queued, in order.
func (t *Tx) Committed() {
	for _, f := range t.onCommit {
		f()
	}
}

// Isolate runs fn in a savepoint of the open transaction. If fn fails, what
// it wrote is rolled back alone and the changes and commit effects it
// recorded on t are dropped, so the rest of the transaction still commits.
func (t *Tx) Isolate(conn *sqlite.Conn, fn func() error) (err error) {
	changes, effects := len(t.changes), len(t.onCommit)
	release := sqlitex.Save(conn)
	defer func() {
		if err != nil {
			t.changes, t.onCommit = t.changes[:changes], t.onCommit[:effects]
		}
		release(&err)
	}()
	return fn()
}

// InTx runs fn in one immediate transaction, or, nested inside an open one
// (a group commit), in a savepoint of it, so that a failing fn rolls back
// alone and the others still commit.
func InTx(conn *sqlite.Conn, nested bool, fn func() error) (err error) {
	if nested {
		release := sqlitex.Save(conn)
		defer release(&err)
		return fn()
	}
	end, err := sqlitex.ImmediateTransaction(conn)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer end(&err)
	return fn()
}

// Begin opens a transaction that Commit or Rollback ends (a group commit,
// whose members each run nested in it).
func Begin(conn *sqlite.Conn) error { return sqlitex.ExecuteTransient(conn, "BEGIN IMMEDIATE;", nil) }

// Commit commits the transaction Begin opened.
func Commit(conn *sqlite.Conn) error { return sqlitex.ExecuteTransient(conn, "COMMIT;", nil) }

// Rollback rolls back the transaction Begin opened, if SQLite has not
// already (a failed COMMIT may have).
func Rollback(conn *sqlite.Conn) error {
	if conn.AutocommitEnabled() {
		return nil
	}
	return sqlitex.ExecuteTransient(conn, "ROLLBACK;", nil)
}
