package hub

import (
	"context"
	"time"

	"github.com/coder/websocket"
	"github.com/ethereum/go-ethereum/common"
)

// Forwarding, in a cluster: a browser may connect to any node. When the
// vault a sign-in, resume or revoke names lives on another node, the
// client's node (the entry) opens a stream to it over the node link and
// waits for the verdict: bound (every later frame of the socket goes
// through the stream, untouched, and the vault's frames come back) or not
// (the answer is relayed, and the socket's next sign-in is routed
// afresh). On the vault's node the stream is served by a conn like any
// other, so the vault's own checks decide everything: the entry only
// relays bytes, and a forged, altered, reordered or replayed frame is
// refused there as it would be from a socket.

// Router says where the vault a client names lives. The cluster package
// implements it.
type Router interface {
	// Route returns nil when this node serves the vault, or the node to
	// forward to. Errors are told to the client (a *protocol.Error as it
	// is); a vault on a node that cannot be reached is node_unreachable.
	Route(ctx context.Context, vault common.Address) (Forwarder, error)
}

// Forwarder opens forwarded sessions on one node.
type Forwarder interface {
	// Open starts a stream for the client at remote whose socket was
	// issued nonce; frames from the vault's node go to down.
	Open(ctx context.Context, nonce, remote string, down Downstream) (Stream, error)
}

// Stream is the entry's half of a forwarded session.
type Stream interface {
	Send(frame []byte, binary bool) error // one client frame, in order
	Close()                               // the client left
}

// Downstream takes what the vault's node sends on a stream. Its methods
// never block.
type Downstream interface {
	Deliver(msg []byte) // a message of frames for the client
	Bound()             // the session is bound: route every later frame here
	// Closed ends the stream: StreamUnbound leaves the socket open and
	// unbound; any other code closes it with that code and reason.
	Closed(code websocket.StatusCode, reason string)
}

// Upstream is the vault node's half of a forwarded session: what its conn
// writes to.
type Upstream interface {
	Write(msg []byte) error
	Bound()
	Close(code websocket.StatusCode, reason string)
}

// StreamUnbound ends a stream whose sign-in bound nothing; it is never
// sent to a client.
const StreamUnbound websocket.StatusCode = 4999

// verdictTimeout bounds the wait for the vault's node to answer a
// forwarded sign-in.
const verdictTimeout = 30 * time.Second

// maxForwardedIn is how many frames of a forwarded session may wait for
// its worker. The entry rate-limits the client, so only a vault far
// behind reaches it; the stream is then closed (1013) rather than hold up
// the link every session shares.
const maxForwardedIn = 256
