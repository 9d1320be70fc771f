package hub

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coder/websocket"
	"github.com/ethereum/go-ethereum/common"
	"github.com/rs/zerolog"
	"golang.org/x/time/rate"

	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/vault"
)

// conn is one WebSocket session. serve runs the read loop on the HTTP
// handler's goroutine and starts one writer goroutine; nothing else writes
// to the socket. Send may be called from any goroutine (vaults, the signal
// fan-out) and never blocks.
type conn struct {
	h      *Hub
	ws     *websocket.Conn
	log    zerolog.Logger
	send   chan []byte
	nonce  string
	limit  *rate.Limiter
	ctx    context.Context
	cancel context.CancelFunc

	signedIn atomic.Bool
	bound    vault.Bound // read-loop only

	// Live signal values are conflated per name: a dashboard needs the
	// latest price, not a backlog, so signals never fill the queue.
	sigMu      sync.Mutex
	sigPending map[string][]byte
	sigOrder   []string
	sigReady   chan struct{}

	killOnce    sync.Once
	closeCode   websocket.StatusCode
	closeReason string
}

func newConn(h *Hub, ws *websocket.Conn, remote string) *conn {
	ctx, cancel := context.WithCancel(context.Background())
	ws.SetReadLimit(h.cfg.ReadLimit)
	return &conn{
		h: h, ws: ws, ctx: ctx, cancel: cancel,
		log:        h.log.With().Str("remote", remote).Logger(),
		send:       make(chan []byte, h.cfg.SendQueue),
		sigPending: map[string][]byte{},
		sigReady:   make(chan struct{}, 1),
		nonce:      h.cfg.Nonces.Issue(h.cfg.Clock.Now()),
		limit:      rate.NewLimiter(rate.Limit(h.cfg.CommandRate), h.cfg.CommandBurst),
	}
}

// Send queues frame for the writer. When the queue is full the client is
// too slow: the connection is closed with CloseSlowConsumer and Send
// returns false.
func (c *conn) Send(frame []byte) bool {
	if c.ctx.Err() != nil {
		return false
	}
	select {
	case c.send <- frame:
		return true
	default:
		c.kill(protocol.CloseSlowConsumer, "slow consumer: reconnect and resume", "slow_consumer")
		return false
	}
}

// Gone is called by a vault that ended under this connection (a group
// commit failed and it reloads from its file): the client reconnects and
// resumes from the version it holds.
func (c *conn) Gone() {
	c.kill(websocket.StatusTryAgainLater, "vault reloaded: reconnect and resume", "vault_gone")
}

// Room is how many frames Send can queue now; vaults send a snapshot
// instead of a catch-up that would not fit.
func (c *conn) Room() int { return cap(c.send) - len(c.send) }

// SendSignal hands the writer the newest frame of a signal, replacing one
// not yet written. It never blocks.
func (c *conn) SendSignal(name string, frame []byte) {
	c.sigMu.Lock()
	if _, ok := c.sigPending[name]; !ok {
		c.sigOrder = append(c.sigOrder, name)
	}
	c.sigPending[name] = frame
	c.sigMu.Unlock()
	select {
	case c.sigReady <- struct{}{}:
	default:
	}
}

// takeSignals returns the pending signal frames in arrival order.
func (c *conn) takeSignals() [][]byte {
	c.sigMu.Lock()
	defer c.sigMu.Unlock()
	out := make([][]byte, 0, len(c.sigOrder))
	for _, name := range c.sigOrder {
		out = append(out, c.sigPending[name])
		delete(c.sigPending, name)
	}
	c.sigOrder = c.sigOrder[:0]
	return out
}

// kill ends the connection once, with code and reason sent to the client.
func (c *conn) kill(code websocket.StatusCode, reason, metric string) {
	c.killOnce.Do(func() {
		c.closeCode, c.closeReason = code, reason
		c.h.cfg.Metrics.Disconnects.WithLabelValues(metric).Inc()
		if metric != "client" && metric != "shutdown" {
			c.log.Warn().Int("code", int(code)).Str("reason", metric).Msg("closing connection")
		}
		c.cancel()
	})
}

