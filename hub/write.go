package hub

import (
	"bytes"
	"context"
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
// Each round of writes runs under a deadline on the socket, cleared when
// the writer ends so that a later ping or close is not cut short by it (a
// writer that fails leaves it: the connection is closing).
// Not a context per write: coder/websocket arms a context.AfterFunc for
// every write given a cancellable context, and that with the context's
// own timer was a large share of the node's CPU in a price fan-out.
func (c *conn) writeLoop() {
	defer c.tasks.Done()
	for {
		c.outMu.Lock()
		frames, signals := c.takeLocked()
		bound := c.boundAfter
		c.boundAfter = false
		if c.ctx.Err() != nil || len(frames)+len(signals) == 0 && !bound {
			// Cleared before another writer may start and set its own.
			c.sock.setWriteDeadline(time.Time{})
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
		c.outMu.Unlock()
		c.sock.setWriteDeadline(time.Now().Add(c.h.cfg.WriteTimeout))
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
func (c *conn) writeOrClose(frames [][]byte) bool {
	if err := c.write(frames); err != nil {
		c.kill(protocol.CloseSlowConsumer, "write timed out", "write_timeout")
		c.sock.closeNow()
		return false
	}
	return c.ctx.Err() == nil
}

func (c *conn) write(frames [][]byte) error {
	msg := frames[0]
	if len(frames) > 1 {
		msg = bytes.Join(frames, []byte{protocol.FrameSeparator})
	}
	if err := c.sock.write(msg); err != nil {
		return fmt.Errorf("write frame: %w", err)
	}
	c.h.cfg.Metrics.FramesSent.Add(float64(len(frames)))
	return nil
}
