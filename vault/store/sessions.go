package store

import (
	"crypto/ecdsa"
	"fmt"
	"time"

	"zombiezen.com/go/sqlite"
	"zombiezen.com/go/sqlite/sqlitex"

	"github.com/spells-dev/spells/protocol"
)

// Sessions and the sign-in nonces a vault has seen.

// Session is a signed-in delegate key and the last sequence number the
// vault accepted from it.
type Session struct {
	ID        string // the SIWE nonce that created it
	Key       *ecdsa.PublicKey
	ExpiresAt int64 // unix ms
	LastSeq   uint64
}

// LoadSessions reads the sessions that have not expired at now.
func LoadSessions(conn *sqlite.Conn, now time.Time) ([]*Session, error) {
	var out []*Session
	err := sqlitex.ExecuteTransient(conn, `SELECT id, delegate, expires_at, last_seq FROM sessions WHERE expires_at > ?;`,
		&sqlitex.ExecOptions{Args: []any{now.UnixMilli()}, ResultFunc: func(s *sqlite.Stmt) error {
			key, err := protocol.ParseDelegateKey(s.ColumnText(1))
			if err != nil {
				return fmt.Errorf("session %s: %w", s.ColumnText(0), err)
			}
			out = append(out, &Session{ID: s.ColumnText(0), Key: key, ExpiresAt: s.ColumnInt64(2), LastSeq: uint64(s.ColumnInt64(3))})
			return nil
		}})
	if err != nil {
		return nil, fmt.Errorf("load sessions: %w", err)
	}
	return out, nil
}

// AddSession records a new session at now, forgetting the expired ones.
func AddSession(conn *sqlite.Conn, s *Session, now time.Time) error {
	if err := exec(conn, `DELETE FROM sessions WHERE expires_at <= ?;`, now.UnixMilli()); err != nil {
		return err
	}
	return exec(conn, `INSERT INTO sessions (id, delegate, created_at, expires_at, last_seq) VALUES (?, ?, ?, ?, 0);`,
		s.ID, protocol.EncodeDelegateKey(s.Key), now.UnixMilli(), s.ExpiresAt)
}

// SetLastSeq records the last sequence number accepted from a session.
func SetLastSeq(conn *sqlite.Conn, session string, seq uint64) error {
	return exec(conn, `UPDATE sessions SET last_seq = ? WHERE id = ?;`, int64(seq), session)
}

// DeleteSession ends one session.
func DeleteSession(conn *sqlite.Conn, id string) error {
	return exec(conn, `DELETE FROM sessions WHERE id = ?;`, id)
}

// DeleteSessions ends every session of the vault.
func DeleteSessions(conn *sqlite.Conn) error { return exec(conn, `DELETE FROM sessions;`) }

// NonceUsed reports whether the vault has recorded nonce as used.
func NonceUsed(conn *sqlite.Conn, nonce string) (bool, error) {
	return exists(conn, `SELECT 1 FROM nonces WHERE nonce = ?;`, nonce)
}

// RecordNonce marks nonce used at now and forgets nonces too old to pass
// the issuer's lifetime check (ttl) anyway.
func RecordNonce(conn *sqlite.Conn, nonce string, now time.Time, ttl time.Duration) error {
	if err := exec(conn, `INSERT INTO nonces (nonce, used_at) VALUES (?, ?);`, nonce, now.UnixMilli()); err != nil {
		return err
	}
	return trimNonces(conn, now, ttl)
}

// RecordNonces marks nonces used (nonce → unix ms of use; one already
// recorded is kept) and forgets those too old to matter.
func RecordNonces(conn *sqlite.Conn, used map[string]int64, now time.Time, ttl time.Duration) error {
	for nonce, at := range used {
		if err := exec(conn, `INSERT OR IGNORE INTO nonces (nonce, used_at) VALUES (?, ?);`, nonce, at); err != nil {
			return err
		}
	}
	return trimNonces(conn, now, ttl)
}

// trimNonces forgets nonces too old to pass the issuer's lifetime check.
func trimNonces(conn *sqlite.Conn, now time.Time, ttl time.Duration) error {
	return exec(conn, `DELETE FROM nonces WHERE used_at < ?;`, now.Add(-2*ttl).UnixMilli())
}
