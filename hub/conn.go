package hub

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/rs/zerolog"
	"golang.org/x/time/rate"

	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/vault"
)

// conn is one WebSocket session. The read loop runs on the HTTP handler's
// goroutine. Everything else runs only while it has work: a worker while
// frames wait to be handled, a writer while frames wait to be written, a
// pinger for the length of a ping. An idle signed-in session is one parked
// goroutine and a few small structs, not three goroutines and a 256-slot
// channel. Send may be called from any goroutine (vaults, the signal
// fan-out) and never blocks; only the writer writes to the socket.
type conn struct {
	h      *Hub
	ws     *websocket.Conn
	nc     net.Conn // under ws; the writer sets its write deadline
	remote string
	nonce  string
	limit  *rate.Limiter
	ctx    context.Context
	cancel context.CancelFunc

	signedIn atomic.Bool
	bound    vault.Bound // worker only

	// Outgoing frames, under outMu. Vault frames queue in order, at most
	// SendQueue of them. Live signal values are conflated per name: a
	// dashboard needs the latest price, not a backlog, so signals never
	// fill the queue.
	outMu      sync.Mutex
	queue      [][]byte
	sigPending map[string][]byte
	sigOrder   []string
	writing    bool // a writer is running

	// Incoming frames, in arrival order, under inMu; the read loop stops
	// reading while the worker is maxPendingIn frames behind. The queue
	// is dropped whenever it empties, so an idle session holds none.
	inMu    sync.Mutex
	in      []frameIn
	inRoom  chan struct{} // closed when the worker takes a frame; made only while the read loop waits
	working bool          // a worker is running
	workers sync.WaitGroup

	pinger      *time.Timer
	signInTimer *time.Timer    // until bound; worker only after serve starts
	tasks       sync.WaitGroup // writers, pings and the closer

	killOnce    sync.Once
	closeCode   websocket.StatusCode
	closeReason string
}

func newConn(h *Hub, ws *websocket.Conn, nc net.Conn, remote string) *conn {
	ctx, cancel := context.WithCancel(context.Background())
	ws.SetReadLimit(h.cfg.ReadLimit)
	return &conn{
		h: h, ws: ws, nc: nc, ctx: ctx, cancel: cancel, remote: remote,
		nonce: h.cfg.Nonces.Issue(h.cfg.Clock.Now()),
		limit: rate.NewLimiter(rate.Limit(h.cfg.CommandRate), h.cfg.CommandBurst),
	}
}

// Send queues frame for the writer. When the queue is full the client is
// too slow: the connection is closed with CloseSlowConsumer and Send
// returns false.
func (c *conn) Send(frame []byte) bool {
	c.outMu.Lock()
	if c.ctx.Err() != nil {
		c.outMu.Unlock()
		return false
	}
	if len(c.queue) >= c.h.cfg.SendQueue {
		c.outMu.Unlock()
		c.kill(protocol.CloseSlowConsumer, "slow consumer: reconnect and resume", "slow_consumer")
		return false
	}
	c.queue = append(c.queue, frame)
	c.startWriterLocked()
	c.outMu.Unlock()
	return true
}

// Gone is called by a vault that ended under this connection (a group
// commit failed and it reloads from its file): the client reconnects and
// resumes from the version it holds.
func (c *conn) Gone() {
	c.kill(websocket.StatusTryAgainLater, "vault reloaded: reconnect and resume", "vault_gone")
}

// Room is how many frames Send can queue now; vaults send a snapshot
// instead of a catch-up that would not fit.
func (c *conn) Room() int {
	c.outMu.Lock()
	defer c.outMu.Unlock()
	return c.h.cfg.SendQueue - len(c.queue)
}

// SendSignal hands the writer the newest frame of a signal, replacing one
// not yet written. It never blocks.
func (c *conn) SendSignal(name string, frame []byte) {
	c.outMu.Lock()
	defer c.outMu.Unlock()
	if c.ctx.Err() != nil {
		return
	}
	if c.sigPending == nil {
		c.sigPending = map[string][]byte{}
	}
	if _, ok := c.sigPending[name]; !ok {
		c.sigOrder = append(c.sigOrder, name)
	}
	c.sigPending[name] = frame
	c.startWriterLocked()
}

