package vault

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/ethereum/go-ethereum/crypto"
	"github.com/rs/zerolog"
	"zombiezen.com/go/sqlite"

	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/vault/actor"
	"github.com/spells-dev/spells/vault/keys"
	"github.com/spells-dev/spells/vault/store"
)

// lockedBuffer is a log destination tests can read while vaults write.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) Bytes() []byte {
	l.mu.Lock()
	defer l.mu.Unlock()
	return bytes.Clone(l.b.Bytes())
}

// rawSessionKey unseals the vault's current session key, as only the
// vault's own goroutine can.
func rawSessionKey(t testing.TB, v *actor.Vault) []byte {
	t.Helper()
	var raw []byte
	err := v.Inspect(context.Background(), func(conn *sqlite.Conn) error {
		ring, err := store.ReadRing(conn)
		if err != nil {
			return err
		}
		return ring.WithSessionKey(testKEK, v.ID(), func(k *ecdsa.PrivateKey) error {
			raw = crypto.FromECDSA(k)
			return nil
		})
	})
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

// encodings are the forms a leaked key could take in text or bytes.
func encodings(raw []byte) map[string][]byte {
	h := hex.EncodeToString(raw)
	return map[string][]byte{
		"raw bytes":     raw,
		"hex":           []byte(h),
		"upper hex":     []byte(strings.ToUpper(h)),
		"base64":        []byte(base64.StdEncoding.EncodeToString(raw)),
		"base64 url":    []byte(base64.RawURLEncoding.EncodeToString(raw)),
		"half of hex":   []byte(h[:32]),
		"last half hex": []byte(h[32:]),
	}
}

func assertNoKey(t *testing.T, where string, data []byte, keys ...[]byte) {
	t.Helper()
	for i, raw := range keys {
		for form, b := range encodings(raw) {
			if bytes.Contains(data, b) {
				t.Errorf("session key %d found in %s as %s", i, where, form)
			}
		}
	}
}

// TestSessionKeyNeverLeavesTheVault: a vault makes its session key at
// creation, shows only its address, and neither its file (database and
// WAL), its logs, nor any frame it sends carries the key, before or after
// the owner rotates it.
func TestSessionKeyNeverLeavesTheVault(t *testing.T) {
	logs := &lockedBuffer{}
	e := newEnvWith(t, func(e *env) { e.log = zerolog.New(logs).Level(zerolog.DebugLevel) })
	u := e.newUser()
	first := rawSessionKey(t, u.v)
	k1, err := crypto.ToECDSA(first)
	if err != nil {
		t.Fatal(err)
	}
	st := u.state(t)
	if st.Account == nil || st.Account.SessionKey != crypto.PubkeyToAddress(k1.PublicKey).Hex() {
		t.Fatalf("account %+v, want the session key's address %s", st.Account, crypto.PubkeyToAddress(k1.PublicKey).Hex())
	}
	u.create(t, protocol.TriggerSpec{Name: "dip", Condition: below("X", 10), Action: swap})
	ack := u.mustCmd(t, protocol.OpKeyRotate, nil)
	second := rawSessionKey(t, u.v)
	k2, _ := crypto.ToECDSA(second)
	newAddr := crypto.PubkeyToAddress(k2.PublicKey).Hex()
	if bytes.Equal(first, second) || !strings.Contains(string(ack.Result), newAddr) {
		t.Fatalf("rotation: result %s, new key %s (same as the old: %v)", ack.Result, newAddr, bytes.Equal(first, second))
	}
	acct := u.sub.diffWith(t, protocol.KindAccount)
	if len(acct) != 1 || !strings.Contains(string(acct[0].Data), newAddr) {
		t.Fatalf("account diff %v, want the new key %s", acct, newAddr)
	}
	// Every frame the subscriber got, and the snapshot a new one gets.
	var frames bytes.Buffer
	for len(u.sub.ch) > 0 {
		frames.Write(<-u.sub.ch)
	}
	u2 := e.signIn(u.w)
	u2.state(t)
	for len(u2.sub.ch) > 0 {
		frames.Write(<-u2.sub.ch)
	}
	p := actor.Path(e.dir, actor.ID(u.w.Address()))
	wal, _ := os.ReadFile(p + "-wal")
	e.m.Close(context.Background())
	db, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	assertNoKey(t, "the frames", frames.Bytes(), first, second)
	assertNoKey(t, "the logs", logs.Bytes(), first, second)
	assertNoKey(t, "the vault file", db, first, second)
	assertNoKey(t, "the WAL", wal, first, second)
	if !bytes.Contains(logs.Bytes(), []byte("session key rotated")) {
		t.Error("the rotation was not logged")
	}
	// After a restart the vault signs with the key it rotated to.
	e.start()
	v, err := e.m.Vault(context.Background(), u.w.Address())
	if err != nil {
		t.Fatal(err)
	}
	if got := rawSessionKey(t, v); !bytes.Equal(got, second) {
		t.Fatal("after a restart the vault holds another session key than the one it rotated to")
	}
}

// TestAnotherKEKIsRefusedAtStart: a data directory records the id of the
// key that sealed its vaults; a manager given another key is refused and
// changes nothing.
func TestAnotherKEKIsRefusedAtStart(t *testing.T) {
	e := newEnv(t)
	e.newUser()
	e.m.Close(context.Background())
	before, err := os.ReadFile(filepath.Join(e.dir, "kek.id"))
	if err != nil {
		t.Fatal(err)
	}
	other, _, _ := keys.GenerateKEK()
	_, err = NewManager(Config{Dir: e.dir, Nonces: e.nonces, KEK: other})
	if !errors.Is(err, keys.ErrKEKMismatch) || !strings.Contains(err.Error(), testKEK.ID()) {
		t.Fatalf("another KEK: err = %v, want %v naming the recorded key", err, keys.ErrKEKMismatch)
	}
	after, _ := os.ReadFile(filepath.Join(e.dir, "kek.id"))
	if !bytes.Equal(before, after) {
		t.Fatal("a refused KEK changed the recorded key id")
	}
	if !keys.SealedByKEK(e.dir) {
		t.Fatal("SealedByKEK: false for a directory with vaults")
	}
	e.start() // the right key still opens it
}

// TestVaultSealedByAnotherKEK: a vault file brought from a node with
// another key-encryption key still serves its owner, but cannot sign: a
// rotation (which needs its data key) is refused as key_unavailable, and
// the file is not changed.
func TestVaultSealedByAnotherKEK(t *testing.T) {
	src := newEnv(t)
	u := src.newUser()
	src.m.Close(context.Background())
	e := newEnvWith(t, nil)
	e.m.Close(context.Background())
	p := actor.Path(src.dir, actor.ID(u.w.Address()))
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	dst := actor.Path(e.dir, actor.ID(u.w.Address()))
	if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o600); err != nil {
		t.Fatal(err)
	}
	// The destination node's own key differs from the source's.
	os.Remove(filepath.Join(e.dir, "kek.id"))
	other, _, _ := keys.GenerateKEK()
	m, err := NewManager(Config{Dir: e.dir, Domains: []string{testDomain}, ChainID: 1, Nonces: e.nonces, KEK: other, Clock: e.clock,
		Latest: func(string) (float64, bool) { return 0, false }})
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	e.m = m
	t.Cleanup(func() { m.Close(context.Background()) })
	u2 := e.signIn(u.w)
	_, err = u2.cmd(t, protocol.OpKeyRotate, nil)
	wantCode(t, err, protocol.CodeKeyUnavailable)
	if st := u2.state(t); st.Account == nil {
		t.Fatal("the account is hidden; it should show the sealed key's address")
	}
}
