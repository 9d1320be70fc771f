package protocol

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"math/big"
	"strings"
)

// DelegateResourcePrefix starts the SIWE resource that names a session's
// delegate key: the prefix followed by the base64url (no padding) SEC 1
// uncompressed P-256 point, 65 bytes, as WebCrypto's exportKey("raw") gives.
const DelegateResourcePrefix = "urn:spells:delegate:p256:"

var b64 = base64.RawURLEncoding

// DelegateFromResources finds the one delegate key named in a SIWE
// message's resources. Errors are *Error with CodeDelegateMissing.
func DelegateFromResources(resources []string) (*ecdsa.PublicKey, error) {
	var found *ecdsa.PublicKey
	for _, r := range resources {
		enc, ok := strings.CutPrefix(r, DelegateResourcePrefix)
		if !ok {
			continue
		}
		if found != nil {
			return nil, Errorf(CodeDelegateMissing, "more than one delegate key in resources")
		}
		pub, err := ParseDelegateKey(enc)
		if err != nil {
			return nil, err
		}
		found = pub
	}
	if found == nil {
		return nil, Errorf(CodeDelegateMissing, "resources name no %s key", DelegateResourcePrefix)
	}
	return found, nil
}

// RevokeResource, named in the SIWE Resources of a revoke (and no delegate
// key with it), asks the vault to end every one of its sessions.
const RevokeResource = "urn:spells:revoke:sessions"

// IsRevoke reports whether resources ask for a revoke: exactly the revoke
// resource and no delegate key.
func IsRevoke(resources []string) bool {
	revoke := false
	for _, r := range resources {
		switch {
		case r == RevokeResource:
			revoke = true
		case strings.HasPrefix(r, DelegateResourcePrefix):
			return false
		}
	}
	return revoke
}

// ParseDelegateKey decodes a base64url uncompressed P-256 public key.
func ParseDelegateKey(enc string) (*ecdsa.PublicKey, error) {
	raw, err := b64.DecodeString(enc)
	if err != nil {
		return nil, Errorf(CodeDelegateMissing, "delegate key is not base64url without padding")
	}
	pub, err := ecdsa.ParseUncompressedPublicKey(elliptic.P256(), raw)
	if err != nil {
		return nil, Errorf(CodeDelegateMissing, "delegate key is not an uncompressed P-256 point (65 bytes, 0x04 || X || Y)")
	}
	return pub, nil
}

// EncodeDelegateKey is the inverse of ParseDelegateKey.
func EncodeDelegateKey(pub *ecdsa.PublicKey) string {
	raw, err := pub.Bytes()
	if err != nil {
		panic(fmt.Sprintf("encode delegate key: %v", err)) // only for invalid keys we never make
	}
	return b64.EncodeToString(raw)
}

// VerifyBody checks sig, a base64url IEEE P1363 P-256 signature (r || s, 32
// bytes each; what WebCrypto's sign returns) with SHA-256, over the UTF-8
// bytes of body. Errors are *Error with CodeBadCmdSignature.
func VerifyBody(pub *ecdsa.PublicKey, body, sig string) error {
	raw, err := b64.DecodeString(sig)
	if err != nil || len(raw) != 64 {
		return Errorf(CodeBadCmdSignature, "sig must be 64 bytes of base64url")
	}
	digest := sha256.Sum256([]byte(body))
	r, s := new(big.Int).SetBytes(raw[:32]), new(big.Int).SetBytes(raw[32:])
	if !ecdsa.Verify(pub, digest[:], r, s) {
		return Errorf(CodeBadCmdSignature, "sig does not verify over body with the session's delegate key")
	}
	return nil
}

// Delegate is a session's P-256 key pair, held by a client. Browsers keep
// theirs non-extractable in WebCrypto; Go clients use this.
type Delegate struct {
	key *ecdsa.PrivateKey
}

// NewDelegate makes a fresh delegate key.
func NewDelegate() (*Delegate, error) {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("new delegate: %w", err)
	}
	return &Delegate{key: k}, nil
}

// Public returns the delegate's public key.
func (d *Delegate) Public() *ecdsa.PublicKey { return &d.key.PublicKey }

// Resource is the SIWE resource naming this delegate.
func (d *Delegate) Resource() string {
	return DelegateResourcePrefix + EncodeDelegateKey(&d.key.PublicKey)
}

// Sign signs body and returns the base64url P1363 signature.
func (d *Delegate) Sign(body string) (string, error) {
	digest := sha256.Sum256([]byte(body))
	r, s, err := ecdsa.Sign(rand.Reader, d.key, digest[:])
	if err != nil {
		return "", fmt.Errorf("delegate sign: %w", err)
	}
	raw := make([]byte, 64)
	r.FillBytes(raw[:32])
	s.FillBytes(raw[32:])
	return b64.EncodeToString(raw), nil
}
