package hub

import (
	"context"
	"time"

	"github.com/ethereum/go-ethereum/common"

	"github.com/spells-dev/spells/protocol"
)

// Vaults is what the hub needs of the node's vaults: it hands them what
// clients send and decides nothing itself (the vaults check every
// signature). The server gives it the node's vault manager.
type Vaults interface {
	// SignIn verifies a Sign-In with Ethereum and binds sub to a new
	// session of the vault it names; r.Nonce is the nonce the hub issued on
	// the socket. Errors are *protocol.Error.
	SignIn(ctx context.Context, r SignIn, sub Subscriber) (Session, error)
	// Resume binds sub to an existing session: body is a protocol.Resume
	// signed by the session's delegate key, naming nonce.
	Resume(ctx context.Context, body, sig, nonce string, sub Subscriber) (Session, error)
	// Revoke ends every session of the vault an owner-signed revoke names,
	// and answers how many ended.
	Revoke(ctx context.Context, r SignIn) (int, error)
	// SignalReceived hands a signal value, from origin, received at
	// received, to the vaults it concerns. It must not wait.
	SignalReceived(name string, value float64, received time.Time, origin protocol.SignalOrigin) int
}

// SignIn is a sign-in (or a revoke) as the hub received it. The vaults
// trust none of it: Nonce is only the nonce the hub says it issued on this
// socket, checked in addition to their own checks.
type SignIn struct {
	Message   string
	Signature string
	Nonce     string
	Since     *uint64
	From      string // the source address the per-address limits count it under (an IPv4 address or an IPv6 /64)
}

// Session is a socket's binding to a session of a vault.
type Session interface {
	Vault() common.Address
	ID() string
	// Command queues a signed command of the session; reply runs once it
	// is durable or refused, in the order queued, and must not block. An
	// error means the command was not queued and reply never runs.
	Command(ctx context.Context, body, sig string, reply func(protocol.Ack, error)) error
	// Detach stops the vault's frames to sub.
	Detach(sub Subscriber)
}

// Subscriber is what a vault sends its frames to: a connection. Send must
// not block; false means the connection's queue is full (the vault drops
// it, and the client resumes). A connection may also be told, by methods
// the vault looks for, that its session ended, its vault ended under it,
// or its vault moved (write.go).
type Subscriber interface {
	Send(frame []byte) bool
}
