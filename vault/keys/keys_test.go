package keys

import (
	"bytes"
	"crypto/ecdsa"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/ethereum/go-ethereum/crypto"
)

func mustKEK(t *testing.T) *KEK {
	t.Helper()
	k, _, err := GenerateKEK()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// newRing is a vault's ring as its file would hold it right after
// creation.
func newRing(t *testing.T, k *KEK, vault string) Ring {
	t.Helper()
	wrapped, first, err := NewVault(k, vault)
	if err != nil {
		t.Fatal(err)
	}
	return Ring{DataKey: wrapped, KEKID: k.ID(), Sealed: first.Sealed, Address: first.Address}
}

func unsealed(t *testing.T, r Ring, k *KEK, vault string) (*ecdsa.PrivateKey, error) {
	t.Helper()
	var got *ecdsa.PrivateKey
	err := r.WithSessionKey(k, vault, func(key *ecdsa.PrivateKey) error {
		got = &ecdsa.PrivateKey{PublicKey: key.PublicKey}
		if crypto.PubkeyToAddress(key.PublicKey) != r.Address {
			t.Fatal("the unsealed key is not the ring's address's")
		}
		return nil
	})
	return got, err
}

// A ring opens with its own KEK, for its own vault, and with nothing else:
// the sealed values are bound to the vault and the key's address.
func TestRingOpensOnlyWhereItBelongs(t *testing.T) {
	k := mustKEK(t)
	const vault = "0x00000000000000000000000000000000000000aa"
	r := newRing(t, k, vault)
	if _, err := unsealed(t, r, k, vault); err != nil {
		t.Fatalf("own KEK: %v", err)
	}
	other := mustKEK(t)
	moved := r
	moved.KEKID = other.ID()
	for _, c := range []struct {
		what  string
		r     Ring
		k     *KEK
		vault string
	}{
		{"another KEK", r, other, vault},
		{"another KEK claiming to have sealed it", moved, other, vault},
		{"another vault's row", r, k, "0x00000000000000000000000000000000000000bb"},
		{"the sealed key under another address", Ring{DataKey: r.DataKey, KEKID: r.KEKID, Sealed: r.Sealed, Address: crypto.PubkeyToAddress(mustKey(t).PublicKey)}, k, vault},
		{"a truncated sealed key", Ring{DataKey: r.DataKey, KEKID: r.KEKID, Sealed: r.Sealed[:10], Address: r.Address}, k, vault},
		{"no key", Ring{}, k, vault},
	} {
		if _, err := unsealed(t, c.r, c.k, c.vault); !errors.Is(err, ErrUnavailable) {
			t.Errorf("%s: err = %v, want ErrUnavailable", c.what, err)
		}
	}
}

func mustKey(t *testing.T) *ecdsa.PrivateKey {
	k, err := crypto.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// A rotation seals a new key with the same data key; the ring never holds
// the key in the clear.
func TestRotationSealsANewKey(t *testing.T) {
	k := mustKEK(t)
	const vault = "0x00000000000000000000000000000000000000aa"
	r := newRing(t, k, vault)
	next, err := r.NewSessionKey(k, vault)
	if err != nil {
		t.Fatal(err)
	}
	if next.Address == r.Address {
		t.Fatal("the rotation kept the address")
	}
	var raw []byte
	rotated := Ring{DataKey: r.DataKey, KEKID: r.KEKID, Sealed: next.Sealed, Address: next.Address}
	if err := rotated.WithSessionKey(k, vault, func(key *ecdsa.PrivateKey) error {
		raw = crypto.FromECDSA(key)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(next.Sealed, raw) || bytes.Contains(rotated.DataKey, raw) {
		t.Fatal("the key is readable in what is stored")
	}
	if _, err := r.NewSessionKey(mustKEK(t), vault); !errors.Is(err, ErrUnavailable) {
		t.Fatalf("a rotation under another KEK: %v, want ErrUnavailable", err)
	}
	if a := rotated.Account(); a == nil || a.SessionKey != next.Address.Hex() {
		t.Fatalf("account %+v", a)
	}
	if (&Ring{}).Account() != nil {
		t.Fatal("a ring without a key shows an account")
	}
}

// CheckDir records the first KEK and refuses another, changing nothing.
func TestCheckDir(t *testing.T) {
	dir := t.TempDir()
	k := mustKEK(t)
	if SealedByKEK(dir) {
		t.Fatal("an empty directory is sealed")
	}
	if err := CheckDir(dir, k); err != nil {
		t.Fatal(err)
	}
	before, _ := os.ReadFile(filepath.Join(dir, kekIDFile))
	if err := CheckDir(dir, k); err != nil {
		t.Fatalf("the same key again: %v", err)
	}
	err := CheckDir(dir, mustKEK(t))
	if !errors.Is(err, ErrKEKMismatch) || !strings.Contains(err.Error(), k.ID()) {
		t.Fatalf("another key: %v", err)
	}
	after, _ := os.ReadFile(filepath.Join(dir, kekIDFile))
	if !bytes.Equal(before, after) || !SealedByKEK(dir) {
		t.Fatal("a refused key changed the record")
	}
}

func TestParseKEK(t *testing.T) {
	_, text, err := GenerateKEK()
	if err != nil {
		t.Fatal(err)
	}
	a, err := ParseKEK(" 0x" + text + "\n")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := ParseKEK(text)
	if a.ID() != b.ID() || len(a.ID()) != 16 {
		t.Fatalf("ids %q %q", a.ID(), b.ID())
	}
	for _, bad := range []string{"", text[:62], text + "00", "zz" + text[2:]} {
		if _, err := ParseKEK(bad); err == nil {
			t.Errorf("ParseKEK(%q) took it", bad)
		}
	}
	if _, err := NewKEK(make([]byte, 16)); err == nil {
		t.Error("a 16-byte KEK was taken")
	}
}
