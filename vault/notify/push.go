package notify

import (
	"bytes"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"time"

	"github.com/spells-dev/spells/internal/atomicfile"
	"github.com/spells-dev/spells/protocol"
)

// Web Push: an alert reaches a browser whose page is closed through the
// browser's push service. The payload is encrypted for the subscription
// (RFC 8291, the aes128gcm content coding of RFC 8188) so the push service
// reads nothing, and the node identifies itself with a VAPID token (RFC
// 8292) signed by its own P-256 key, whose public half the page subscribed
// with (GET /v1/push/key). A push service that answers 404 or 410 has
// dropped the subscription: the vault drops it too.

// VAPID is the node's push identity.
type VAPID struct {
	key     *ecdsa.PrivateKey
	Public  string // the uncompressed public key, base64url: the page's applicationServerKey
	Subject string // a contact for push services: mailto: or https: (RFC 8292)
}

// LoadVAPID reads the node's VAPID key from path, making it on first use.
func LoadVAPID(path, subject string) (*VAPID, error) {
	raw, err := os.ReadFile(path)
	var key *ecdsa.PrivateKey
	switch {
	case errors.Is(err, os.ErrNotExist):
		if key, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
			return nil, err
		}
		der, err := x509.MarshalECPrivateKey(key)
		if err != nil {
			return nil, err
		}
		if err := atomicfile.Write(path, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})); err != nil {
			return nil, fmt.Errorf("write the push key: %w", err)
		}
	case err != nil:
		return nil, fmt.Errorf("read the push key: %w", err)
	default:
		b, _ := pem.Decode(raw)
		if b == nil {
			return nil, fmt.Errorf("the push key %s is not PEM: delete it and a new one is made (browsers subscribe again)", path)
		}
		if key, err = x509.ParseECPrivateKey(b.Bytes); err != nil || key.Curve != elliptic.P256() {
			return nil, fmt.Errorf("the push key %s is not a P-256 key: delete it and a new one is made (browsers subscribe again)", path)
		}
	}
	pub, err := key.PublicKey.ECDH()
	if err != nil {
		return nil, err
	}
	return &VAPID{key: key, Public: base64.RawURLEncoding.EncodeToString(pub.Bytes()), Subject: subject}, nil
}

// token is the VAPID JWT for the push service at origin, valid 12 hours.
func (v *VAPID) token(origin string, now time.Time) (string, error) {
	head := base64.RawURLEncoding.EncodeToString([]byte(`{"typ":"JWT","alg":"ES256"}`))
	claims, _ := json.Marshal(map[string]any{"aud": origin, "exp": now.Add(12 * time.Hour).Unix(), "sub": v.Subject})
	signing := head + "." + base64.RawURLEncoding.EncodeToString(claims)
	sum := sha256.Sum256([]byte(signing))
	r, s, err := ecdsa.Sign(rand.Reader, v.key, sum[:])
	if err != nil {
		return "", err
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	return signing + "." + base64.RawURLEncoding.EncodeToString(sig), nil
}

// decodeKey reads a subscription's base64url (or base64) key.
func decodeKey(s string) ([]byte, error) {
	for _, enc := range []*base64.Encoding{base64.RawURLEncoding, base64.URLEncoding, base64.RawStdEncoding, base64.StdEncoding} {
		if b, err := enc.DecodeString(s); err == nil {
			return b, nil
		}
	}
	return nil, errors.New("not base64")
}

// CheckSubscription says what is wrong with a browser's push
// subscription: an https endpoint (a public address unless allowPrivate,
// checked like a webhook's), a P-256 public key and a 16-byte secret.
func CheckSubscription(s protocol.PushSubscription, allowPrivate bool) error {
	u, err := url.Parse(s.Endpoint)
	if err != nil || (u.Scheme != "https" && !(allowPrivate && u.Scheme == "http")) || u.Host == "" {
		return errors.New("a push subscription's endpoint must be the https:// URL the browser gave")
	}
	if err := CheckURL(s.Endpoint, allowPrivate); err != nil {
		return fmt.Errorf("a push subscription's endpoint: %w", err)
	}
	p, err := decodeKey(s.Keys.P256dh)
	if err != nil {
		return errors.New("a push subscription's keys.p256dh is not base64url")
	}
	if _, err := ecdh.P256().NewPublicKey(p); err != nil {
		return errors.New("a push subscription's keys.p256dh is not a P-256 public key")
	}
	if a, err := decodeKey(s.Keys.Auth); err != nil || len(a) != 16 {
		return errors.New("a push subscription's keys.auth is not a 16-byte secret in base64url")
	}
	return nil
}

// encryptPush encrypts payload for the subscription: one aes128gcm record.
func encryptPush(s protocol.PushSubscription, payload []byte) ([]byte, error) {
	uaRaw, err := decodeKey(s.Keys.P256dh)
	if err != nil {
		return nil, err
	}
	ua, err := ecdh.P256().NewPublicKey(uaRaw)
	if err != nil {
		return nil, err
	}
	auth, err := decodeKey(s.Keys.Auth)
	if err != nil {
		return nil, err
	}
	as, err := ecdh.P256().GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	shared, err := as.ECDH(ua)
	if err != nil {
		return nil, err
	}
	asPub := as.PublicKey().Bytes()
	keyInfo := append(append([]byte("WebPush: info\x00"), uaRaw...), asPub...)
	ikm, err := hkdf.Key(sha256.New, shared, auth, string(keyInfo), 32)
	if err != nil {
		return nil, err
	}
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return nil, err
	}
	cek, err := hkdf.Key(sha256.New, ikm, salt, "Content-Encoding: aes128gcm\x00", 16)
	if err != nil {
		return nil, err
	}
	nonce, err := hkdf.Key(sha256.New, ikm, salt, "Content-Encoding: nonce\x00", 12)
	if err != nil {
		return nil, err
	}
	block, err := aes.NewCipher(cek)
	if err != nil {
		return nil, err
	}
	gcm, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	plain := append(append([]byte{}, payload...), 0x02) // the last (only) record's delimiter
	var out bytes.Buffer
	out.Write(salt)
	_ = binary.Write(&out, binary.BigEndian, uint32(4096))
	out.WriteByte(byte(len(asPub)))
	out.Write(asPub)
	out.Write(gcm.Seal(nil, nonce, plain, nil))
	return out.Bytes(), nil
}

