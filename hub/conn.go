package hub

import (
	"context"
	"net"

	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ethereum/go-ethereum/common"

	"github.com/coder/websocket"
	"github.com/rs/zerolog"
	"golang.org/x/time/rate"

	"github.com/spells-dev/spells/protocol"
)

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
	sigPending     map[string][]byte
	sigOrder       []string
	writing        bool   // a writer is running
	closeAfter     string // close with closeAfterCode and this reason once the queue is written
	closeAfterCode websocket.StatusCode
	boundAfter     bool // tell the forwarding node the session is bound once the frames before it are written

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

func newConn(h *Hub, ws *websocket.Conn, nc net.Conn, remote string, key netip.Prefix) *conn {
	ctx, cancel := context.WithCancel(context.Background())
	ws.SetReadLimit(h.cfg.ReadLimit)
	c := &conn{
		h: h, ws: ws, sock: wsSocket{ws, nc}, ctx: ctx, cancel: cancel, remote: remote, key: key,
		nonce: h.cfg.Nonces.Issue(h.cfg.Clock.Now()),
		limit: rate.NewLimiter(rate.Limit(h.cfg.CommandRate), h.cfg.CommandBurst),
	}
	c.pending.Store(true)
	return c
}

// authenticated stops counting the socket against its address's limit
// of unauthenticated sockets (it signed in, or it ended).
func (c *conn) authenticated() {
	if c.pending.Swap(false) {
		c.h.limits.authenticated(c.key)
	}
}

// Gone is called by a vault that ended under this connection (a failed
// group commit, a damaged file): the client reconnects and resumes from
// the version it holds.
func (c *conn) Gone() {
	c.kill(websocket.StatusTryAgainLater, "vault reloaded: reconnect and resume", "vault_gone")
}

// Moved is called by a vault that moved to another node of the cluster:
// the client reconnects (to any node) and resumes from the version it
// holds, and is routed to the vault's new node.
func (c *conn) Moved() {
	c.kill(protocol.CloseVaultMoved, "vault moved to another node: reconnect and resume", "vault_moved")
}

// kill ends the connection once, with code and reason sent to the client.
func (c *conn) kill(code websocket.StatusCode, reason, metric string) {
	c.killOnce.Do(func() {
		c.closeCode, c.closeReason = code, reason
		c.h.cfg.Metrics.Disconnects.WithLabelValues(metric).Inc()
		if metric != "client" && metric != "shutdown" && metric != "unbound" {
			c.logAt(zerolog.WarnLevel).Int("code", int(code)).Str("reason", metric).Msg("closing connection")
		}
		c.outMu.Lock()
		c.cancel()
		c.tasks.Add(1)
		c.outMu.Unlock()
		// The close handshake: the read loop reads the client's close
		// frame, and its Read then ends.
		go func() {
			defer c.tasks.Done()
			c.sock.close(code, reason)
		}()
	})
}

func (c *conn) serve() {
	c.signInTimer = time.AfterFunc(c.h.cfg.SignInTimeout, func() {
		if !c.signedIn.Load() {
			c.kill(protocol.CloseSignInTimeout, "no sign-in in time", "signin_timeout")
		}
	})
	c.pinger = time.AfterFunc(c.h.cfg.PingInterval, c.ping)
	c.Send(mustJSON(protocol.Challenge{Type: protocol.TypeChallenge, Nonce: c.nonce, Domains: c.h.cfg.Domains,
		ChainID: c.h.cfg.ChainID, Node: c.h.cfg.Node}))
	c.readLoop()
	c.workers.Wait() // every frame read gets its answer (or is dropped by a kill)
	if c.signInTimer != nil {
		c.signInTimer.Stop()
	}
	c.pinger.Stop()
	c.kill(websocket.StatusNormalClosure, "", "client")
	c.tasks.Wait()
	c.authenticated()
	if c.bound != nil {
		c.bound.Detach(c)
	}
	if c.stream != nil {
		c.stream.Close()
	}
}

// logAt starts a log event about this connection. The logger is not kept
// per connection: most sessions never log, and a derived zerolog logger
// holds a 500-byte context buffer.
func (c *conn) logAt(level zerolog.Level) *zerolog.Event {
	return c.h.log.WithLevel(level).Str("remote", c.remote)
}

// handle answers one frame, on the worker, in arrival order.
func (c *conn) handle(in frameIn) {
	if c.stream != nil {
		c.forwardFrame(in)
		return
	}
	if in.binary {
		c.refuse(protocol.Errorf(protocol.CodeBadFrame, "frames must be text (JSON)"), nil)
		return
	}
	f, err := protocol.DecodeClientFrame(in.data)
	if err != nil {
		c.refuse(err, nil)
		return
	}
	var seq *uint64
	if f.Type == protocol.TypeCmd {
		seq = peekSeq(f.Body)
	}
	if in.limited {
		c.h.cfg.Metrics.RateLimited.Inc()
		c.refuse(protocol.Errorf(protocol.CodeRateLimited, "more than %g frames per second; slow down", c.h.cfg.CommandRate), seq)
		return
	}
	switch f.Type {
	case protocol.TypeSignIn:
		c.signIn(f, in)
	case protocol.TypeResume:
		c.resume(f, in)
	case protocol.TypeCmd:
		c.command(f, seq)
	case protocol.TypeRevoke:
		c.revoke(f, in)
	}
	if c.up != nil && !c.signedIn.Load() {
		// A forwarded sign-in, resume or revoke that bound nothing: the
		// stream ends once its answer is written, and the client's node
		// routes the socket's next sign-in afresh.
		c.endAfter(StreamUnbound, "not bound")
	}
}

