package actor

import (
	"context"
	"time"

	"github.com/spells-dev/spells/vault/exec"
	"github.com/spells-dev/spells/vault/rules"
	"github.com/spells-dev/spells/vault/store"
)

// The vault's goroutine: it opens the vault's file (or waits, unborn, for
// the sign-in that creates it), then takes its letters and events in
// order, each to its end, until it is told to stop or stops on its own.

// Run is the vault's goroutine; the host runs it and waits for Done. An
// instance of a vault that has a file opens it first; an unborn one waits
// for the sign-in that creates it. Events (signals, alarms, chain results)
// queued before a letter are handled before it.
func (v *Vault) Run(hasFile bool) {
	defer close(v.done)
	defer v.shutdown()
	v.intents = exec.NewRunner(v.cfg.Intents, execVault{v}, v.id, v.log)
	if hasFile && !v.openExisting() {
		return
	}
	for !v.forget {
		select {
		case l := <-v.mailbox:
			v.drainInbox()
			v.receive(l)
		case <-v.inWake:
			v.drainInbox()
		case <-v.quit:
			v.drainInbox()
			for {
				select {
				case l := <-v.mailbox:
					v.receive(l)
				default:
					return
				}
			}
		}
		if !v.born && !v.forget {
			v.forget = v.host.RetireUnborn()
		}
	}
}

// openExisting opens the file of a vault that has one, for a new instance.
// A file that cannot be read is quarantined; any other failure ends the
// instance, and its next use tries again.
func (v *Vault) openExisting() bool {
	err := v.openFile()
	if err == nil && v.move.To != "" {
		// A copy that moved (or is moving) to another node: it serves
		// nothing here.
		v.stopRecording()
		v.conn.Close()
		v.conn = nil
		v.failure = ErrMoving
		v.forget = true
		v.host.Abandon(false)
		return false
	}
	if err == nil {
		err = v.ensureKeys()
	}
	if err != nil {
		v.failure = v.fault("open vault", err)
		v.forget = true
		v.host.Abandon(v.conn != nil)
		return false
	}
	v.host.Opened(v.epoch)
	if err := v.applyJournaled(); err != nil {
		v.end(v.fault("apply the firing journal", err))
		return false
	}
	v.dirty = true // report its alarm and leaves, and evaluate what it missed
	v.finish()
	v.intents.Resume()
	v.finish()
	return true
}

func (v *Vault) shutdown() {
	if h := v.hooks().Closing.Load(); h != nil {
		(*h)(v.addr, v.conn != nil)
	}
	v.closeFile()
	// Its alarm and its index entries stay with the host: a hibernated
	// vault is still woken on time and by the signals it reacts to, and
	// fired without opening its file (asleep.go).
	var a *Asleep
	if v.retired && v.failure == nil && v.born && v.move.To == "" && len(v.journaled) == 0 {
		a = asleepOf(v.triggers, v.backupDue)
	}
	v.host.Ended(a)
}

// finish runs after every letter and event: what it recorded is reported
// (settle), then the work the vault gave itself.
func (v *Vault) finish() {
	v.settle()
	for len(v.deferred) > 0 {
		d := v.deferred
		v.deferred = nil
		for _, fn := range d {
			fn()
		}
	}
}

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
	defer v.finish()
	if !l.batch || v.conn == nil || len(v.mailbox) == 0 {
		l.fn()
		return
	}
	if err := v.beginBatch(); err != nil {
		v.log.Error().Err(err).Msg("begin group commit")
		l.fn()
		return
	}
	v.batch.commands = 1
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
		v.finish()
		if v.dozingNow() && !next.noFile && !v.rewake() {
			return
		}
		next.fn()
	}
}

// drainInbox handles the events queued for the vault, in order. A dozing
// vault reopens its file first.
func (v *Vault) drainInbox() {
	evs := v.in.Take()
	for i, ev := range evs {
		if ev.Exec != nil && ev.Exec.Kind == exec.PortfolioRead {
			v.showPortfolio(ev.Exec.Portfolio) // chain state: no file needed
			continue
		}
		if v.forget || (v.dozingNow() && !v.rewake()) {
			v.host.Shed(len(evs) - i)
			return
		}
		switch {
		case ev.Exec != nil:
			if v.conn != nil {
				v.intents.On(ev.Exec)
			}
		case ev.Alert != nil:
			if v.conn != nil {
				v.alertResult(ev.Alert)
			}
		case ev.ReadFailed != "":
			if v.conn != nil {
				v.readFailed(ev.Signal, ev.ReadFailed)
			}
		case ev.EventsDue:
			if v.conn != nil {
				v.askEvents(ev.Signal, false)
			}
		case ev.Logs != nil:
			if v.conn != nil {
				v.takeLogs(ev.Signal, ev.Logs)
			}
		case ev.Signal == "":
			v.alarm()
		default:
			v.cfg.Metrics.SignalLag.Observe(time.Since(ev.Received).Seconds())
			v.signal(rules.Offer{Signal: ev.Signal, Value: ev.Value, Origin: ev.Origin})
		}
		v.finish()
	}
}

// Rest asks the vault to give back its file: to hibernate (its instance
// retires, its file closes as its goroutine ends) or, with doze, to close
// only its file and keep its goroutine, state and subscribers. Without
// force it does so only if it is idle with nothing due soon (the
// janitor's); with force, at once (an eviction). done, if set, is told on
// the vault's goroutine whether the instance retires. Rest returns false
// if the letter could not be queued (ctx ended, or the vault did).
func (v *Vault) Rest(ctx context.Context, doze, force bool, done func(retiring bool)) bool {
	return v.postNoFile(ctx, func() {
		if doze {
			v.doze(force)
		} else {
			v.hibernate(force)
		}
		if done != nil {
			done(v.forget)
		}
	})
}

// MoveOut marks the vault as moving to node to, at its next epoch, and
// ends the instance: from the mark on the vault refuses every write, its
// dashboards are told to reconnect (to any node), and its file closes
// clean as its goroutine ends. It returns the vault's epoch here.
func (v *Vault) MoveOut(ctx context.Context, to string) (uint64, error) {
	var epoch uint64
	err := v.do(ctx, func() error {
		epoch = v.epoch
		if err := store.SetMoveMark(v.conn, to, v.epoch+1); err != nil {
			return err
		}
		v.move = store.MoveMark{To: to, Epoch: v.epoch + 1}
		for s := range v.subs {
			if mw, ok := s.(moveWaiter); ok {
				mw.Moved()
			} else if g, ok := s.(goner); ok {
				g.Gone()
			}
			v.dropSub(s)
		}
		v.failure = ErrMoving
		v.forget = true
		v.host.Abandon(v.conn != nil)
		v.log.Info().Str("to", to).Uint64("epoch", v.epoch+1).Msg("vault moving out")
		return nil
	})
	return epoch, err
}
