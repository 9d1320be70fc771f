package protocol

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
)

// Export is vault.export's answer: the owner's data as the vault holds it
// (State, as a snapshot shows it: never any key material) and the vault's
// change log as it keeps it (its newest versions), each entry a link of a
// hash chain anyone can check offline (VerifyExport, PROTOCOL.md §5).
type Export struct {
	State State         `json:"state"`
	Log   []ExportEntry `json:"log"`
	Head  string        `json:"head"` // the last entry's hash (the zero hash with no entry)
}

// ExportEntry is one version of the change log: its changes exactly as the
// vault stored them, and its hash.
type ExportEntry struct {
	Version uint64          `json:"version"`
	At      int64           `json:"at"`
	Changes json.RawMessage `json:"changes"`
	Hash    string          `json:"hash"`
}

// ExportHash links one version to the hash before it: SHA-256 of prev
// (32 bytes) ‖ version (8 bytes, big-endian) ‖ at (8 bytes, big-endian,
// two's complement) ‖ the changes' bytes as exported.
func ExportHash(prev [32]byte, version uint64, at int64, changes []byte) [32]byte {
	h := sha256.New()
	h.Write(prev[:])
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], version)
	binary.BigEndian.PutUint64(b[8:], uint64(at))
	h.Write(b[:])
	h.Write(changes)
	var out [32]byte
	copy(out[:], h.Sum(nil))
	return out
}

// HashHex writes a hash as exports do: 0x and 64 hex digits.
func HashHex(h [32]byte) string { return "0x" + hex.EncodeToString(h[:]) }

// VerifyExport checks an export's chain: from the zero hash, each entry's
// hash links its version, time and changes to the one before; versions
// rise one at a time; Head is the last hash; and the last version is the
// state's.
func VerifyExport(e Export) error {
	var prev [32]byte
	for i, x := range e.Log {
		if i > 0 && x.Version != e.Log[i-1].Version+1 {
			return fmt.Errorf("entry %d: version %d follows %d", i, x.Version, e.Log[i-1].Version)
		}
		h := ExportHash(prev, x.Version, x.At, x.Changes)
		if HashHex(h) != x.Hash {
			return fmt.Errorf("entry %d (version %d): its hash is not the link of its changes to the entry before", i, x.Version)
		}
		prev = h
	}
	if HashHex(prev) != e.Head {
		return fmt.Errorf("the head %s is not the last entry's hash", e.Head)
	}
	if n := len(e.Log); n > 0 && e.Log[n-1].Version != e.State.Version {
		return fmt.Errorf("the log ends at version %d, the state is at %d", e.Log[n-1].Version, e.State.Version)
	}
	return nil
}
