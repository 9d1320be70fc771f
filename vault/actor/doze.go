package actor

import "github.com/spells-dev/spells/vault/store"

// Hibernating and dozing: how an idle vault gives its file back.
//
// A vault with no dashboard connected that has been idle hibernates: its
// instance retires (its goroutine ends and its file closes); its alarm and
// threshold leaves stay with the manager, which opens it again on demand.
//
// A vault that has dashboards connected cannot hibernate (its goroutine
// holds their subscriptions), but when it has been idle it does not need
// its SQLite file either: its state is in memory. It dozes: it closes the
// file (two descriptors and the connection's memory) and reopens it when
// the next letter or event that needs it arrives. This is what lets a
// node hold many more connected dashboards than open files.

// hibernate retires the vault if it has no subscriber and is idle with
// nothing due soon (force: even if it was used recently or is due soon;
// for an eviction). It runs on the goroutine.
func (v *Vault) hibernate(force bool) { v.hibernateTry(force, 0) }

// maxEvictionRetries bounds how often an eviction waits behind work that
// arrived meanwhile before it gives up (the vault is then evictable again).
const maxEvictionRetries = 64

func (v *Vault) hibernateTry(force bool, tries int) {
	if !v.born || v.forget {
		v.evictionDone(force)
		return
	}
	now := v.now().UnixMilli()
	idle := v.cfg.IdleAfter.Milliseconds()
	if !force && (now-v.lastActive.Load() < idle || (v.next > 0 && v.next-now < idle)) {
		return
	}
	if v.host.Retire() {
		v.forget, v.retired = true, true
		return
	}
	if force && len(v.subs) == 0 && tries < maxEvictionRetries {
		// Work arrived meanwhile: try again after it, never blocking on
		// our own mailbox.
		select {
		case v.mailbox <- letter{fn: func() { v.hibernateTry(true, tries+1) }, noFile: true}:
			return
		default:
		}
	}
	v.evictionDone(force)
}

// evictionDone ends an eviction that did not close the file; only the
// eviction's own letter (force) may, not a janitor's letter that happened
// to run while one was queued.
func (v *Vault) evictionDone(force bool) {
	if force {
		v.host.EvictionEnded()
	}
}

// doze closes the file of an idle vault, keeping its goroutine, state and
// subscribers (force: even if it was used recently; for an eviction). It
// runs on the goroutine.
func (v *Vault) doze(force bool) {
	if v.conn == nil || v.forget || v.batch != nil ||
		(!force && v.now().UnixMilli()-v.lastActive.Load() < v.cfg.IdleAfter.Milliseconds()) ||
		!v.host.MayDoze() {
		v.evictionDone(force)
		return
	}
	v.closeFile()
	v.host.Dozed()
}

// dozingNow reports whether the vault's state is loaded but its file
// closed.
func (v *Vault) dozingNow() bool { return v.born && v.conn == nil }

// rewake reopens a dozing vault's file before a letter or event that needs
// it, once it has a file slot (which it may wait for at MaxOpen). If the
// file cannot be opened the vault ends (its subscribers are told to
// reconnect), so the next use starts it afresh, and the letter is dropped:
// its caller hears why.
func (v *Vault) rewake() bool {
	if err := v.host.WakeSlot(v.quit); err != nil {
		return false // the node is closing
	}
	conn, err := store.Open(v.path())
	if err != nil {
		v.end(v.fault("reopen dozing vault", err))
		return false
	}
	conn.SetInterrupt(v.cfg.Stop)
	v.conn = conn
	if err := v.startRecording(); err != nil {
		v.end(v.fault("reopen dozing vault", err))
		return false
	}
	v.host.Opened(v.epoch)
	return true
}
