package vault

import (
	"errors"

	"github.com/spells-dev/spells/vault/store"
)

// A vault's transactions: every state change is one, with its version
// bump and its change-log row.

// write runs fn in one immediate transaction. If fn recorded changes, the
// version is bumped and the change log appended in the same transaction.
// After commit the in-memory updates run and the diff is pushed to every
// subscriber. It returns the version the transaction produced (the
// vault's version if it changed nothing), before anything that runs after
// it (afterChange may evaluate a signal and commit the next). On error
// nothing is written and memory is untouched.
func (v *Vault) write(fn func(t *store.Tx) error) (uint64, error) {
	if v.conn == nil {
		return 0, errors.New("vault has no file")
	}
	if v.move.To != "" {
		// The fence of a move: this copy is being shipped, or is the
		// tombstone another node's copy replaced.
		return 0, errMoving
	}
	t := &store.Tx{Now: v.m.now()}
	if err := v.inTx(func() error {
		if err := fn(t); err != nil {
			return err
		}
		if len(t.Changes()) == 0 {
			return nil
		}
		return store.AppendLog(v.conn, v.version+1, t.Now.UnixMilli(), t.Changes(), v.m.cfg.ChangeLogKeep)
	}); err != nil {
		return 0, err
	}
	t.Committed()
	if len(t.Changes()) > 0 {
		v.version++
		frame := v.diffFrame(v.version, t.Now.UnixMilli(), t.Changes())
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
	if err := store.SetDurable(v.conn, false); err != nil {
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
	if err := store.SetDurable(v.conn, true); err != nil {
		v.log.Error().Err(err).Msg("turn syncing back on; closing the vault")
		v.end(errUnavailable)
		return errors.Join(cause, err)
	}
	return cause
}

// inTx runs fn in one transaction, or in a savepoint of the open group
// commit (batch.go), so that a failing command rolls back alone.
func (v *Vault) inTx(fn func() error) error { return store.InTx(v.conn, v.batch != nil, fn) }
