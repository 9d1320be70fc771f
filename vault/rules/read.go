package rules

import (
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"

	"github.com/spells-dev/spells/protocol"
)

// A chain read is a signal the node makes itself: at every block it reads
// what the read names (a view call's number, or an account's balance) and
// publishes it under the read's own name, read:<16 hex digits of the hash
// of what it reads>, so two triggers that read the same thing share one
// read, and a leaf on it is a signal leaf like any other.

// ReadKey is what a resolved read reads, as the node's reader takes it:
// "<contract>,<data>,<decimals>,<s|u>" (contract empty: a native balance,
// data the account); "" for nil.
func ReadKey(r *protocol.Read) string {
	if r == nil {
		return ""
	}
	sign := "u"
	if r.Signed {
		sign = "s"
	}
	return strings.ToLower(r.Contract) + "," + strings.ToLower(r.Data) + "," + strconv.Itoa(int(r.Decimals)) + "," + sign
}

// ReadSignal is the name of a resolved read's signal.
func ReadSignal(r *protocol.Read) string {
	sum := sha256.Sum256([]byte(ReadKey(r)))
	return protocol.ReadPrefix + hex.EncodeToString(sum[:8])
}

// ParseReadKey reads a ReadKey back.
func ParseReadKey(key string) (contract, data string, decimals uint8, signed, ok bool) {
	parts := strings.Split(key, ",")
	if len(parts) != 4 {
		return "", "", 0, false, false
	}
	d, err := strconv.ParseUint(parts[2], 10, 8)
	if err != nil {
		return "", "", 0, false, false
	}
	return parts[0], parts[1], uint8(d), parts[3] == "s", true
}