// pushPayload is what the service worker shows.
func pushPayload(vault string, a protocol.Alert) []byte {
	b, _ := json.Marshal(map[string]string{"title": "Spells: " + a.Title, "body": messageText(vault, a), "tag": a.ID})
	return b
}

// sendPush makes one try at pushing a to the subscription.
func sendPush(ctx context.Context, c *http.Client, v *VAPID, vault string, s protocol.PushSubscription, a protocol.Alert, now time.Time) outcome {
	body, err := encryptPush(s, pushPayload(vault, a))
	if err != nil {
		return outcome{why: "the push subscription's keys do not serve: " + err.Error(), gone: true}
	}
	u, err := url.Parse(s.Endpoint)
	if err != nil {
		return outcome{why: "the push endpoint does not parse", gone: true}
	}
	jwt, err := v.token(u.Scheme+"://"+u.Host, now)
	if err != nil {
		return outcome{why: "sign the push token: " + err.Error()}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.Endpoint, bytes.NewReader(body))
	if err != nil {
		return outcome{why: "the push endpoint: " + err.Error(), gone: true}
	}
	req.Header.Set("Content-Encoding", "aes128gcm")
	req.Header.Set("Content-Type", "application/octet-stream")
	req.Header.Set("TTL", "86400")
	req.Header.Set("Urgency", "high")
	req.Header.Set("Authorization", "vapid t="+jwt+", k="+v.Public)
	res, err := c.Do(req)
	if err != nil {
		if errors.Is(err, ErrPrivate) {
			return outcome{why: ErrPrivate.Error()}
		}
		return outcome{retry: true, why: "could not reach the push service: " + err.Error()}
	}
	defer res.Body.Close()
	head, _ := io.ReadAll(io.LimitReader(res.Body, answerLimit))
	switch code := res.StatusCode; {
	case code >= 200 && code < 300:
		return outcome{delivered: true}
	case code == http.StatusNotFound || code == http.StatusGone:
		return outcome{gone: true, why: fmt.Sprintf("the push service answered %d: this browser's subscription has ended, and the vault dropped it", code)}
	case code == http.StatusTooManyRequests || code >= 500:
		return outcome{retry: true, why: fmt.Sprintf("the push service answered %d %s", code, snippet(head))}
	default:
		return outcome{why: fmt.Sprintf("the push service answered %d %s: refused for good", code, snippet(head))}
	}
}
