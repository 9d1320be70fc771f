package protocol

import (
	"crypto/ecdsa"
	"encoding/hex"
	"fmt"
	"math/big"
	"strings"

	"github.com/ethereum/go-ethereum/accounts"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"
)

// DecodeHexSignature decodes a 0x-prefixed hex wallet signature. It does not
// check the length; RecoverPersonal does.
func DecodeHexSignature(s string) ([]byte, error) {
	if !strings.HasPrefix(s, "0x") {
		return nil, Errorf(CodeBadSignature, "signature must be 0x-prefixed hex")
	}
	b, err := hex.DecodeString(s[2:])
	if err != nil {
		return nil, Errorf(CodeBadSignature, "signature is not hex")
	}
	return b, nil
}

// RecoverPersonal returns the address whose key made sig, an EIP-191
// personal_sign signature (r || s || v, 65 bytes) over msg. It accepts
// v = 0/1 and 27/28 and refuses out-of-range r or s, the high-s twin of a
// valid signature, and a recovered zero address. Errors are *Error with
// CodeBadSignature.
func RecoverPersonal(msg, sig []byte) (common.Address, error) {
	if len(sig) != crypto.SignatureLength {
		return common.Address{}, Errorf(CodeBadSignature, "signature must be %d bytes, got %d", crypto.SignatureLength, len(sig))
	}
	norm := make([]byte, len(sig))
	copy(norm, sig)
	v := norm[64]
	switch v {
	case 27, 28:
		v -= 27
	case 0, 1:
	default:
		return common.Address{}, Errorf(CodeBadSignature, "signature v must be 0, 1, 27 or 28, got %d", sig[64])
	}
	norm[64] = v
	r, s := new(big.Int).SetBytes(norm[:32]), new(big.Int).SetBytes(norm[32:64])
	if !crypto.ValidateSignatureValues(v, r, s, true) {
		return common.Address{}, Errorf(CodeBadSignature, "signature r or s out of range, or s in the upper half (malleable)")
	}
	pub, err := crypto.SigToPub(accounts.TextHash(msg), norm)
	if err != nil {
		return common.Address{}, Errorf(CodeBadSignature, "signature does not recover a public key")
	}
	addr := crypto.PubkeyToAddress(*pub)
	if (addr == common.Address{}) {
		return common.Address{}, Errorf(CodeBadSignature, "signature recovers the zero address")
	}
	return addr, nil
}

// SignPersonal signs msg as personal_sign does (v = 27/28). For tests, the
// Go client and the bench; browsers use their wallet.
func SignPersonal(key *ecdsa.PrivateKey, msg []byte) ([]byte, error) {
	sig, err := crypto.Sign(accounts.TextHash(msg), key)
	if err != nil {
		return nil, fmt.Errorf("sign personal message: %w", err)
	}
	sig[64] += 27
	return sig, nil
}
