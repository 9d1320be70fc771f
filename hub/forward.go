package hub

import (
	"context"
	"net"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/ethereum/go-ethereum/common"
	"github.com/rs/zerolog"

	"github.com/spells-dev/spells/protocol"
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

// socket is what a conn writes to and closes.
type socket interface {
	write(msg []byte) error
	setWriteDeadline(t time.Time)
	ping(ctx context.Context) error
	close(code websocket.StatusCode, reason string) // the close handshake
	closeNow()
}

// wsSocket is a client's WebSocket; nc is the connection under it, whose
// write deadline the writer sets.
type wsSocket struct {
	ws *websocket.Conn
	nc net.Conn
}

func (s wsSocket) write(msg []byte) error {
	return s.ws.Write(context.Background(), websocket.MessageText, msg)
}
func (s wsSocket) setWriteDeadline(t time.Time)   { s.nc.SetWriteDeadline(t) }
func (s wsSocket) ping(ctx context.Context) error { return s.ws.Ping(ctx) }
func (s wsSocket) close(code websocket.StatusCode, reason string) {
	s.ws.Close(code, reason)
}
func (s wsSocket) closeNow() { s.ws.CloseNow() }

// upSocket is a forwarded session's stream. The link bounds its writes;
// pings are the link's.
type upSocket struct{ c *conn }

func (s upSocket) write(msg []byte) error   { return s.c.up.Write(msg) }
func (upSocket) setWriteDeadline(time.Time) {}
func (upSocket) ping(context.Context) error { return nil }
func (s upSocket) closeNow()                { s.close(websocket.StatusGoingAway, "") }
func (s upSocket) close(code websocket.StatusCode, reason string) {
	s.c.up.Close(code, reason)
	s.c.endStream()
}

func (c *conn) endStream() { c.endedOnce.Do(func() { close(c.ended) }) }

// Forwarded is the hub's side of a session another node forwards here.
type Forwarded struct{ c *conn }

// ServeForwarded serves a session the node at the client's end forwards
// here: nonce is the one that node issued on the client's socket (the
// vault checks it as its own: the cluster shares the nonce key), remote
// the client's address, for logs. The link hands the client's frames to
// Frame, and calls Close when the client leaves or the link falls.
func (h *Hub) ServeForwarded(up Upstream, nonce, remote string) (*Forwarded, error) {
	h.mu.Lock()
	if h.closing {
		h.mu.Unlock()
		return nil, protocol.Errorf(protocol.CodeUnavailable, "node shutting down")
	}
	h.wg.Add(1)
	h.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	c := &conn{h: h, up: up, ctx: ctx, cancel: cancel, remote: remote, nonce: nonce, ended: make(chan struct{})}
	c.sock = upSocket{c}
	if !h.add(c) {
		h.wg.Done()
		cancel()
		return nil, protocol.Errorf(protocol.CodeUnavailable, "node shutting down")
	}
	h.cfg.Metrics.Forwarded.Inc()
	go func() {
		defer h.wg.Done()
		defer h.remove(c)
		<-c.ended
		c.workers.Wait()
		c.kill(websocket.StatusNormalClosure, "", "client")
		c.tasks.Wait()
		if c.bound != nil {
			c.bound.Detach(c)
		}
	}()
	return &Forwarded{c}, nil
}

// Frame queues one client frame for the session's worker; it never
// blocks.
func (f *Forwarded) Frame(data []byte, binary bool) {
	c := f.c
	c.inMu.Lock()
	if len(c.in) >= maxForwardedIn {
		c.inMu.Unlock()
		c.kill(websocket.StatusTryAgainLater, "too many frames waiting for the vault: reconnect and resume", "forwarded_backlog")
		return
	}
	c.pushInLocked(frameIn{data: data, binary: binary})
	c.inMu.Unlock()
}

// Close ends the session: its client left, or the link to its node fell.
func (f *Forwarded) Close() {
	f.c.cancel()
	f.c.endStream()
}

// forward sends a sign-in, resume or revoke frame to the node of the
// vault it names when that is another node, and waits for the verdict.
// It reports false when the vault is served here.
func (c *conn) forward(vault common.Address, in frameIn) bool {
	r := c.h.cfg.Router
	if r == nil || c.up != nil {
		return false // a forwarded session is served where it lands: one hop
	}
	fw, err := r.Route(c.ctx, vault)
	if err != nil {
		c.refuse(err, nil)
		return true
	}
	if fw == nil {
		return false
	}
	d := &downstream{c: c, verdict: make(chan verdict, 1)}
	s, err := fw.Open(c.ctx, c.nonce, c.remote, d)
	if err == nil {
		err = s.Send(in.data, in.binary)
	}
	if err != nil {
		if s != nil {
			s.Close()
		}
		c.refuse(err, nil)
		return true
	}
	t := time.NewTimer(verdictTimeout)
	defer t.Stop()
	var v verdict
	select {
	case v = <-d.verdict:
	case <-c.ctx.Done():
		s.Close()
		return true
	case <-t.C:
		s.Close()
		c.h.cfg.Metrics.ForwardFailed.Inc()
		c.refuse(protocol.Errorf(protocol.CodeNodeUnreachable, "the vault's node did not answer in %s; retry", verdictTimeout), nil)
		return true
	}
	switch {
	case v.bound:
		c.stream = s
		c.markSignedIn()
		c.logAt(zerolog.InfoLevel).Str("vault", vault.Hex()).Msg("session forwarded to the vault's node")
	case v.code != StreamUnbound:
		c.kill(v.code, v.reason, "forwarded_closed")
	}
	return true
}

// forwardFrame sends a frame of a bound forwarded session on; the entry
// still spends the client's rate limit.
func (c *conn) forwardFrame(in frameIn) {
	if in.limited {
		var seq *uint64
		if f, err := protocol.DecodeClientFrame(in.data); err == nil && f.Type == protocol.TypeCmd {
			seq = peekSeq(f.Body)
		}
		c.h.cfg.Metrics.RateLimited.Inc()
		c.refuse(protocol.Errorf(protocol.CodeRateLimited, "more than %g frames per second; slow down", c.h.cfg.CommandRate), seq)
		return
	}
	if err := c.stream.Send(in.data, in.binary); err != nil {
		c.kill(protocol.CloseNodeLink, "lost the link to the vault's node: reconnect and resume", "node_link")
	}
}

type verdict struct {
	bound  bool
	code   websocket.StatusCode
	reason string
}

// downstream is the entry's receiver of one stream.
type downstream struct {
	c       *conn
	mu      sync.Mutex
	decided bool
	verdict chan verdict // the first Bound or Closed, once
}

func (d *downstream) Deliver(msg []byte) { d.c.Send(msg) }

func (d *downstream) Bound() { d.decide(verdict{bound: true}) }

func (d *downstream) Closed(code websocket.StatusCode, reason string) {
	if !d.decide(verdict{code: code, reason: reason}) && code != StreamUnbound {
		// A bound session ended on the vault's node (its session ended,
		// the vault reloaded, the node stops): the client is told why.
		d.c.kill(code, reason, "forwarded_closed")
	}
}

// decide hands the waiting worker its verdict; false once one was given.
func (d *downstream) decide(v verdict) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.decided {
		return false
	}
	d.decided = true
	d.verdict <- v
	return true
}