func (c *conn) serve() {
	writerDone := make(chan struct{})
	go func() {
		defer close(writerDone)
		c.writeLoop()
	}()
	// Frames are handled on their own goroutine, so the read loop keeps
	// reading (and answering heartbeats) while a vault is busy or opening.
	work := make(chan frameIn, 16)
	workerDone := make(chan struct{})
	go func() {
		defer close(workerDone)
		for f := range work {
			c.handle(f)
		}
	}()

	timer := time.AfterFunc(c.h.cfg.SignInTimeout, func() {
		if !c.signedIn.Load() {
			c.kill(protocol.CloseSignInTimeout, "no sign-in in time", "signin_timeout")
		}
	})
	c.Send(mustJSON(protocol.Challenge{Type: protocol.TypeChallenge, Nonce: c.nonce, Domains: c.h.cfg.Domains,
		ChainID: c.h.cfg.ChainID, Node: c.h.cfg.Node}))
	c.readLoop(work)
	close(work)
	<-workerDone
	timer.Stop()
	c.kill(websocket.StatusNormalClosure, "", "client")
	<-writerDone
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

func (c *conn) readLoop(work chan<- frameIn) {
	for {
		// Not c.ctx: cancelling a Read drops the TCP connection at once,
		// and a kill must still send its close code. The writer's Close
		// ends this Read instead.
		typ, data, err := c.ws.Read(context.Background())
		if err != nil {
			c.readFailed(err)
			return
		}
		work <- frameIn{data: data, binary: typ != websocket.MessageText, limited: !c.limit.Allow()}
	}
}

func (c *conn) readFailed(err error) {
	switch {
	case errors.Is(err, websocket.ErrMessageTooBig):
		c.h.cfg.Metrics.FrameErrors.WithLabelValues(string(protocol.CodeTooLarge)).Inc()
		c.log.Info().Int64("limit", c.h.cfg.ReadLimit).Msg("frame too large; closed 1009")
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
	ev := c.log.Info()
	if ef.Code == protocol.CodeInternal {
		ev = c.log.Error()
	}
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
	// Parsed here only to route to the vault; the vault parses and
	// verifies everything itself.
	msg, err := protocol.ParseMessage(f.Message)
	if err != nil {
		c.refuse(err, 0)
		return
	}
	v, err := c.h.cfg.Manager.Vault(c.ctx, msg.Address, true)
	if err != nil {
		c.refuse(err, 0)
		return
	}
	b, err := v.SignIn(c.ctx, vault.SignInRequest{Message: f.Message, Signature: f.Signature, Nonce: c.nonce, Since: f.Since, Sub: c})
	c.bind(b, err)
}

func (c *conn) resume(f protocol.ClientFrame) {
	if c.alreadyBound() {
		return
	}
	r, err := protocol.ParseResume(f.Body)
	if err != nil {
		c.refuse(err, 0)
		return
	}
	if !common.IsHexAddress(r.Vault) {
		c.refuse(protocol.Errorf(protocol.CodeWrongVault, "vault %q is not an address", r.Vault), 0)
		return
	}
	v, err := c.h.cfg.Manager.Vault(c.ctx, common.HexToAddress(r.Vault), false)
	if err != nil {
		c.refuse(err, 0)
		return
	}
	b, err := v.Resume(c.ctx, f.Body, f.Sig, c.nonce, c)
	c.bind(b, err)
}

func (c *conn) bind(b vault.Bound, err error) {
	if err != nil {
		c.refuse(err, 0)
		return
	}
	c.bound = b
	c.signedIn.Store(true)
	c.log.Info().Str("vault", b.Vault.Address().Hex()).Str("session", b.Session).Msg("session bound")
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
	ack, err := c.bound.Vault.Command(c.ctx, c.bound.Session, f.Body, f.Sig)
	if err != nil {
		c.refuse(err, seq)
		return
	}
	c.Send(mustJSON(ack))
}

// peekSeq reads seq from an unverified body, only to label an error frame.
func peekSeq(body string) uint64 {
	var p struct {
		Seq uint64 `json:"seq"`
	}
	_ = json.Unmarshal([]byte(body), &p)
	return p.Seq
}

func (c *conn) writeLoop() {
	ping := time.NewTicker(c.h.cfg.PingInterval)
	defer ping.Stop()
	for {
		select {
		case <-c.ctx.Done():
			c.ws.Close(c.closeCode, c.closeReason)
			return
		case f := <-c.send:
			if !c.writeOrClose(c.gather([][]byte{f})) {
				return
			}
		case <-c.sigReady:
			if fs := c.takeSignals(); len(fs) > 0 && !c.writeOrClose(fs) {
				return
			}
		case <-ping.C:
			ctx, cancel := context.WithTimeout(context.Background(), c.h.cfg.WriteTimeout)
			err := c.ws.Ping(ctx)
			cancel()
			if err != nil && c.ctx.Err() == nil {
				c.kill(websocket.StatusGoingAway, "heartbeat lost", "heartbeat")
			}
		}
	}
}

// gatherBytes is where gather stops taking more frames for one message.
const gatherBytes = 32 << 10

// gather adds to frames those queued behind them, up to about gatherBytes,
// so they go out as one message in one write (PROTOCOL.md §1).
func (c *conn) gather(frames [][]byte) [][]byte {
	size := 0
	for _, f := range frames {
		size += len(f) + 1
	}
	for size < gatherBytes {
		select {
		case f := <-c.send:
			frames = append(frames, f)
			size += len(f) + 1
		default:
			return frames
		}
	}
	return frames
}

// writeOrClose writes frames as one message; false means the connection is
// over (the write failed, or the connection was killed meanwhile and is
// now closed).
func (c *conn) writeOrClose(frames [][]byte) bool {
	if err := c.write(frames); err != nil {
		c.kill(protocol.CloseSlowConsumer, "write timed out", "write_timeout")
		c.ws.CloseNow()
		return false
	}
	if c.ctx.Err() != nil {
		c.ws.Close(c.closeCode, c.closeReason)
		return false
	}
	return true
}

func (c *conn) write(frames [][]byte) error {
	msg := frames[0]
	if len(frames) > 1 {
		msg = bytes.Join(frames, []byte{protocol.FrameSeparator})
	}
	ctx, cancel := context.WithTimeout(context.Background(), c.h.cfg.WriteTimeout)
	defer cancel()
	if err := c.ws.Write(ctx, websocket.MessageText, msg); err != nil {
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
