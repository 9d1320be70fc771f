package vault

import "context"

// Dozing: a vault that has dashboards connected cannot hibernate (its
// goroutine holds their subscriptions), but when it has been idle it does
// not need its SQLite file either: its state is in memory. It closes the
// file (two descriptors and the connection's memory) and reopens it when
// the next letter that needs it arrives. This is what lets a node hold many
// more connected dashboards than open files.

// doze closes the file of an idle vault, keeping its goroutine, state and
// subscribers (force: even if it was used recently; for LRU eviction).
// It runs on the goroutine.
func (v *Vault) doze(force bool) {
	defer func() {
		if v.evicting.Load() {
			v.m.evictionEnded(v)
		}
	}()
	if v.conn == nil || v.forget || v.batch != nil || len(v.mailbox) > 0 {
		return
	}
	if !force && v.m.now().UnixMilli()-v.lastActive.Load() < v.m.cfg.IdleAfter.Milliseconds() {
		return
	}
	if !v.m.mayDoze(v) {
		return
	}
	v.closeFile()
	v.dozing = true
	v.m.dozed()
}

// rewake reopens a dozing vault's file before a letter that needs it. If
// that fails the vault ends (its subscribers are told to reconnect), so
// the next use starts it afresh, and the letter is dropped: its caller
// gets errClosed.
func (v *Vault) rewake() bool {
	conn, err := openConn(context.Background(), v.path(), false)
	if err != nil {
		v.log.Error().Err(err).Msg("reopen dozing vault")
		v.abandonSubs()
		v.forget = true
		return false
	}
	v.conn = conn
	v.dozing = false
	v.m.woke(v)
	v.m.metrics.Activations.Inc()
	return true
}