// refuse sends an error frame and logs it. seq is the command's seq as
// sent, echoed even when it is 0; nil for frames that are not commands.
func (c *conn) refuse(err error, seq *uint64) {
	ef := protocol.NewErrorFrame(err, seq)
	c.h.cfg.Metrics.FrameErrors.WithLabelValues(string(ef.Code)).Inc()
	level := zerolog.InfoLevel
	if ef.Code == protocol.CodeInternal {
		level = zerolog.ErrorLevel
	}
	ev := c.logAt(level).Str("code", string(ef.Code)).Str("msg", ef.Message)
	if seq != nil {
		ev = ev.Uint64("seq", *seq)
	}
	ev.Msg("frame refused")
	c.Send(mustJSON(ef))
}

func (c *conn) alreadyBound() bool {
	if c.bound != nil {
		c.refuse(protocol.Errorf(protocol.CodeAlreadySignedIn, "this socket is already bound to a session"), nil)
		return true
	}
	return false
}

// signInAllowed spends one of the address's sign-in attempts, refusing
// the frame if it has none left.
func (c *conn) signInAllowed() bool {
	if c.up != nil || c.h.limits.signInAllowed(c.key) {
		// (A forwarded attempt was counted by the client's node.)
		return true
	}
	c.h.cfg.Metrics.SignInsLimited.Inc()
	c.refuse(protocol.Errorf(protocol.CodeRateLimited, "too many sign-ins from your address; retry in a few seconds"), nil)
	return false
}

func (c *conn) signIn(f protocol.ClientFrame, in frameIn) {
	if c.alreadyBound() || !c.signInAllowed() {
		return
	}
	if msg, err := protocol.ParseMessage(f.Message); err == nil && c.forward(msg.Address, in) {
		return
	}
	// The vault layer verifies everything itself; the hub only passes on
	// the nonce it issued on this socket.
	b, err := c.h.cfg.Vaults.SignIn(c.ctx, SignIn{Message: f.Message, Signature: f.Signature, Nonce: c.nonce, Since: f.Since}, c)
	c.bind(b, err)
}

func (c *conn) resume(f protocol.ClientFrame, in frameIn) {
	if c.alreadyBound() || !c.signInAllowed() {
		return
	}
	if r, err := protocol.ParseResume(f.Body); err == nil && common.IsHexAddress(r.Vault) && c.forward(common.HexToAddress(r.Vault), in) {
		return
	}
	b, err := c.h.cfg.Vaults.Resume(c.ctx, f.Body, f.Sig, c.nonce, c)
	c.bind(b, err)
}

// revoke asks the vault to end every one of its sessions, on the owner's
// signature; it is sent on a socket that has not signed in (its nonce is
// in the signed message).
func (c *conn) revoke(f protocol.ClientFrame, in frameIn) {
	if c.alreadyBound() || !c.signInAllowed() {
		return
	}
	msg, err := protocol.ParseMessage(f.Message)
	if err != nil {
		c.refuse(err, nil)
		return
	}
	if c.forward(msg.Address, in) {
		return
	}
	n, err := c.h.cfg.Vaults.Revoke(c.ctx, SignIn{Message: f.Message, Signature: f.Signature, Nonce: c.nonce})
	if err != nil {
		if c.ctx.Err() == nil {
			c.refuse(err, nil)
		}
		return
	}
	c.logAt(zerolog.InfoLevel).Str("vault", msg.Address.Hex()).Int("sessions", n).Msg("every session revoked")
	c.Send(mustJSON(protocol.Revoked{Type: protocol.TypeRevoked, Vault: msg.Address.Hex(), Sessions: n}))
}

// markSignedIn marks the socket bound to a session: here, or on the vault's
// node through a stream.
func (c *conn) markSignedIn() {
	c.signedIn.Store(true)
	c.authenticated()
	// Neither is needed once bound (a second sign-in is refused), and an
	// idle session should hold no more than it uses.
	if c.signInTimer != nil {
		c.signInTimer.Stop()
	}
	c.signInTimer, c.nonce = nil, ""
}

func (c *conn) bind(b Session, err error) {
	if err != nil {
		if c.ctx.Err() == nil {
			c.refuse(err, nil)
		}
		return
	}
	c.bound = b
	c.markSignedIn()
	c.logAt(zerolog.InfoLevel).Str("vault", b.Vault().Hex()).Str("session", b.ID()).Bool("forwarded", c.up != nil).Msg("session bound")
	c.Send(mustJSON(protocol.SignalsFrame{Type: protocol.TypeSignals, Series: c.h.cfg.History.Snapshot()}))
	if c.up != nil {
		c.outMu.Lock()
		c.boundAfter = true
		if c.ctx.Err() == nil {
			c.startWriterLocked()
		}
		c.outMu.Unlock()
	}
}

func (c *conn) command(f protocol.ClientFrame, seq *uint64) {
	if c.bound == nil {
		c.refuse(protocol.Errorf(protocol.CodeNotSignedIn, "sign in or resume before sending commands"), seq)
		return
	}
	// Not waiting for the answer lets a client pipeline commands; the
	// vault answers them in order, from its goroutine, once durable.
	err := c.bound.Command(c.ctx, f.Body, f.Sig, func(ack protocol.Ack, err error) {
		switch {
		case c.ctx.Err() != nil: // closed meanwhile: nobody to answer
		case err != nil:
			c.refuse(err, seq)
		default:
			c.Send(mustJSON(ack))
		}
	})
	if err != nil && c.ctx.Err() == nil {
		c.refuse(err, seq)
	}
}
