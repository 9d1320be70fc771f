package hub

import (
	"context"
	"errors"

	"github.com/coder/websocket"
	"github.com/rs/zerolog"

	"github.com/spells-dev/spells/protocol"
)

// The read half of a connection: one read loop per socket, and a worker
// that handles the frames it read, in order, so the loop keeps reading
// (and answering heartbeats) while a vault is busy or opening.

// readLoop reads frames and hands them to the worker.
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
	c.pushInLocked(f)
	c.inMu.Unlock()
}

// pushInLocked queues f for the worker, starting one if none runs; inMu
// is held.
func (c *conn) pushInLocked(f frameIn) {
	c.in = append(c.in, f)
	if !c.working {
		c.working = true
		c.workers.Add(1)
		go c.workLoop()
	}
}

// workLoop handles frames in order until none wait, then ends (the next
// frame read starts another). The queue is dropped whenever it empties,
// so an idle session holds none.
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

func (c *conn) readFailed(err error) {
	switch {
	case errors.Is(err, websocket.ErrMessageTooBig):
		c.h.cfg.Metrics.FrameErrors.WithLabelValues(string(protocol.CodeTooLarge)).Inc()
		c.logAt(zerolog.InfoLevel).Int64("limit", c.h.cfg.ReadLimit).Msg("frame too large; closed 1009")
		c.kill(websocket.StatusMessageTooBig, "too_large: frame above the read limit", "too_large")
	case c.ctx.Err() != nil:
	default:
		c.kill(websocket.StatusNormalClosure, "", "client")
	}
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
