package actor

import (
	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/vault/store"
)

// The nonces a vault has seen. A sign-in's nonce is recorded in the
// transaction that records its session. A resume's is held in memory and
// written with the next batch of them, or when the file closes, without
// waiting for the disk: only an end of the node (a crash, or of the
// machine) before that can lose the record, and a restarted node refuses
// every nonce issued before it started (the host checks that).

// MaxUnwrittenNonces is how many resume nonces a vault holds in memory
// before it writes them to its file.
const MaxUnwrittenNonces = 64

// checkUnused refuses a nonce this vault has already used, as recorded in
// its file or in memory.
func (v *Vault) checkUnused(nonce string) error {
	_, used := v.usedNonces[nonce]
	if !used && v.born {
		var err error
		if used, err = store.NonceUsed(v.conn, nonce); err != nil {
			return v.fault("read nonces", err)
		}
	}
	if used {
		return protocol.Errorf(protocol.CodeNonceReused, "nonce was already used")
	}
	return nil
}

// flushNonces writes the resume nonces held in memory to the nonces table,
// without waiting for the disk (writeVolatile): the closing checkpoint, or
// the next durable commit, syncs them. If that fails they stay in memory
// while the vault runs, and the error is logged: a vault reopened after
// such a failure could accept one of them again until it expires (5
// minutes), on a socket that was issued it.
func (v *Vault) flushNonces() {
	if len(v.usedNonces) == 0 || v.conn == nil || v.batch != nil {
		return
	}
	err := v.writeVolatile(func() error {
		return store.RecordNonces(v.conn, v.usedNonces, v.now(), v.cfg.NonceTTL)
	})
	if err != nil {
		v.log.Error().Err(err).Int("nonces", len(v.usedNonces)).Msg("record used resume nonces")
		return
	}
	v.usedNonces = nil
}
