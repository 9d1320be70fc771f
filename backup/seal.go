package backup

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"

	"github.com/spells-dev/spells/vault/keys"
)

// What the store holds is sealed: every object is gzip, then AES-256-GCM
// under a backup key (bound to the object's name), and the backup key is
// kept in the bucket wrapped by the node's key-encryption key
// (keys/<id>). A leaked bucket, without the KEK, reveals nothing.

type keyObject struct {
	KEK     string `json:"kek"`     // the id of the KEK that wrapped it
	Wrapped []byte `json:"wrapped"` // the backup key, wrapped
}

// sealer seals and opens objects with the backup keys this node's KEK
// unwraps.
type sealer struct {
	id     string                 // the key new objects are sealed with
	keys   map[string]cipher.AEAD // every key this KEK unwraps, by id
	stored []byte                 // key id's object as the bucket holds it, to put back if the bucket loses it
}

const keyIDLen = 16 // hex characters of a backup key's id at the start of an object

// ErrNoKey is a bucket holding no backup key this node's KEK unwraps.
var ErrNoKey = errors.New("the bucket holds no backup key this node's key-encryption key unwraps (another KEK's backup, or none yet)")

// loadSealer reads the backup keys in the bucket this KEK unwraps, making
// one if there is none and create is set.
func loadSealer(ctx context.Context, b *Bucket, kek *keys.KEK, create bool) (*sealer, error) {
	s := &sealer{keys: map[string]cipher.AEAD{}}
	names, err := b.list(ctx, "keys/", "", 0)
	if err != nil {
		return nil, fmt.Errorf("backup keys: %w", err)
	}
	for _, n := range names {
		raw, err := b.get(ctx, n)
		if err != nil {
			return nil, fmt.Errorf("backup key %s: %w", n, err)
		}
		var ko keyObject
		if json.Unmarshal(raw, &ko) != nil || ko.KEK != kek.ID() {
			continue // another node's (another KEK's) key
		}
		id := n[len("keys/"):]
		plain, err := kek.Unwrap(ko.Wrapped, "spells backup key\x00"+id)
		if err != nil {
			return nil, fmt.Errorf("backup key %s: %w", id, err)
		}
		aead, err := gcm(plain)
		clear(plain)
		if err != nil {
			return nil, err
		}
		s.keys[id] = aead
		if s.id == "" || id > s.id {
			s.id, s.stored = id, raw
		}
	}
	if s.id != "" {
		return s, nil
	}
	if !create {
		return nil, ErrNoKey
	}
	raw, idb := make([]byte, 32), make([]byte, keyIDLen/2)
	if _, err := rand.Read(raw); err != nil {
		return nil, err
	}
	if _, err := rand.Read(idb); err != nil {
		return nil, err
	}
	id := hex.EncodeToString(idb)
	wrapped, err := kek.Wrap(raw, "spells backup key\x00"+id)
	if err != nil {
		return nil, err
	}
	body, _ := json.Marshal(keyObject{KEK: kek.ID(), Wrapped: wrapped})
	if err := b.put(ctx, "keys/"+id, body); err != nil {
		return nil, fmt.Errorf("store the backup key: %w", err)
	}
	aead, err := gcm(raw)
	clear(raw)
	if err != nil {
		return nil, err
	}
	s.id, s.keys[id], s.stored = id, aead, body
	return s, nil
}

func gcm(key []byte) (cipher.AEAD, error) {
	c, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(c)
}

// seal compresses and encrypts plain as the object name.
func (s *sealer) seal(name string, plain []byte) ([]byte, error) {
	var z bytes.Buffer
	w := gzip.NewWriter(&z)
	if _, err := w.Write(plain); err != nil {
		return nil, err
	}
	if err := w.Close(); err != nil {
		return nil, err
	}
	aead := s.keys[s.id]
	nonce := make([]byte, aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	out := append([]byte(s.id), nonce...)
	return aead.Seal(out, nonce, z.Bytes(), []byte(name)), nil
}

// ErrForeign is an object this node's KEK cannot open: sealed by a backup
// key another KEK wrapped, or changed.
var ErrForeign = errors.New("the object is sealed by a key this node's key-encryption key does not unwrap, or was changed")

// open decrypts and decompresses the object name.
func (s *sealer) open(name string, sealed []byte) ([]byte, error) {
	if len(sealed) < keyIDLen {
		return nil, ErrForeign
	}
	aead, ok := s.keys[string(sealed[:keyIDLen])]
	if !ok || len(sealed) < keyIDLen+aead.NonceSize() {
		return nil, ErrForeign
	}
	nonce := sealed[keyIDLen : keyIDLen+aead.NonceSize()]
	z, err := aead.Open(nil, nonce, sealed[keyIDLen+aead.NonceSize():], []byte(name))
	if err != nil {
		return nil, ErrForeign
	}
	r, err := gzip.NewReader(bytes.NewReader(z))
	if err != nil {
		return nil, err
	}
	return io.ReadAll(r)
}
