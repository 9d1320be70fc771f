package actor

import (
	"fmt"

	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/vault/store"
)

// One vault can never take the node down. Errors from a vault's file are
// sorted where they happen: a file that is not a readable vault is
// quarantined (the host sets it aside, and no fresh vault ever replaces
// it); a full disk is storage_full and marks the node not ready; anything
// else is internal, with the details in the log.

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
	v.host.Abandon(v.conn != nil)
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

// fault turns an error from the vault's file into what a caller is told,
// and acts on it: a damaged file is quarantined (the instance ends), a
// full disk is reported to the host (readiness), anything else is logged
// as an internal error.
func (v *Vault) fault(what string, err error) error {
	switch {
	case store.IsDamaged(err):
		v.quarantine(what, err)
		return ErrQuarantined
	case store.IsInterrupted(err):
		v.log.Info().Err(err).Msg(what + ": interrupted, the node is stopping")
		return ErrClosed
	case store.IsFull(err):
		v.host.DiskFull(what, err)
		v.log.Warn().Err(err).Msg(what + ": the disk is full")
		return ErrStorageFull
	}
	v.log.Error().Err(err).Msg(what)
	return protocol.Errorf(protocol.CodeInternal, "internal error")
}

// quarantine ends the instance and has the host set its damaged file
// aside; the host remembers the vault as quarantined before the instance
// has ended, so no new one starts.
func (v *Vault) quarantine(what string, cause error) {
	v.end(ErrQuarantined)
	if v.conn != nil {
		// No closing writes (nonces, a checkpoint of a bad file).
		v.stopRecording()
		v.conn.Close()
		v.conn = nil
	}
	v.host.Quarantine(fmt.Errorf("%s: %w", what, cause))
}
