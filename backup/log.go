package backup

import (
	"bytes"
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
)

// The objects a backup holds:
//   - keys/<id>: a backup key, wrapped by a KEK (seal.go);
//   - base/<vault>/<ms>-<version>-<chain>: a whole vault file at version,
//     committed by unix ms, which starts the chain of changes <chain>;
//   - log/<ms>-<node>-<seq>: one flush of a node, the changes of every
//     vault that changed since the flush before, each an entry of its
//     vault's chain.
// Names sort by time, so a restore lists a vault's bases and the logs
// after the one it starts from.

// Entry is one vault's changes in a log object: the changeset from the
// state after entry N-1 of chain Chain (N 1: after the base) to the vault
// at Version, committed by At (unix ms).
type Entry struct {
	Vault   string `json:"vault"`
	Chain   string `json:"chain"`
	N       uint64 `json:"n"`
	Version uint64 `json:"version"`
	At      int64  `json:"at"`
	Off     int    `json:"off"`
	Len     int    `json:"len"`
}

// logHeader opens a log object's plain text, followed by the changesets.
type logHeader struct {
	Node    string  `json:"node"`
	Entries []Entry `json:"entries"`
}

// encodeLog is a log object's plain text: its header (JSON) on one line,
// then every entry's changeset.
func encodeLog(node string, es []Entry, bodies [][]byte) []byte {
	off := 0
	for i := range es {
		es[i].Off, es[i].Len = off, len(bodies[i])
		off += len(bodies[i])
	}
	h, _ := json.Marshal(logHeader{Node: node, Entries: es})
	out := append(h, '\n')
	for _, b := range bodies {
		out = append(out, b...)
	}
	return out
}

// decodeLog reads a log object's plain text.
func decodeLog(plain []byte) (logHeader, []byte, error) {
	i := bytes.IndexByte(plain, '\n')
	if i < 0 {
		return logHeader{}, nil, fmt.Errorf("log object without a header")
	}
	var h logHeader
	if err := json.Unmarshal(plain[:i], &h); err != nil {
		return logHeader{}, nil, fmt.Errorf("log object header: %w", err)
	}
	body := plain[i+1:]
	for _, e := range h.Entries {
		if e.Off < 0 || e.Len < 0 || e.Off+e.Len > len(body) {
			return logHeader{}, nil, fmt.Errorf("log object entry of vault %s out of bounds", e.Vault)
		}
	}
	return h, body, nil
}

func logName(ms int64, node string, seq uint64) string {
	return fmt.Sprintf("log/%013d-%s-%010d", ms, node, seq)
}

func logTime(name string) (int64, bool) {
	s := strings.TrimPrefix(name, "log/")
	if len(s) < 13 {
		return 0, false
	}
	ms, err := strconv.ParseInt(s[:13], 10, 64)
	return ms, err == nil
}

// baseRef is a base object's name, read.
type baseRef struct {
	name    string
	ms      int64
	version uint64
	chain   string
}

func baseName(vault string, ms int64, version uint64, chain string) string {
	return fmt.Sprintf("base/%s/%013d-%020d-%s", vault, ms, version, chain)
}

func parseBase(name string) (baseRef, bool) {
	i := strings.LastIndexByte(name, '/')
	parts := strings.Split(name[i+1:], "-")
	if i < 0 || len(parts) != 3 {
		return baseRef{}, false
	}
	ms, err1 := strconv.ParseInt(parts[0], 10, 64)
	v, err2 := strconv.ParseUint(parts[1], 10, 64)
	if err1 != nil || err2 != nil {
		return baseRef{}, false
	}
	return baseRef{name: name, ms: ms, version: v, chain: parts[2]}, true
}
