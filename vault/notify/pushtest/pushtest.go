package pushtest

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/hkdf"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spells-dev/spells/protocol"
)

// Service is a local push endpoint as a browser's push service and the
// browser together would be: it checks the VAPID token against the
// node's public key, decrypts the payload with the subscription's private
// key, and keeps what it read. While gone it answers 410.
type Service struct {
	ua     *ecdh.PrivateKey
	auth   []byte
	vapid  string // the node's public key, base64url
	gone   bool
	mu     sync.Mutex
	got    []map[string]string
	srv    *httptest.Server
	failed string
}

// Start runs a push endpoint that takes pushes signed by the node whose
// VAPID public key is vapid; it stops when the test ends.
func Start(t testing.TB, vapid string) *Service {
	ua, _ := ecdh.P256().GenerateKey(rand.Reader)
	p := &Service{ua: ua, auth: make([]byte, 16), vapid: vapid}
	_, _ = rand.Read(p.auth)
	p.srv = httptest.NewServer(http.HandlerFunc(p.serve))
	t.Cleanup(p.srv.Close)
	return p
}

// Subscription is the browser's subscription, as its page would send it.
func (p *Service) Subscription() protocol.PushSubscription {
	var s protocol.PushSubscription
	s.Endpoint = p.srv.URL + "/push/abc123"
	s.Keys.P256dh = base64.RawURLEncoding.EncodeToString(p.ua.PublicKey().Bytes())
	s.Keys.Auth = base64.RawURLEncoding.EncodeToString(p.auth)
	return s
}

// Received returns the notifications the browser decrypted so far.
func (p *Service) Received() []map[string]string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return append([]map[string]string(nil), p.got...)
}

// Failed says why the last push was refused ("": none was).
func (p *Service) Failed() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.failed
}

// SetGone makes the service answer 410 Gone (the subscription dropped).
func (p *Service) SetGone(gone bool) {
	p.mu.Lock()
	p.gone = gone
	p.mu.Unlock()
}

// Wait waits until the browser decrypted at least n notifications.
func (p *Service) Wait(t testing.TB, n int) []map[string]string {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		if got := p.Received(); len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("the browser got %d pushes after 15s; want %d (the service says %q)", len(p.Received()), n, p.Failed())
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func (p *Service) fail(why string) {
	p.mu.Lock()
	p.failed = why
	p.mu.Unlock()
}

func (p *Service) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	p.mu.Lock()
	gone := p.gone
	p.mu.Unlock()
	if gone {
		w.WriteHeader(http.StatusGone)
		return
	}
	// The VAPID token: signed by the node's key, for this origin.
	auth := r.Header.Get("Authorization")
	tok, k, ok := strings.Cut(strings.TrimPrefix(auth, "vapid t="), ", k=")
	if !ok || k != p.vapid {
		p.fail("authorization " + auth)
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	parts := strings.Split(tok, ".")
	pubRaw, _ := base64.RawURLEncoding.DecodeString(p.vapid)
	x, y := elliptic.Unmarshal(elliptic.P256(), pubRaw)
	sig, _ := base64.RawURLEncoding.DecodeString(parts[2])
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	if len(sig) != 64 || !ecdsa.Verify(&ecdsa.PublicKey{Curve: elliptic.P256(), X: x, Y: y}, sum[:], new(big.Int).SetBytes(sig[:32]), new(big.Int).SetBytes(sig[32:])) {
		p.fail("the VAPID token's signature does not verify")
		w.WriteHeader(http.StatusForbidden)
		return
	}
	claims, _ := base64.RawURLEncoding.DecodeString(parts[1])
	var c struct {
		Aud string `json:"aud"`
		Exp int64  `json:"exp"`
		Sub string `json:"sub"`
	}
	_ = json.Unmarshal(claims, &c)
	if c.Aud != p.srv.URL || c.Exp < time.Now().Unix() || c.Exp > time.Now().Add(24*time.Hour).Unix() || c.Sub == "" {
		p.fail("claims " + string(claims))
		w.WriteHeader(http.StatusForbidden)
		return
	}
	// The payload: RFC 8188's header, then one record.
	if r.Header.Get("Content-Encoding") != "aes128gcm" || len(body) < 16+4+1+65 {
		p.fail("encoding")
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	salt, rs, idlen := body[:16], binary.BigEndian.Uint32(body[16:20]), int(body[20])
	asRaw, ct := body[21:21+idlen], body[21+idlen:]
	as, err := ecdh.P256().NewPublicKey(asRaw)
	if err != nil || rs < 18 {
		p.fail("key id")
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	shared, _ := p.ua.ECDH(as)
	info := append(append([]byte("WebPush: info\x00"), p.ua.PublicKey().Bytes()...), asRaw...)
	ikm, _ := hkdf.Key(sha256.New, shared, p.auth, string(info), 32)
	cek, _ := hkdf.Key(sha256.New, ikm, salt, "Content-Encoding: aes128gcm\x00", 16)
	nonce, _ := hkdf.Key(sha256.New, ikm, salt, "Content-Encoding: nonce\x00", 12)
	block, _ := aes.NewCipher(cek)
	gcm, _ := cipher.NewGCM(block)
	plain, err := gcm.Open(nil, nonce, ct, nil)
	if err != nil || len(plain) == 0 || plain[len(plain)-1] != 0x02 {
		p.fail("decrypt")
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	var msg map[string]string
	_ = json.Unmarshal(plain[:len(plain)-1], &msg)
	p.mu.Lock()
	p.got = append(p.got, msg)
	p.mu.Unlock()
	w.WriteHeader(http.StatusCreated)
}
