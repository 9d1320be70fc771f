package keys

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"errors"
	"strings"

	"github.com/ethereum/go-ethereum/common"
)

func newGCM(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// seal encrypts plain under aead with a random nonce, bound to ad; the
// nonce leads the result.
func seal(aead cipher.AEAD, plain, ad []byte) ([]byte, error) {
	out := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plain)+aead.Overhead())
	if _, err := rand.Read(out); err != nil {
		return nil, err
	}
	return aead.Seal(out, out, plain, ad), nil
}

func unseal(aead cipher.AEAD, sealed, ad []byte) ([]byte, error) {
	if len(sealed) < aead.NonceSize()+aead.Overhead() {
		return nil, errors.New("sealed value too short")
	}
	n := aead.NonceSize()
	return aead.Open(nil, sealed[:n], sealed[n:], ad)
}

// A data key is bound to its vault, a session key to its vault and its
// address: a sealed value copied into another vault's row does not open.

func dataKeyAD(vaultID string) []byte { return []byte("spells data key\x00" + vaultID) }

func sessionKeyAD(vaultID string, addr common.Address) []byte {
	return []byte("spells session key\x00" + vaultID + "\x00" + strings.ToLower(addr.Hex()))
}
