package cluster

import (
	"crypto/rand"
	"encoding/binary"
	"encoding/hex"
	"strings"
	"time"

	"github.com/coder/websocket"
	"github.com/ethereum/go-ethereum/common"
)

// What the node link carries: its records, its timings, and the payloads
// of a move and of a faucet request (PROTOCOL.md §10).

// The node link: one WebSocket per pair of nodes (GET /v1/node-link on
// the node's own listener), authenticated both ways with the cluster
// secret, multiplexing every session one node forwards to the other.
// PROTOCOL.md §10 has the handshake and the records.
//
// A record is one binary message: a kind byte, a 4-byte stream id (big
// endian) and a payload. The node that opens a stream picks its id: odd
// on the node that dialed the link, even on the other, so both may open
// streams at once.
const (
	recOpen   byte = 1  // entry → vault's node: {"nonce", "remote"}
	recText   byte = 2  // a client frame (entry → vault's node), a message of frames (back)
	recBinary byte = 3  // a binary client frame (refused there, as from a socket)
	recBound  byte = 4  // vault's node → entry: the session is bound
	recClose  byte = 5  // either way: 2-byte close code and reason; the stream is over
	recFund   byte = 10 // {"chain","owner","key"}: fund a new session key from the dev faucet
	linkPath       = "/v1/node-link"
	linkProto      = "spells-node-link.v1"
	headerLen      = 5
)

// Records of a move on the node link (beside the session records).
const (
	recMoveOffer  byte = 6 // {"vault","epoch","sum","size"}, then recMoveData up to size
	recMoveData   byte = 7
	recMoveCommit byte = 8 // {"vault","epoch","abort"}
	recReply      byte = 9 // {"error"}: "" is success
)

// Link timings.
const (
	handshakeTimeout = 5 * time.Second
	linkWriteTimeout = 10 * time.Second
	linkPing         = 10 * time.Second
	linkReadLimit    = 16 << 20 // a vault's snapshot and a gathered message fit
	linkWait         = 3 * time.Second
)

// Dials to a peer that refused the last one wait between minDialBackoff
// and maxDialBackoff, doubling.
const (
	minDialBackoff = 100 * time.Millisecond
	maxDialBackoff = 5 * time.Second
)

// maxHandshakes is how many node link handshakes may run at once; more
// are refused with 503 before the upgrade.
const maxHandshakes = 16

const (
	moveChunk      = 1 << 20
	maxMoveSize    = 256 << 20
	switchDeadline = 20 * time.Second // from the receiver's ready to the directory's switch
	orphanAfter    = time.Minute      // a received file the directory never names is discarded after this
	moveParallel   = 4
)

func closePayload(code websocket.StatusCode, reason string) []byte {
	if len(reason) > 120 {
		reason = reason[:120]
	}
	b := make([]byte, 2, 2+len(reason))
	binary.BigEndian.PutUint16(b, uint16(code))
	return append(b, reason...)
}

type moveOffer struct {
	KEK   string `json:"kek"` // the sender's key-encryption key's id: the receiver must hold the same
	Vault string `json:"vault"`
	Epoch uint64 `json:"epoch"`
	Sum   string `json:"sum"`
	Size  int    `json:"size"`
}

type moveCommit struct {
	Vault string `json:"vault"`
	Epoch uint64 `json:"epoch"`
	Abort bool   `json:"abort,omitempty"`
}

type fundRequest struct {
	Chain uint64 `json:"chain"`
	Owner string `json:"owner"`
	Key   string `json:"key"`
}

type hello struct {
	Node      string `json:"node"`
	Challenge string `json:"challenge,omitempty"`
	Proof     string `json:"proof,omitempty"`
}

func challenge() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func idOf(a common.Address) string { return strings.ToLower(a.Hex()) }

func randomID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
