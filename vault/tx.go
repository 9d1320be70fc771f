package vault

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"zombiezen.com/go/sqlite"
	"zombiezen.com/go/sqlite/sqlitex"

	"github.com/spells-dev/spells/protocol"
)

// A vault's transactions: every state change is one, with its version
// bump and its change-log row.

// tx collects the changes of one state transition: the rows are written
// inside the SQL transaction, the in-memory updates run after commit.
type tx struct {
	now      time.Time
	changes  []protocol.Change
	onCommit []func()
}

func (t *tx) put(kind, id string, data any) error {
	b, err := json.Marshal(data)
	if err != nil {
		return fmt.Errorf("encode %s %s: %w", kind, id, err)
	}
	t.changes = append(t.changes, protocol.Change{Kind: kind, Op: protocol.ChangePut, ID: id, Data: b})
	return nil
}

func (t *tx) del(kind, id string) {
	t.changes = append(t.changes, protocol.Change{Kind: kind, Op: protocol.ChangeDelete, ID: id})
}

func (t *tx) then(fn func()) { t.onCommit = append(t.onCommit, fn) }

// isolate runs fn in a savepoint of the open transaction. If fn fails, what
// it wrote is rolled back alone and the changes and commit effects it
// recorded on t are dropped, so the rest of the transaction still commits.
func (t *tx) isolate(conn *sqlite.Conn, fn func() error) (err error) {
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

// write runs fn in one immediate transaction. If fn recorded changes, the
// version is bumped and the change log appended in the same transaction.
// After commit the in-memory updates run and the diff is pushed to every
// subscriber. It returns the version the transaction produced (the
// vault's version if it changed nothing), before anything that runs after
// it (afterChange may evaluate a signal and commit the next). On error
// nothing is written and memory is untouched.
func (v *Vault) write(fn func(t *tx) error) (uint64, error) {
	if v.conn == nil {
		return 0, errors.New("vault has no file")
	}
	if v.move.to != "" {
		// The fence of a move: this copy is being shipped, or is the
		// tombstone another node's copy replaced.
		return 0, errMoving
	}
	t := &tx{now: v.m.now()}
	if err := v.inTx(func() error {
		if err := fn(t); err != nil {
			return err
		}
		return v.appendLog(t)
	}); err != nil {
		return 0, err
	}
	for _, f := range t.onCommit {
		f()
	}
	if len(t.changes) > 0 {
		v.version++
		frame := v.diffFrame(v.version, t.now.UnixMilli(), t.changes)
		v.afterCommit(func(failed error) {
			if failed == nil {
				v.broadcast(frame)
			}
		})
		v.m.metrics.Versions.Inc()
	}
	version := v.version
	v.afterChange()
	return version, nil
}

// writeVolatile runs fn in a transaction whose commit does not wait for
// the disk, for records whose loss with the machine (power, kernel) does
// no harm: the used resume nonces (see checkNonce). A durable commit is two
// fsyncs (the WAL header's, as the first commit after the WAL was emptied,
// and the commit's). The next durable commit, or the checkpoint that
// closes the file, syncs it with the rest. No checkpoint may run while
// syncing is off (it would copy into the database pages of a WAL not yet
// on disk), so the automatic one is off for that transaction too. Not for
// use inside a group commit (v.batch).
func (v *Vault) writeVolatile(fn func() error) error {
	if err := setDurable(v.conn, false); err != nil {
		return v.restoreDurable(err)
	}
	err := v.inTx(fn)
	if rerr := v.restoreDurable(nil); rerr != nil {
		return errors.Join(err, rerr)
	}
	return err
}

// restoreDurable turns syncing back on after writeVolatile. If that fails,
// the connection's durability is unknown: the vault ends (its subscribers
// reconnect), and its next use opens the file afresh.
func (v *Vault) restoreDurable(cause error) error {
	if err := setDurable(v.conn, true); err != nil {
		v.log.Error().Err(err).Msg("turn syncing back on; closing the vault")
		v.end(errUnavailable)
		return errors.Join(cause, err)
	}
	return cause
}

func (v *Vault) inTx(fn func() error) (err error) {
	if v.batch != nil {
		// Inside a group commit: a savepoint, so that a failing command
		// rolls back alone and the others still commit.
		release := sqlitex.Save(v.conn)
		defer release(&err)
		return fn()
	}
	end, err := sqlitex.ImmediateTransaction(v.conn)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer end(&err)
	return fn()
}

const trimEvery = 32

func (v *Vault) appendLog(t *tx) error {
	if len(t.changes) == 0 {
		return nil
	}
	next := v.version + 1
	b, err := json.Marshal(t.changes)
	if err != nil {
		return fmt.Errorf("encode changes: %w", err)
	}
	if err := sqlitex.Execute(v.conn, "INSERT INTO changes (version, at, changes) VALUES (?, ?, ?);",
		&sqlitex.ExecOptions{Args: []any{int64(next), t.now.UnixMilli(), string(b)}}); err != nil {
		return fmt.Errorf("append change log: %w", err)
	}
	if err := sqlitex.Execute(v.conn, "UPDATE vault SET version = ? WHERE id = 1;", &sqlitex.ExecOptions{Args: []any{int64(next)}}); err != nil {
		return fmt.Errorf("bump version: %w", err)
	}
	// Trimmed every trimEvery versions, not at each: the log holds between
	// ChangeLogKeep and ChangeLogKeep+trimEvery-1 versions.
	if next%trimEvery != 0 {
		return nil
	}
	keep := int64(v.m.cfg.ChangeLogKeep)
	if err := sqlitex.Execute(v.conn, "DELETE FROM changes WHERE version <= ?;", &sqlitex.ExecOptions{Args: []any{int64(next) - keep}}); err != nil {
		return fmt.Errorf("trim change log: %w", err)
	}
	return nil
}
