package hub

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/coder/websocket"

	"github.com/spells-dev/spells/protocol"
)

// The write half of a connection: vault frames queue in order, at most
// SendQueue of them; live signal values are conflated per name (a
// dashboard needs the latest price, not a backlog), so signals never fill
// the queue. One writer runs while there is something to write.

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

// Ended is called by a vault whose session this connection is bound to
// ended (signed out, or every session revoked): once the frames queued
// for it are written (the answer to the command that ended it among
// them), the connection is closed with CloseSessionEnded.
func (c *conn) Ended(reason string) {
	c.endAfter(protocol.CloseSessionEnded, "session ended ("+reason+"): sign in again")
}

// endAfter closes the connection with code and reason once the frames
// queued before it are written.
func (c *conn) endAfter(code websocket.StatusCode, reason string) {
	c.outMu.Lock()
	if c.ctx.Err() != nil || c.closeAfter != "" {
		c.outMu.Unlock()
		return
	}
	c.closeAfter, c.closeAfterCode = reason, code
	c.startWriterLocked()
	c.outMu.Unlock()
}

// Room is how many frames Send can queue now; vaults send a snapshot
// instead of a catch-up that would not fit.
func (c *conn) Room() int {
	c.outMu.Lock()
	defer c.outMu.Unlock()
	return c.h.cfg.SendQueue - len(c.queue)
}

// signalOut is a signal frame for every socket: its JSON, and that framed
// once as a WebSocket message of its own.
type signalOut struct {
	frame, framed []byte
}

// SendSignal hands the writer the newest frame of a signal, replacing one
// not yet written. It never blocks.
//
// A socket with nothing waiting to be written gets the frame at once, from
// the caller's goroutine (the fan-out's), if the socket takes it without
// waiting: no writer is started for it. That is a price tick's usual
// path: one system call, no goroutine, no timer.
func (c *conn) SendSignal(name string, out signalOut) {
	c.outMu.Lock()
	defer c.outMu.Unlock()
	if c.ctx.Err() != nil {
		return
	}
	if done := c.trySignalLocked(out); done {
		return
	}
	if c.sigPending == nil {
		c.sigPending = map[string]signalOut{}
	}
	if _, ok := c.sigPending[name]; !ok {
		c.sigOrder = append(c.sigOrder, name)
	}
	c.sigPending[name] = out
	c.startWriterLocked()
}