// startWriterLocked starts the writer unless one runs. Callers hold outMu
// and have checked that the connection is not killed, so the writer is
// counted in tasks before serve waits for them.
func (c *conn) startWriterLocked() {
	if !c.writing {
		c.writing = true
		c.tasks.Add(1)
		go c.writeLoop()
	}
}

// takeLocked returns the queued vault frames and the pending signal
// frames (in arrival order), leaving both empty.
func (c *conn) takeLocked() (frames, signals [][]byte) {
	frames, c.queue = c.queue, nil
	for _, name := range c.sigOrder {
		signals = append(signals, c.sigPending[name])
		delete(c.sigPending, name)
	}
	c.sigOrder = c.sigOrder[:0]
	return frames, signals
}

// kill ends the connection once, with code and reason sent to the client.
func (c *conn) kill(code websocket.StatusCode, reason, metric string) {
	c.killOnce.Do(func() {
		c.closeCode, c.closeReason = code, reason
		c.h.cfg.Metrics.Disconnects.WithLabelValues(metric).Inc()
		if metric != "client" && metric != "shutdown" {
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
			c.ws.Close(code, reason)
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
	if c.bound.Vault != nil {
		c.bound.Vault.Detach(c)
	}
}

// frameIn is a frame as read, with the read loop's verdict on it. Every
// answer, refusals included, is sent by the worker, in arrival order.
type frameIn struct {
	data    []byte
	binary  bool
	limited bool
}

// readLoop reads frames and hands them to the worker, so it keeps reading
// (and answering heartbeats) while a vault is busy or opening.
func (c *conn) readLoop() {
	for {
		// Not c.ctx: cancelling a Read drops the TCP connection at once,
		// and a kill must still send its close code. The closer's Close
		// ends this Read instead.
		typ, data, err := c.ws.Read(context.Background())
		if err != nil {
			c.readFailed(err)
			return
		}
		c.queueIn(frameIn{data: data, binary: typ != websocket.MessageText, limited: !c.limit.Allow()})
	}
}

// maxPendingIn is how many read frames may wait for the worker before the
// read loop stops reading (and TCP pushes back on the client).
const maxPendingIn = 16

// queueIn hands f to the worker, starting one if none runs, after waiting
// for room if the worker is maxPendingIn frames behind.
func (c *conn) queueIn(f frameIn) {
	c.inMu.Lock()
	for len(c.in) >= maxPendingIn {
		room := make(chan struct{})
		c.inRoom = room
		c.inMu.Unlock()
		<-room
		c.inMu.Lock()
	}
	c.in = append(c.in, f)
	if !c.working {
		c.working = true
		c.workers.Add(1)
		go c.workLoop()
	}
	c.inMu.Unlock()
}

// workLoop handles frames in order until none wait, then ends (the next
// frame read starts another).
func (c *conn) workLoop() {
	defer c.workers.Done()
	for {
		c.inMu.Lock()
		if len(c.in) == 0 {
			c.in, c.working = nil, false
			c.inMu.Unlock()
			return
		}
		f := c.in[0]
		c.in[0] = frameIn{}
		c.in = c.in[1:]
		if c.inRoom != nil {
			close(c.inRoom)
			c.inRoom = nil
		}
		c.inMu.Unlock()
		c.handle(f)
	}
}

// logAt starts a log event about this connection. The logger is not kept
// per connection: most sessions never log, and a derived zerolog logger
// holds a 500-byte context buffer.
func (c *conn) logAt(level zerolog.Level) *zerolog.Event {
	return c.h.log.WithLevel(level).Str("remote", c.remote)
}

// ping checks the client is there every PingInterval, on a goroutine of
// its own for the length of the ping (the read loop reads the pong).
func (c *conn) ping() {
	c.outMu.Lock()
	if c.ctx.Err() != nil {
		c.outMu.Unlock()
		return
	}
	c.tasks.Add(1)
	c.outMu.Unlock()
	defer c.tasks.Done()
	ctx, cancel := context.WithTimeout(c.ctx, c.h.cfg.WriteTimeout)
	err := c.ws.Ping(ctx)
	cancel()
	switch {
	case c.ctx.Err() != nil:
	case err != nil:
		c.kill(websocket.StatusGoingAway, "heartbeat lost", "heartbeat")
	default:
		c.pinger.Reset(c.h.cfg.PingInterval)
	}
}

func (c *conn) readFailed(err error) {
	switch {
	case errors.Is(err, websocket.ErrMessageTooBig):
		c.h.cfg.Metrics.FrameErrors.WithLabelValues(string(protocol.CodeTooLarge)).Inc()
		c.logAt(zerolog.InfoLevel).Int64("limit", c.h.cfg.ReadLimit).Msg("frame too large; closed 1009")
		c.kill(websocket.StatusMessageTooBig, "frame too large", "too_large")
	case c.ctx.Err() != nil:
	default:
		c.kill(websocket.StatusNormalClosure, "", "client")
	}
}

func (c *conn) handle(in frameIn) {
	switch {
	case in.limited:
		c.h.cfg.Metrics.RateLimited.Inc()
		c.refuse(protocol.Errorf(protocol.CodeRateLimited, "more than %g frames per second; slow down", c.h.cfg.CommandRate), peekSeq(string(in.data)))
		return
	case in.binary:
		c.refuse(protocol.Errorf(protocol.CodeBadFrame, "frames must be text (JSON)"), 0)
		return
	}
	f, err := protocol.DecodeClientFrame(in.data)
	if err != nil {
		c.refuse(err, 0)
		return
	}
	switch f.Type {
	case protocol.TypeSignIn:
		c.signIn(f)
	case protocol.TypeResume:
		c.resume(f)
	case protocol.TypeCmd:
		c.command(f)
	}
}

// refuse sends an error frame and logs it.
func (c *conn) refuse(err error, seq uint64) {
	ef := protocol.NewErrorFrame(err, seq)
	c.h.cfg.Metrics.FrameErrors.WithLabelValues(string(ef.Code)).Inc()
	level := zerolog.InfoLevel
	if ef.Code == protocol.CodeInternal {
		level = zerolog.ErrorLevel
	}
	ev := c.logAt(level)
	ev.Str("code", string(ef.Code)).Str("msg", ef.Message).Uint64("seq", seq).Msg("frame refused")
	c.Send(mustJSON(ef))
}

func (c *conn) alreadyBound() bool {
	if c.bound.Vault != nil {
		c.refuse(protocol.Errorf(protocol.CodeAlreadySignedIn, "this socket is already bound to a session"), 0)
		return true
	}
	return false
}

func (c *conn) signIn(f protocol.ClientFrame) {
	if c.alreadyBound() {
		return
	}
	// The vault layer verifies everything itself; the hub only passes on
	// the nonce it issued on this socket.
	b, err := c.h.cfg.Manager.SignIn(c.ctx, vault.SignInRequest{Message: f.Message, Signature: f.Signature, Nonce: c.nonce, Since: f.Since, Sub: c})
	c.bind(b, err)
}

func (c *conn) resume(f protocol.ClientFrame) {
	if c.alreadyBound() {
		return
	}
	b, err := c.h.cfg.Manager.Resume(c.ctx, f.Body, f.Sig, c.nonce, c)
	c.bind(b, err)
}

func (c *conn) bind(b vault.Bound, err error) {
	if err != nil {
		c.refuse(err, 0)
		return
	}
	c.bound = b
	c.signedIn.Store(true)
	// Neither is needed once bound (a second sign-in is refused), and an
	// idle session should hold no more than it uses.
	c.signInTimer.Stop()
	c.signInTimer, c.nonce = nil, ""
	c.logAt(zerolog.InfoLevel).Str("vault", b.Vault.Address().Hex()).Str("session", b.Session).Msg("session bound")
	if series := c.h.cfg.History.Snapshot(); len(series) > 0 {
		c.Send(mustJSON(protocol.SignalsFrame{Type: protocol.TypeSignals, Series: series}))
	}
}

func (c *conn) command(f protocol.ClientFrame) {
	seq := peekSeq(f.Body)
	if c.bound.Vault == nil {
		c.refuse(protocol.Errorf(protocol.CodeNotSignedIn, "sign in or resume before sending commands"), seq)
		return
	}
	// Not waiting for the answer lets a client pipeline commands; the
	// vault answers them in order, from its goroutine, once durable.
	err := c.bound.Vault.CommandAsync(c.ctx, c.bound.Session, f.Body, f.Sig, func(ack protocol.Ack, err error) {
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

// peekSeq reads seq from an unverified body, only to label an error frame.
func peekSeq(body string) uint64 {
	var p struct {
		Seq uint64 `json:"seq"`
	}
	_ = json.Unmarshal([]byte(body), &p)
	return p.Seq
}

// writeLoop writes what is queued, vault frames first, until nothing is;
// then it ends (the next Send starts another).
//
// Each round of writes runs under a deadline on the socket, cleared when
// the writer ends so that a later ping or close is not cut short by it (a
// writer that fails leaves it: the connection is closing).
// Not a context per write: coder/websocket arms a context.AfterFunc for
// every write given a cancellable context, and that with the context's
// own timer was a sixth of the node's CPU in a price fan-out.
func (c *conn) writeLoop() {
	defer c.tasks.Done()
	for {
		c.outMu.Lock()
		frames, signals := c.takeLocked()
		if c.ctx.Err() != nil || len(frames)+len(signals) == 0 {
			// Cleared before another writer may start and set its own.
			c.nc.SetWriteDeadline(time.Time{})
			c.writing = false
			c.outMu.Unlock()
			return
		}
		c.outMu.Unlock()
		c.nc.SetWriteDeadline(time.Now().Add(c.h.cfg.WriteTimeout))
		for len(frames) > 0 {
			n := gather(frames)
			if !c.writeOrClose(frames[:n]) {
				return
			}
			frames = frames[n:]
		}
		if len(signals) > 0 && !c.writeOrClose(signals) {
			return
		}
	}
}

// gatherBytes is where gather stops adding frames to one message.
const gatherBytes = 32 << 10

// gather returns how many of frames (at least one) go out as one message:
// several frames in one write (PROTOCOL.md §1), up to about gatherBytes.
func gather(frames [][]byte) int {
	size, n := 0, 0
	for n < len(frames) && (n == 0 || size+len(frames[n]) < gatherBytes) {
		size += len(frames[n]) + 1
		n++
	}
	return n
}

// writeOrClose writes frames as one message; false means the connection is
// over (the write failed, or it was killed meanwhile and the closer is
// closing it).
func (c *conn) writeOrClose(frames [][]byte) bool {
	if err := c.write(frames); err != nil {
		c.kill(protocol.CloseSlowConsumer, "write timed out", "write_timeout")
		c.ws.CloseNow()
		return false
	}
	return c.ctx.Err() == nil
}

func (c *conn) write(frames [][]byte) error {
	msg := frames[0]
	if len(frames) > 1 {
		msg = bytes.Join(frames, []byte{protocol.FrameSeparator})
	}
	if err := c.ws.Write(context.Background(), websocket.MessageText, msg); err != nil {
		return fmt.Errorf("write frame: %w", err)
	}
	c.h.cfg.Metrics.FramesSent.Add(float64(len(frames)))
	return nil
}

func mustJSON(x any) []byte {
	b, err := json.Marshal(x)
	if err != nil {
		panic(fmt.Sprintf("encode frame: %v", err)) // frames are plain structs
	}
	return b
}
