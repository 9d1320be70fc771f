package keys

import (
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/rand"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"

	"github.com/spells-dev/spells/protocol"
)

// ErrUnavailable answers a request that needs the session key when the
// node cannot unseal it.
var ErrUnavailable = protocol.Errorf(protocol.CodeKeyUnavailable, "this node cannot unseal the vault's session key (its key-encryption key is not the one that sealed it)")

// Ring is a vault's keys as its file holds them: its data key wrapped by
// the node's KEK, and its current session key sealed by the data key.
// Nothing in it is secret without the KEK. The zero Ring has no keys.
type Ring struct {
	DataKey []byte // the vault's data key, wrapped by the KEK
	KEKID   string // the KEK that wrapped it
	KeyID   int64  // the current session key's row
	Sealed  []byte // the current session key, sealed by the data key
	Address common.Address
	Created int64 // unix ms
}

// HasKey reports whether the ring holds a session key.
func (r *Ring) HasKey() bool { return r.Sealed != nil }

// Account is what the vault shows of its keys: the session key's address,
// never the key (nil without one).
func (r *Ring) Account() *protocol.Account {
	if r.Sealed == nil {
		return nil
	}
	return &protocol.Account{SessionKey: r.Address.Hex(), KeyCreatedAt: r.Created}
}

// SessionKey is a session key sealed for storage.
type SessionKey struct {
	Address common.Address
	Sealed  []byte
}

// NewVault makes a new vault's data key, wrapped by k, and its first
// session key, sealed by the data key.
func NewVault(k *KEK, vaultID string) (wrapped []byte, first SessionKey, err error) {
	plain := make([]byte, 32)
	defer clear(plain)
	if _, err := rand.Read(plain); err != nil {
		return nil, SessionKey{}, err
	}
	if wrapped, err = seal(k.aead, plain, dataKeyAD(vaultID)); err != nil {
		return nil, SessionKey{}, err
	}
	dk, err := newGCM(plain)
	if err != nil {
		return nil, SessionKey{}, err
	}
	first, err = newSessionKey(vaultID, dk)
	return wrapped, first, err
}

// NewSessionKey makes a session key for the vault and seals it with the
// ring's data key (a rotation).
func (r *Ring) NewSessionKey(k *KEK, vaultID string) (SessionKey, error) {
	dk, err := r.dataKey(k, vaultID)
	if err != nil {
		return SessionKey{}, err
	}
	return newSessionKey(vaultID, dk)
}

// WithSessionKey unseals the current session key for fn and wipes it
// after (as far as Go lets one wipe memory: the big integers the signing
// code makes are not under our control). It fails with ErrUnavailable
// when k cannot unseal it.
func (r *Ring) WithSessionKey(k *KEK, vaultID string, fn func(key *ecdsa.PrivateKey) error) error {
	if r.Sealed == nil {
		return ErrUnavailable
	}
	dk, err := r.dataKey(k, vaultID)
	if err != nil {
		return err
	}
	raw, err := unseal(dk, r.Sealed, sessionKeyAD(vaultID, r.Address))
	if err != nil {
		return ErrUnavailable
	}
	defer clear(raw)
	key, err := crypto.ToECDSA(raw)
	if err != nil {
		return ErrUnavailable
	}
	defer key.D.SetInt64(0)
	return fn(key)
}

// dataKey unwraps the vault's data key.
func (r *Ring) dataKey(k *KEK, vaultID string) (cipher.AEAD, error) {
	if r.KEKID != k.ID() {
		return nil, ErrUnavailable
	}
	plain, err := unseal(k.aead, r.DataKey, dataKeyAD(vaultID))
	if err != nil {
		return nil, ErrUnavailable
	}
	defer clear(plain)
	return newGCM(plain)
}

// newSessionKey makes a session key and seals it with the data key dk.
func newSessionKey(vaultID string, dk cipher.AEAD) (SessionKey, error) {
	key, err := crypto.GenerateKey()
	if err != nil {
		return SessionKey{}, err
	}
	addr := crypto.PubkeyToAddress(key.PublicKey)
	raw := crypto.FromECDSA(key)
	defer clear(raw)
	key.D.SetInt64(0)
	sealed, err := seal(dk, raw, sessionKeyAD(vaultID, addr))
	return SessionKey{Address: addr, Sealed: sealed}, err
}
