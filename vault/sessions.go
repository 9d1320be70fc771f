package vault

import (
	"context"
	"strings"

	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/vault/store"
)

// Ending sessions: a session ends itself (session.end, signed by its
// delegate key: "sign out"), or its vault's owner ends every one of them
// (a revoke, signed by the owner's wallet: "sign out everywhere", for a
// delegate key that may have leaked). Either way the sessions' rows go in
// one transaction, their keys leave memory at once (their commands and
// resumes are refused from then on), and their sockets are closed with
// CloseSessionEnded once what was queued for them, the answer included,
// is written.

// ender is implemented by subscribers that can be closed because their
// session ended: after the frames already queued, with
// protocol.CloseSessionEnded.
type ender interface {
	Ended(reason string)
}

// endSessions forgets the sessions ended picks, after the transaction
// that deleted them committed, and closes their subscribers from a letter
// of their own, so the answer to the command or revoke that ended them is
// queued before the close.
func (v *Vault) endSessions(ended func(id string) bool, reason string) {
	for id := range v.sessions {
		if ended(id) {
			delete(v.sessions, id)
			v.keys.Delete(id)
		}
	}
	go v.postNoFile(context.Background(), func() {
		for s, id := range v.subs {
			if ended(id) {
				if e, ok := s.(ender); ok {
					e.Ended(reason)
				}
				v.dropSub(s)
			}
		}
	})
}

// endSession is session.end: the sending session ends.
func (v *Vault) endSession(t *store.Tx, session string) (any, error) {
	if err := store.DeleteSession(v.conn, session); err != nil {
		return nil, err
	}
	t.Then(func() {
		v.endSessions(func(id string) bool { return id == session }, "signed out")
		v.log.Info().Str("session", truncateID(session)).Msg("session ended by its own key (signed out)")
	})
	return map[string]string{"ended": session}, nil
}

// Revoke verifies an owner-signed revoke (a SIWE message naming
// protocol.RevokeResource and no delegate key, with this socket's nonce)
// and ends every session of the vault it names. It answers with how many
// sessions ended. Like SignIn, the checks that need no vault state run
// first and cost no vault.
func (m *Manager) Revoke(ctx context.Context, req SignInRequest) (int, error) {
	msg, err := m.verifySignIn(req)
	if err == nil && !protocol.IsRevoke(msg.Resources) {
		err = protocol.Errorf(protocol.CodeBadCommand, "a revoke names %s and no delegate key in its resources", protocol.RevokeResource)
	}
	if err != nil {
		m.metrics.AuthFailures.WithLabelValues(codeOf(err)).Inc()
		return 0, err
	}
	v, err := m.acquire(ctx, msg.Address, false, true)
	if err != nil {
		return 0, err
	}
	n := 0
	err = v.doPinned(ctx, func() error {
		var err error
		n, err = v.revoke(msg, req.Nonce)
		if err != nil {
			v.m.metrics.AuthFailures.WithLabelValues(codeOf(err)).Inc()
			v.log.Info().Err(err).Msg("revoke refused")
		}
		return err
	})
	return n, err
}

// revoke makes the vault's own checks of a verified revoke (the signer is
// the owner, the nonce is unused and this socket's), then records the
// nonce and deletes every session in one transaction.
func (v *Vault) revoke(msg *protocol.Message, socketNonce string) (int, error) {
	if !v.born {
		return 0, protocol.Errorf(protocol.CodeSessionUnknown, "no such vault")
	}
	if msg.Address != v.owner {
		return 0, protocol.Errorf(protocol.CodeBadSignature, "signer %s is not this vault's owner", msg.Address.Hex())
	}
	if err := v.checkUnused(msg.Nonce); err != nil {
		return 0, err
	}
	if msg.Nonce != socketNonce {
		return 0, protocol.Errorf(protocol.CodeNonceUnknown, "nonce %q is not the one issued on this socket", truncateID(msg.Nonce))
	}
	n := len(v.sessions)
	now := v.m.now()
	_, err := v.write(func(t *store.Tx) error {
		if err := store.RecordNonce(v.conn, strings.Clone(msg.Nonce), now, v.m.cfg.NonceTTL); err != nil {
			return err
		}
		return store.DeleteSessions(v.conn)
	})
	if err != nil {
		return 0, v.fault("revoke sessions", err)
	}
	v.endSessions(func(string) bool { return true }, "every session of this vault was revoked by its owner")
	v.log.Info().Int("sessions", n).Msg("every session revoked by the owner")
	return n, nil
}
