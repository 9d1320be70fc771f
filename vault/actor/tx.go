package actor

import (
	"errors"

	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/vault/store"
)

// A vault's transactions: every state change is one, with its version
// bump and its change-log row, pushed to the subscribers once durable. A
// group commit (run.go) makes several commands durable with one commit.

// maxBatch bounds how many commands share one commit, so the first of
// them is not held back for long behind a steady stream.
const maxBatch = 128

// afterCommit runs fn once what was just written is durable: at once
// outside a group commit, else when the group commits (failed is nil) or
// fails to (failed is the error to report).
func (v *Vault) afterCommit(fn func(failed error)) {
	if v.batch == nil {
		fn(nil)
		return
	}
	v.batch.effects = append(v.batch.effects, fn)
}

// beginBatch opens a group commit.
func (v *Vault) beginBatch() error {
	if err := store.Begin(v.conn); err != nil {
		return err
	}
	v.batch = &batch{}
	return nil
}

// commitBatch commits the open group and then runs its effects. If the
// commit fails, memory is ahead of the file: the instance ends (the next
// use reopens the vault from what the file holds), its subscribers are
// told their view is void, and every caller of the group hears why.
func (v *Vault) commitBatch() {
	b := v.batch
	v.batch = nil
	var err error
	if h := v.hooks().CommitFault.Load(); h != nil {
		err = (*h)()
	}
	if err == nil {
		err = store.Commit(v.conn)
	}
	if err != nil {
		if rerr := store.Rollback(v.conn); rerr != nil {
			v.log.Error().Err(rerr).Msg("rollback group commit")
		}
		failed := v.fault("group commit failed; reloading the vault from its file", err)
		if protocol.AsError(failed).Code == protocol.CodeInternal {
			failed = errCommit
		}
		v.end(failed)
		for _, fn := range b.effects {
			fn(failed)
		}
		return
	}
	v.cfg.Metrics.GroupCommits.Observe(float64(b.commands))
	for _, fn := range b.effects {
		fn(nil)
	}
}

func (v *Vault) hooks() *Hooks {
	if v.cfg.Hooks == nil {
		return &noHooks
	}
	return v.cfg.Hooks
}

var noHooks Hooks

// write runs fn in one immediate transaction (a savepoint of an open group
// commit). If fn recorded changes, the version is bumped and the change log
// appended in the same transaction. After commit the in-memory updates run
// and the diff is pushed to every subscriber once durable. It returns the
// version the transaction produced (the vault's version if it changed
// nothing). On error nothing is written and memory is untouched.
func (v *Vault) write(fn func(t *store.Tx) error) (uint64, error) {
	if v.conn == nil {
		return 0, errors.New("vault has no file")
	}
	if v.move.To != "" {
		// The fence of a move: this copy is being shipped, or is the
		// tombstone another node's copy replaced.
		return 0, ErrMoving
	}
	t := &store.Tx{Now: v.now()}
	if err := v.inTx(func() error {
		if err := fn(t); err != nil {
			return err
		}
		if len(t.Changes()) == 0 {
			return nil
		}
		return store.AppendLog(v.conn, v.version+1, t.Now.UnixMilli(), t.Changes(), v.cfg.ChangeLogKeep)
	}); err != nil {
		return 0, err
	}
	t.Committed()
	v.dirty = true
	v.unshipped = v.rec != nil
	if len(t.Changes()) > 0 {
		v.version++
		frame := v.diffFrame(v.version, t.Now.UnixMilli(), t.Changes())
		v.afterCommit(func(failed error) {
			if failed == nil {
				v.broadcast(frame)
			}
		})
		v.cfg.Metrics.Versions.Inc()
	}
	return v.version, nil
}

// writeVolatile runs fn in a transaction whose commit does not wait for
// the disk, for records whose loss with the machine (power, kernel) does
// no harm: the used resume nonces (see nonces.go). A durable commit is two
// fsyncs (the WAL header's, as the first commit after the WAL was emptied,
// and the commit's). The next durable commit, or the checkpoint that
// closes the file, syncs it with the rest. No checkpoint may run while
// syncing is off (it would copy into the database pages of a WAL not yet
// on disk), so the automatic one is off for that transaction too. Not for
// use inside a group commit.
func (v *Vault) writeVolatile(fn func() error) error {
	if err := store.SetDurable(v.conn, false); err != nil {
		return v.restoreDurable(err)
	}
	err := v.inTx(fn)
	if err == nil && v.rec != nil {
		v.unshipped = true
	}
	if rerr := v.restoreDurable(nil); rerr != nil {
		return errors.Join(err, rerr)
	}
	return err
}

// restoreDurable turns syncing back on after writeVolatile. If that fails,
// the connection's durability is unknown: the vault ends (its subscribers
// reconnect), and its next use opens the file afresh.
func (v *Vault) restoreDurable(cause error) error {
	if err := store.SetDurable(v.conn, true); err != nil {
		v.log.Error().Err(err).Msg("turn syncing back on; closing the vault")
		v.end(ErrUnavailable)
		return errors.Join(cause, err)
	}
	return cause
}

// inTx runs fn in one transaction, or in a savepoint of the open group
// commit, so that a failing command rolls back alone.
func (v *Vault) inTx(fn func() error) error { return store.InTx(v.conn, v.batch != nil, fn) }
