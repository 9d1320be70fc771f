package keys

import (
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/spells-dev/spells/internal/atomicfile"
)

// KEK is a node's key-encryption key: it wraps every vault's data key.
type KEK struct {
	aead cipher.AEAD
	id   string
}

// KEKSize is the length of a key-encryption key in bytes.
const KEKSize = 32

// NewKEK makes a key-encryption key from 32 secret bytes.
func NewKEK(raw []byte) (*KEK, error) {
	if len(raw) != KEKSize {
		return nil, fmt.Errorf("a key-encryption key is %d bytes, not %d", KEKSize, len(raw))
	}
	aead, err := newGCM(raw)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(append([]byte("spells kek id\x00"), raw...))
	return &KEK{aead: aead, id: hex.EncodeToString(sum[:8])}, nil
}

// ParseKEK reads a key-encryption key written as 64 hex characters
// (an optional 0x and surrounding white space are allowed).
func ParseKEK(text string) (*KEK, error) {
	s := strings.TrimPrefix(strings.TrimSpace(text), "0x")
	raw, err := hex.DecodeString(s)
	if err != nil || len(raw) != KEKSize {
		return nil, fmt.Errorf("a key-encryption key is written as %d hex characters", 2*KEKSize)
	}
	return NewKEK(raw)
}

// GenerateKEK makes a random key-encryption key and returns it with its
// hex text (for a file).
func GenerateKEK() (*KEK, string, error) {
	raw := make([]byte, KEKSize)
	if _, err := rand.Read(raw); err != nil {
		return nil, "", err
	}
	k, err := NewKEK(raw)
	return k, hex.EncodeToString(raw), err
}

// ID names the key without revealing it: the first 8 bytes of a hash of
// it, in hex. The data directory records the ID of the key that sealed its
// vaults (CheckDir), so a node started with another key is refused.
func (k *KEK) ID() string { return k.id }

// kekIDFile in the data directory holds the ID of the KEK that seals its
// vaults' data keys.
const kekIDFile = "kek.id"

// ErrKEKMismatch is returned by CheckDir when the data directory's vault
// keys were sealed by another key-encryption key than the one given.
var ErrKEKMismatch = errors.New("the key-encryption key does not match the one that sealed this data directory's vault keys")

// CheckDir refuses a KEK other than the one the data directory dir
// records, and records k in a directory that has none yet. Nothing is
// changed when it refuses.
func CheckDir(dir string, k *KEK) error {
	p := filepath.Join(dir, kekIDFile)
	b, err := os.ReadFile(p)
	switch {
	case err == nil:
		if got := strings.TrimSpace(string(b)); got != k.ID() {
			return fmt.Errorf("%w (%s names key %s; the key given is %s)", ErrKEKMismatch, p, got, k.ID())
		}
		return nil
	case !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("read %s: %w", p, err)
	}
	return atomicfile.Write(p, []byte(k.ID()+"\n"))
}

// SealedByKEK reports whether the data directory at dir records a
// key-encryption key (so one must be given to use it).
func SealedByKEK(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, kekIDFile))
	return err == nil
}

// Wrap seals a secret of another part of the node (a backup key) with the
// KEK, bound to ad.
func (k *KEK) Wrap(plain []byte, ad string) ([]byte, error) { return seal(k.aead, plain, []byte(ad)) }

// Unwrap opens what Wrap sealed with the same ad; another KEK or ad is an
// error.
func (k *KEK) Unwrap(sealed []byte, ad string) ([]byte, error) {
	plain, err := unseal(k.aead, sealed, []byte(ad))
	if err != nil {
		return nil, fmt.Errorf("unwrap with key-encryption key %s: %w", k.id, err)
	}
	return plain, nil
}
