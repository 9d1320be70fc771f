package protocol

import (
	"bytes"
	"github.com/ethereum/go-ethereum/common"
	"math/big"
	"testing"

	"github.com/ethereum/go-ethereum/crypto"
)

func signed(t *testing.T) (msg, sig []byte, want string) {
	t.Helper()
	key, err := crypto.GenerateKey()
	if err != nil {
		t.Fatal(err)
	}
	msg = []byte("hello spells")
	sig, err = SignPersonal(key, msg)
	if err != nil {
		t.Fatal(err)
	}
	return msg, sig, crypto.PubkeyToAddress(key.PublicKey).Hex()
}

func wantCode(t *testing.T, err error, code Code) {
	t.Helper()
	pe, ok := err.(*Error)
	if !ok || pe.Code != code {
		t.Fatalf("err = %v, want code %s", err, code)
	}
}

func TestRecoverPersonalAcceptsBothVForms(t *testing.T) {
	msg, sig, want := signed(t)
	for _, delta := range []byte{0, 27} {
		s := append([]byte(nil), sig...)
		s[64] = sig[64] - 27 + delta
		got, err := RecoverPersonal(msg, s)
		if err != nil || got.Hex() != want {
			t.Fatalf("v=%d: got %s, %v; want %s", s[64], got.Hex(), err, want)
		}
	}
}

func TestRecoverPersonalRefusesMalformed(t *testing.T) {
	msg, sig, _ := signed(t)
	cases := map[string][]byte{
		"empty":    {},
		"64 bytes": sig[:64],
		"66 bytes": append(append([]byte(nil), sig...), 0),
	}
	for _, v := range []byte{2, 26, 29, 255} {
		s := append([]byte(nil), sig...)
		s[64] = v
		cases["v="+string(rune('0'+v%10))+"x"] = s
	}
	zeroR := append([]byte(nil), sig...)
	copy(zeroR[:32], make([]byte, 32))
	cases["zero r"] = zeroR
	for name, s := range cases {
		t.Run(name, func(t *testing.T) {
			_, err := RecoverPersonal(msg, s)
			wantCode(t, err, CodeBadSignature)
		})
	}
}

// TestRecoverPersonalRefusesHighS builds the malleable twin of a valid
// signature (s' = N - s, v flipped), which recovers the same key, and
// checks that it is refused.
func TestRecoverPersonalRefusesHighS(t *testing.T) {
	msg, sig, _ := signed(t)
	n := crypto.S256().Params().N
	s := new(big.Int).SetBytes(sig[32:64])
	twin := append([]byte(nil), sig...)
	new(big.Int).Sub(n, s).FillBytes(twin[32:64])
	twin[64] = 27 + (1 - (sig[64] - 27))
	_, err := RecoverPersonal(msg, twin)
	wantCode(t, err, CodeBadSignature)
}

func TestRecoverPersonalOtherMessage(t *testing.T) {
	_, sig, want := signed(t)
	got, err := RecoverPersonal([]byte("tampered"), sig)
	if err == nil && got.Hex() == want {
		t.Fatal("a signature over another message recovered the signer")
	}
}

// FuzzRecoverPersonal feeds arbitrary signatures: recovery must never
// panic, and whatever it accepts recovers a non-zero address.
func FuzzRecoverPersonal(f *testing.F) {
	f.Add([]byte("hello"), make([]byte, 65))
	f.Add([]byte(""), bytes.Repeat([]byte{0xff}, 65))
	f.Add([]byte("x"), append(bytes.Repeat([]byte{1}, 64), 27))
	f.Fuzz(func(t *testing.T, msg, sig []byte) {
		addr, err := RecoverPersonal(msg, sig)
		if err == nil && (addr == common.Address{}) {
			t.Fatal("accepted a signature recovering the zero address")
		}
		if err != nil {
			if _, ok := err.(*Error); !ok {
				t.Fatalf("error is not a protocol error: %v", err)
			}
		}
	})
}
