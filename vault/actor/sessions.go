package actor

import (
	"time"

	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/vault/store"
)

// A vault's sessions: each a delegate key a sign-in bound, and the last
// sequence number accepted from it. A session ends itself (session.end,
// signed by its delegate key: "sign out"), or its vault's owner ends every
// one of them (a revoke, signed by the owner's wallet: "sign out
// everywhere", for a delegate key that may have leaked). Either way the
// sessions' rows go in one transaction, their keys leave memory at once
// (their commands and resumes are refused from then on), and their sockets
// are closed with CloseSessionEnded once what was queued for them, the
// answer included, is written.

// addSession makes s usable, also to preverify.
func (v *Vault) addSession(s *store.Session) {
	v.sessions[s.ID] = s
	v.keys.Store(s.ID, s.Key)
}

func (v *Vault) liveSession(id string, now time.Time) (*store.Session, error) {
	s, ok := v.sessions[id]
	if !ok {
		return nil, protocol.Errorf(protocol.CodeSessionUnknown, "this vault has no session %q", Short(id))
	}
	if now.UnixMilli() >= s.ExpiresAt {
		return nil, protocol.Errorf(protocol.CodeSessionExpired, "session expired at %s; sign in again",
			time.UnixMilli(s.ExpiresAt).UTC().Format(time.RFC3339))
	}
	return s, nil
}

// endSessions forgets the sessions ended picks, after the transaction
// that deleted them committed, and closes their subscribers after the
// current letter, so the answer to the command or revoke that ended them
// is queued before the close.
func (v *Vault) endSessions(ended func(id string) bool, reason string) {
	for id := range v.sessions {
		if ended(id) {
			delete(v.sessions, id)
			v.keys.Delete(id)
		}
	}
	v.later(func() {
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
		v.log.Info().Str("session", Short(session)).Msg("session ended by its own key (signed out)")
	})
	return map[string]string{"ended": session}, nil
}
