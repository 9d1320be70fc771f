package actor

import "context"

// A vault's mailbox: letters (closures) run one at a time on its
// goroutine. A letter, once queued, runs whatever happens to its caller (a
// vault's work is not its client's to cancel); the caller only stops
// waiting.

// take accounts for a letter leaving the mailbox.
func (v *Vault) take(l letter) {
	if l.pinned {
		v.pins.Add(-1)
	}
}

// queue puts l in the mailbox, waiting while it is full; it fails if the
// goroutine has ended or, for a letter that is not pinned, if ctx ends
// first. A pinned letter is always queued: the instance waits for it.
func (v *Vault) queue(ctx context.Context, l letter) error {
	v.touch()
	if l.pinned {
		ctx = context.Background()
	}
	select {
	case v.mailbox <- l:
		return nil
	case <-v.done:
		if l.pinned {
			v.pins.Add(-1)
		}
		return v.endedErr()
	case <-ctx.Done():
		return ctx.Err()
	}
}

// endedErr is what a caller of an instance that has ended is told.
func (v *Vault) endedErr() error {
	if v.failure != nil {
		return v.failure
	}
	return ErrClosed
}

// replyAfterCommit wraps fn so that reply gets its error once what fn
// wrote is durable (at the end of a group commit, if fn ran in one).
func (v *Vault) replyAfterCommit(fn func() error, reply func(error)) func() {
	return func() {
		err := fn()
		v.afterCommit(func(failed error) {
			if failed != nil {
				err = failed
			}
			reply(err)
		})
	}
}

// do runs fn on the vault's goroutine and returns its error. The letter
// is queued whatever happens to ctx; ctx bounds only the wait for the
// answer.
func (v *Vault) do(ctx context.Context, fn func() error) error { return v.doLetter(ctx, false, fn) }

// doPinned is do for the letter of a caller that pinned the vault: taking
// the letter unpins it.
func (v *Vault) doPinned(ctx context.Context, fn func() error) error {
	return v.doLetter(ctx, true, fn)
}

func (v *Vault) doLetter(ctx context.Context, pinned bool, fn func() error) error {
	res := make(chan error, 1)
	if err := v.queue(context.Background(), letter{pinned: pinned, fn: v.replyAfterCommit(fn, func(err error) { res <- err })}); err != nil {
		return err
	}
	select {
	case err := <-res:
		return err
	case <-v.done:
		// fn may have been the last thing the goroutine ran.
		select {
		case err := <-res:
			return err
		default:
			return v.endedErr()
		}
	case <-ctx.Done():
		return ctx.Err()
	}
}

// enqueue queues a command's fn (waiting only while the mailbox is full,
// or until ctx ends: a command not yet queued is not applied) and calls
// reply with its error on the vault's goroutine once what fn wrote is
// durable. reply must not block. If enqueue returns an error, fn was not
// queued and reply is never called.
func (v *Vault) enqueue(ctx context.Context, batch bool, fn func() error, reply func(error)) error {
	return v.queue(ctx, letter{batch: batch, fn: v.replyAfterCommit(fn, reply)})
}

// postNoFile queues fn, a letter that does not need the file (it does not
// wake a dozing vault), without waiting for it to run. It gives up when
// ctx ends or the vault has ended.
func (v *Vault) postNoFile(ctx context.Context, fn func()) bool {
	select {
	case v.mailbox <- letter{fn: fn, noFile: true}:
		return true
	case <-v.done:
	case <-ctx.Done():
	}
	return false
}

// Ready is the letter of a caller that pinned the vault and has nothing
// else to ask: it answers once the vault's file is open, or why it could
// not be.
func (v *Vault) Ready(ctx context.Context) error { return v.doPinned(ctx, func() error { return nil }) }