// trySignalLocked writes a signal's frame now if nothing else waits to be
// written and the socket takes it without waiting; true means it was (or
// the connection is over). Called and returning with outMu held; the
// write itself runs without it, as the connection's writer (writing),
// so a frame sent meanwhile waits for it and then gets a writer.
func (c *conn) trySignalLocked(out signalOut) bool {
	ws, ok := c.sock.(wsSocket)
	if !ok || out.framed == nil || c.writing || len(c.queue) > 0 || len(c.sigOrder) > 0 || c.wireRest ||
		c.closeAfter != "" || c.boundAfter {
		return false
	}
	c.writing = true
	c.outMu.Unlock()
	res, err := ws.wire.tryWrite(out.framed)
	c.outMu.Lock()
	c.writing = false
	if err != nil {
		c.outMu.Unlock()
		if !errors.Is(err, errWireClosed) {
			c.kill(protocol.CloseSlowConsumer, "write failed", "write_timeout")
			c.sock.closeNow()
		}
		c.outMu.Lock()
		return true
	}
	if res == notWritten {
		return false
	}
	c.h.cfg.Metrics.FramesSent.Inc()
	c.wireRest = res == writtenInPart
	if (c.wireRest || len(c.queue) > 0 || len(c.sigOrder) > 0 || c.closeAfter != "" || c.boundAfter) && c.ctx.Err() == nil {
		c.startWriterLocked()
	}
	return true
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
func (c *conn) takeLocked() (frames [][]byte, signals []signalOut) {
	frames, c.queue = c.queue, nil
	for _, name := range c.sigOrder {
		signals = append(signals, c.sigPending[name])
		delete(c.sigPending, name)
	}
	c.sigOrder = c.sigOrder[:0]
	return frames, signals
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
	err := c.sock.ping(ctx)
	cancel()
	switch {
	case c.ctx.Err() != nil:
	case err != nil:
		c.kill(websocket.StatusGoingAway, "heartbeat lost", "heartbeat")
	default:
		c.pinger.Reset(c.h.cfg.PingInterval)
	}
}

// writeLoop writes what is queued, vault frames first, until nothing is;
// then it ends (the next Send starts another).
//
// Each round of writes is bounded by WriteTimeout: the round's start is
// in writeSince, and the hub's write watch (watchWrites) cuts short a
// round that outlasts it. Neither a deadline set on the socket for every
// round (two timer updates in the runtime's poller a frame, about a tenth
// of the node's CPU in a price fan-out) nor a context per write
// (coder/websocket arms a context.AfterFunc for every write given a
// cancellable context).
func (c *conn) writeLoop() {
	defer c.tasks.Done()
	for {
		c.outMu.Lock()
		frames, signals := c.takeLocked()
		bound, rest := c.boundAfter, c.wireRest
		c.boundAfter, c.wireRest = false, false
		if c.ctx.Err() != nil || len(frames)+len(signals) == 0 && !bound && !rest {
			c.writeSince.Store(0)
			c.writing = false
			closeAfter, code := c.closeAfter, c.closeAfterCode
			c.outMu.Unlock()
			if closeAfter != "" && c.ctx.Err() == nil {
				metric := "session_ended"
				if code == StreamUnbound {
					metric = "unbound"
				}
				c.kill(code, closeAfter, metric)
			}
			return
		}
		c.writeSince.Store(time.Now().UnixNano())
		c.outMu.Unlock()
		if rest {
			if err := c.sock.flush(); err != nil {
				c.writeFailed(err)
				return
			}
		}
		for len(frames) > 0 {
			n := gather(frames)
			if !c.writeOrClose(frames[:n], nil) {
				return
			}
			frames = frames[n:]
		}
		switch len(signals) {
		case 0:
		case 1: // the usual case: one signal, framed once for every socket
			if !c.writeOrClose([][]byte{signals[0].frame}, signals[0].framed) {
				return
			}
		default:
			all := make([][]byte, len(signals))
			for i, s := range signals {
				all[i] = s.frame
			}
			for len(all) > 0 {
				n := gather(all)
				if !c.writeOrClose(all[:n], nil) {
					return
				}
				all = all[n:]
			}
		}
		if bound {
			c.up.Bound()
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
func (c *conn) writeOrClose(frames [][]byte, framed []byte) bool {
	if err := c.write(frames, framed); err != nil {
		return c.writeFailed(err)
	}
	return c.ctx.Err() == nil
}

// writeFailed ends the connection after a failed write; it returns false
// (the writer stops).
func (c *conn) writeFailed(err error) bool {
	if !errors.Is(err, errWireClosed) { // else closing already: whoever sent the close frame ends it
		c.kill(protocol.CloseSlowConsumer, "write timed out", "write_timeout")
		c.sock.closeNow()
	}
	return false
}

func (c *conn) write(frames [][]byte, framed []byte) error {
	msg := frames[0]
	if len(frames) > 1 {
		msg = bytes.Join(frames, []byte{protocol.FrameSeparator})
	}
	if err := c.sock.write(msg, framed); err != nil {
		return fmt.Errorf("write frame: %w", err)
	}
	c.h.cfg.Metrics.FramesSent.Add(float64(len(frames)))
	return nil
}

// watchWrites runs until stop is closed: every quarter of WriteTimeout it
// cuts short each writer whose round has lasted longer than WriteTimeout
// (a client that stopped reading): the socket's write deadline is moved
// to the past, which fails the blocked write, and the connection is
// closed as a slow consumer.
func (h *Hub) watchWrites(stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(max(h.cfg.WriteTimeout/4, 10*time.Millisecond))
	defer t.Stop()
	var conns []*conn
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		limit := time.Now().Add(-h.cfg.WriteTimeout).UnixNano()
		h.mu.Lock()
		conns = conns[:0]
		for c := range h.conns {
			if s := c.writeSince.Load(); s != 0 && s < limit {
				conns = append(conns, c)
			}
		}
		h.mu.Unlock()
		for _, c := range conns {
			c.writeStuck(limit)
		}
		clear(conns)
	}
}

// writeStuck fails the writer's blocked write and closes the connection,
// if the round that began before limit is still being written.
func (c *conn) writeStuck(limit int64) {
	c.outMu.Lock()
	s := c.writeSince.Load()
	stuck := c.writing && s != 0 && s < limit
	if stuck {
		c.sock.setWriteDeadline(time.Unix(1, 0))
	}
	c.outMu.Unlock()
	if stuck {
		c.kill(protocol.CloseSlowConsumer, "write timed out", "write_timeout")
	}
}
