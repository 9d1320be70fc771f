package vault

import (
	"encoding/hex"
	"math/big"
	"os"

	"github.com/ethereum/go-ethereum/crypto"
)

func highSTwin(sig []byte) []byte {
	n := crypto.S256().Params().N
	twin := append([]byte(nil), sig...)
	s := new(big.Int).SetBytes(sig[32:64])
	new(big.Int).Sub(n, s).FillBytes(twin[32:64])
	twin[64] = 27 + (1 - (sig[64] - 27))
	return twin
}

func hexOf(b []byte) string { return hex.EncodeToString(b) }

func writeFile(p string, b []byte) error {
	_ = os.Remove(p + "-wal")
	_ = os.Remove(p + "-shm")
	return os.WriteFile(p, b, 0o600)
}
