package protocol

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"time"
)

// NonceIssuer makes sign-in nonces that any holder of the same key can
// check without shared state: 8 random bytes, the issue time (unix
// milliseconds, 8 bytes) and a 12-byte HMAC-SHA256 tag over both, hex encoded (56
// characters, so valid as a SIWE nonce). The hub issues them; the vault
// checks them and records each one it accepts, so a nonce is good once.
// A NonceIssuer is safe for concurrent use.
type NonceIssuer struct {
	key []byte
}

// NonceLen is the length of an issued nonce in characters.
const NonceLen = 2 * (8 + 8 + 12)

// NewNonceIssuer returns an issuer keyed with key (32 random bytes, kept by
// the node across restarts).
func NewNonceIssuer(key []byte) *NonceIssuer {
	return &NonceIssuer{key: append([]byte(nil), key...)}
}

// Issue returns a fresh nonce stamped with now.
func (n *NonceIssuer) Issue(now time.Time) string {
	buf := make([]byte, 16, 28)
	_, _ = rand.Read(buf[:8])
	binary.BigEndian.PutUint64(buf[8:16], uint64(now.UnixMilli()))
	return hex.EncodeToString(append(buf, n.tag(buf)...))
}

func (n *NonceIssuer) tag(b []byte) []byte {
	m := hmac.New(sha256.New, n.key)
	m.Write(b)
	return m.Sum(nil)[:12]
}

// Check verifies that nonce was issued with this key and is not older than
// ttl at now. It returns the issue time. Errors are *Error with
// CodeNonceUnknown or CodeNonceExpired.
func (n *NonceIssuer) Check(nonce string, now time.Time, ttl time.Duration) (time.Time, error) {
	raw, err := hex.DecodeString(nonce)
	if len(nonce) != NonceLen || err != nil || !hmac.Equal(raw[16:], n.tag(raw[:16])) {
		return time.Time{}, Errorf(CodeNonceUnknown, "nonce was not issued by this node")
	}
	issued := time.UnixMilli(int64(binary.BigEndian.Uint64(raw[8:16])))
	if now.Sub(issued) > ttl || issued.After(now.Add(time.Minute)) {
		return time.Time{}, Errorf(CodeNonceExpired, "nonce issued at %s is outside its %s lifetime", issued.UTC().Format(time.RFC3339), ttl)
	}
	return issued, nil
}
