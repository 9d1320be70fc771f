package hub

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/rs/zerolog"
	"golang.org/x/time/rate"

	"github.com/spells-dev/spells/internal/clock"
	"github.com/spells-dev/spells/protocol"
)

// What a Hub is made of: its options, and the state of the hub, of each
// connection and of the signals' fan-out. Their methods are in the files
// above this one.

// Config configures a Hub. Vaults, Nonces and Bus are required; every
// other zero value gets a working default.
type Config struct {
	Vaults  Vaults
	Nonces  *protocol.NonceIssuer
	Bus     Bus
	History *History // default: a new History

	Domains []string // SIWE domains, told to clients in the challenge
	ChainID uint64   // told to clients in the challenge (default 1)
	Node    string   // this node's name, told in the challenge

	// OriginPatterns lists extra hosts (path.Match patterns, matched
	// against the Origin's host, or scheme://host when the pattern has
	// "://") that browsers may connect from. The request's own host is
	// always allowed; a missing Origin (non-browser client) is allowed;
	// "null" and anything else is refused with 403.
	OriginPatterns []string

	ReadLimit     int64         // bytes per frame (default 64 KiB)
	SendQueue     int           // vault frames queued per connection at most (default 1024; memory is taken only while queued)
	WriteTimeout  time.Duration // per frame (default 10s)
	PingInterval  time.Duration // heartbeat (default 20s)
	SignInTimeout time.Duration // to sign in after connecting (default 2m)
	CommandRate   float64       // frames per second per connection (default 50)
	CommandBurst  int           // (default 100)

	// MaxConnections refuses new WebSockets (HTTP 503, a log line and
	// spells_ws_refused_total) once this many are open; 0 means no limit.
	// The server derives it from the process's descriptor limit.
	MaxConnections int

	// Limits per source address (IPv4 address, IPv6 /64) on what costs
	// the node before a socket signs in. MaxPendingPerAddress bounds its
	// sockets not yet signed in (more are refused with HTTP 429; default
	// 64, negative: no limit). SignInRate and SignInBurst bound its
	// sign-in and resume attempts (more get rate_limited; default 10 per
	// second, burst 20; negative: no limit).
	MaxPendingPerAddress int
	SignInRate           float64
	SignInBurst          int

	// Router, in a cluster, says which vaults live on other nodes:
	// their sign-ins, resumes and revokes are forwarded there
	// (forward.go). nil: every vault is served here.
	Router Router

	Clock   clock.Clock
	Logger  zerolog.Logger
	Metrics *Metrics
}

func (c *Config) setDefaults() {
	if c.History == nil {
		c.History = NewHistory(0)
	}
	if c.ChainID == 0 {
		c.ChainID = 1
	}
	if c.ReadLimit <= 0 {
		c.ReadLimit = 64 << 10
	}
	if c.SendQueue <= 0 {
		c.SendQueue = 1024
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 10 * time.Second
	}
	if c.PingInterval <= 0 {
		c.PingInterval = 20 * time.Second
	}
	if c.SignInTimeout <= 0 {
		c.SignInTimeout = 2 * time.Minute
	}
	if c.CommandRate <= 0 {
		c.CommandRate = 50
	}
	if c.CommandBurst <= 0 {
		c.CommandBurst = 100
	}
	if c.MaxPendingPerAddress == 0 {
		c.MaxPendingPerAddress = 64
	}
	if c.SignInRate == 0 {
		c.SignInRate = 10
	}
	if c.SignInBurst == 0 {
		c.SignInBurst = 20
	}
	if c.Clock == nil {
		c.Clock = clock.Real{}
	}
	if c.Metrics == nil {
		c.Metrics = NewMetrics(nil)
	}
}

// Hub serves WebSocket sessions and distributes signals. Create it with
// New, mount it as an http.Handler, and call Shutdown to close every
// connection with "going away".
type Hub struct {
	cfg    Config
	log    zerolog.Logger
	unsub  func()
	limits *addrLimits
	fan    *fanout

	mu      sync.Mutex
	conns   map[*conn]struct{}
	closing bool
	wg      sync.WaitGroup

	// The write watch (watchWrites): stopped by Shutdown.
	watchStop, watchDone chan struct{}
}

