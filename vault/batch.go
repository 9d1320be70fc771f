package vault

import (
	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/vault/store"
)

// maxBatch bounds how many commands share one commit, so the first of
// them is not held back for long behind a steady stream.
const maxBatch = 128

// letter is one message in a vault's mailbox.
type letter struct {
	fn func()
	// batch marks a command: it may share one commit (one fsync) with the
	// commands queued right behind it.
	batch bool
	// noFile marks a letter that does not touch the file, so it does not
	// wake a dozing vault (hibernate, doze, detach).
	noFile bool
	// pinned marks the letter of a caller that pinned the vault
	// (Manager.acquire); taking it unpins the vault.
	pinned bool
}

// take accounts for a letter leaving the mailbox.
func (v *Vault) take(l letter) {
	if l.pinned {
		v.pins.Add(-1)
	}
}

// batch is an open group commit: the effects that must wait until the
// commit is durable (replies to callers, diffs to subscribers), in order.
type batch struct {
	commands int
	effects  []func(failed error)
}

// errCommit is what the callers of a group whose commit failed receive.
var errCommit = protocol.Errorf(protocol.CodeUnavailable, "the vault could not save; retry")

// commitFault, when set by a test, makes the next group commit fail.
var commitFault func() error

// receive runs one letter. A command with more commands queued behind it
// opens a group commit: the queued commands run inside the same SQLite
// transaction, each in its own savepoint (a refused command rolls back
// alone), and one commit makes all of them durable. Nobody hears of any
// of them (acks, diffs) before that commit. Each command still gets its
// own version and diff, exactly as if it had committed alone.
func (v *Vault) receive(l letter) {
	v.take(l)
	if v.dozingNow() && !l.noFile && !v.rewake() {
		return
	}
	if !l.batch || v.conn == nil || len(v.mailbox) == 0 {
		l.fn()
		return
	}
	if err := store.Begin(v.conn); err != nil {
		v.log.Error().Err(err).Msg("begin group commit")
		l.fn()
		return
	}
	v.batch = &batch{commands: 1}
	l.fn()
	var next *letter
	for n := 1; n < maxBatch && next == nil; n++ {
		select {
		case nl := <-v.mailbox:
			v.take(nl)
			if nl.batch {
				v.batch.commands++
				nl.fn()
			} else {
				next = &nl // not a command: it runs after the commit
			}
		default:
			n = maxBatch
		}
	}
	v.commitBatch()
	if next != nil && !v.forget {
		if v.dozingNow() && !next.noFile && !v.rewake() {
			return
		}
		next.fn()
	}
}

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

func (v *Vault) commitBatch() {
	b := v.batch
	v.batch = nil
	var err error
	if commitFault != nil {
		err = commitFault()
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
		// Memory is ahead of the file now: end the goroutine, so the
		// next use reopens the vault from what the file holds, and tell
		// the subscribers their view is void.
		v.end(failed)
		for _, fn := range b.effects {
			fn(failed)
		}
		return
	}
	v.m.metrics.GroupCommits.Observe(float64(b.commands))
	for _, fn := range b.effects {
		fn(nil)
	}
}

// goner is implemented by subscribers that can be told their vault ended
// under them (a failed group commit or reopen), so they reconnect and
// resume.
type goner interface {
	Gone()
}

// end ends the instance for a reason of its own (a failed commit, a
// damaged file): its subscribers are told to reconnect, requests from now
// on reach a new instance, and callers still waiting on this one get
// failure.
func (v *Vault) end(failure error) {
	if v.forget {
		return
	}
	v.failure = failure
	v.forget = true
	v.abandonSubs()
	v.m.abandon(v)
}

// abandonSubs tells every subscriber its vault is ending under it and
// drops them all.
func (v *Vault) abandonSubs() {
	for s := range v.subs {
		if g, ok := s.(goner); ok {
			g.Gone()
		}
		v.dropSub(s)
	}
}