// conn is one WebSocket session: a read half (read.go: a read loop and a
// worker that handles frames in order) and a write half (write.go: a
// writer with a bounded queue of vault frames and conflated signal
// frames). Everything but the read loop runs only while it has work: a
// worker while frames wait to be handled, a writer while frames wait to be
// written, a pinger for the length of a ping. An idle signed-in session is
// one parked goroutine and a few small structs. Send may be called from
// any goroutine (vaults, the signal fan-out) and never blocks; only the
// writer writes to the socket.
type conn struct {
	h      *Hub
	ws     *websocket.Conn // nil for a forwarded session
	sock   socket          // what the writer writes to: ws, or the link of a forwarded session
	up     Upstream        // a session another node forwards here (forward.go); nil otherwise
	remote string
	key    netip.Prefix // the source address, for the per-address limits
	nonce  string
	limit  *rate.Limiter
	ctx    context.Context
	cancel context.CancelFunc

	signedIn atomic.Bool
	pending  atomic.Bool // counted as unauthenticated against its address
	bound    Session     // worker only; nil until bound

	// Outgoing frames, under outMu (write.go).
	outMu          sync.Mutex
	queue          [][]byte
	sigPending     map[string]signalOut
	sigOrder       []string
	writing        bool         // a writer is running
	writeSince     atomic.Int64 // unix ns the writer's current round began; 0 while none runs (set under outMu)
	closeAfter     string       // close with closeAfterCode and this reason once the queue is written
	closeAfterCode websocket.StatusCode
	boundAfter     bool // tell the forwarding node the session is bound once the frames before it are written
	wireRest       bool // a signal written without waiting went out in part: the writer sends the rest

	// Incoming frames, under inMu (read.go).
	inMu    sync.Mutex
	in      []frameIn
	inRoom  chan struct{} // closed when the worker takes a frame; made only while the read loop waits
	working bool          // a worker is running
	workers sync.WaitGroup

	pinger      *time.Timer
	signInTimer *time.Timer    // until bound; worker only after serve starts
	tasks       sync.WaitGroup // writers, pings and the closer

	// A session forwarded to the vault's node (forward.go): the stream
	// once bound. Worker only.
	stream Stream
	// ended is closed when a forwarded session's link stream ends.
	ended     chan struct{}
	endedOnce sync.Once

	killOnce    sync.Once
	closeCode   websocket.StatusCode
	closeReason string
}

// frameIn is a frame as read, with the read loop's verdict on it. Every
// answer, refusals included, is sent by the worker, in arrival order.
type frameIn struct {
	data    []byte
	binary  bool
	limited bool
}

// fanout hands live signal frames to every signed-in connection, on a
// goroutine of its own. A signal whose previous value has not been handed
// out yet is conflated to its latest value (counted): a dashboard wants
// the newest price, never a queue of old ones.
type fanout struct {
	h       *Hub
	mu      sync.Mutex
	pending map[string]Signal
	order   []string
	wake    chan struct{}
	stop    chan struct{}
	done    chan struct{}
}

// socket is what a conn writes to and closes.
type socket interface {
	// write sends msg as one message; framed, when not nil, is msg
	// already framed for a WebSocket (a signal frame framed once for
	// every socket), which a WebSocket writes as it is.
	write(msg, framed []byte) error
	// flush sends what a write without waiting left unsent.
	flush() error
	setWriteDeadline(t time.Time)
	ping(ctx context.Context) error
	close(code websocket.StatusCode, reason string) // the close handshake
	closeNow()
}

type verdict struct {
	bound  bool
	code   websocket.StatusCode
	reason string
}

func mustJSON(x any) []byte {
	b, err := json.Marshal(x)
	if err != nil {
		panic(fmt.Sprintf("encode frame: %v", err)) // frames are plain structs
	}
	return b
}

// logAt starts a log event about this connection. The logger is not kept
// per connection: most sessions never log, and a derived zerolog logger
// holds a 500-byte context buffer.
func (c *conn) logAt(level zerolog.Level) *zerolog.Event {
	return c.h.log.WithLevel(level).Str("remote", c.remote)
}
