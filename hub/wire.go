package hub

import (
	"encoding/binary"
	"errors"
	"io"
	"sync"
	"syscall"
)

// The wire under a client's WebSocket: every byte written to the socket
// goes through it, the hub's messages (writeMessage, framed by
// appendTextFrame) and coder/websocket's control frames (its buffered
// writer flushes into the wire's Write). Each is one write of whole
// frames, and writes to a connection never overlap (the wire's lock, and
// net.Conn's own), so no frame is cut by another.
//
// coder/websocket flushes each control frame whole: a frame is at most
// 139 bytes, the writer's buffer 512 (hijack.go), and it flushes at the
// end of every final frame. The hub never sends a data message through
// the library, so those flushes are the library's only writes. A close
// frame seen going out (the hub's own close, or the library answering the
// client's) ends the hub's messages: nothing is sent after it.

// textHeaderMax is the longest header of a frame the server sends (no
// mask; a 64-bit length).
const textHeaderMax = 10

// errWireClosed is a message refused after the close frame went out.
var errWireClosed = errors.New("the close frame was sent: no more messages")

// wire serializes writes to a socket's connection.
type wire struct {
	mu     sync.Mutex
	w      io.Writer       // the connection
	raw    syscall.RawConn // the connection's descriptor, for tryWrite; nil: none (not a plain TCP or Unix socket)
	rest   []byte          // the end of a message tryWrite left: written before anything else
	closed bool            // a close frame was written
}

// Write is the library's: one whole control frame (see above).
func (w *wire) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if err := w.flushRestLocked(); err != nil {
		return 0, err
	}
	if len(b) > 0 && b[0]&0x0f == 0x8 {
		w.closed = true
	}
	return w.w.Write(b)
}

// writeMessage writes one framed message, unless the close frame went out.
func (w *wire) writeMessage(framed []byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return errWireClosed
	}
	if err := w.flushRestLocked(); err != nil {
		return err
	}
	_, err := w.w.Write(framed)
	return err
}

// flushRest writes what tryWrite left, waiting for the socket as long as
// its write deadline lets it.
func (w *wire) flushRest() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.flushRestLocked()
}

func (w *wire) flushRestLocked() error {
	if w.rest == nil {
		return nil
	}
	rest := w.rest
	w.rest = nil
	_, err := w.w.Write(rest)
	return err
}

// partialHook, when set by a test, runs when tryWrite leaves a rest.
var partialHook func()

// tryWrite is what a write without waiting did.
type tryWrite int

const (
	notWritten    tryWrite = iota // the socket would have made it wait (or it cannot be written to without waiting)
	written                       // the whole message
	writtenInPart                 // a part: the rest waits in the wire (flushRest)
)

// tryWrite writes one framed message only as far as the socket takes it
// now: one write system call on the descriptor, never waiting for room.
// What it could not write of a message it started stays in the wire and
// goes out before anything else.
func (w *wire) tryWrite(framed []byte) (tryWrite, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return notWritten, errWireClosed
	}
	if w.raw == nil || w.rest != nil {
		return notWritten, nil
	}
	var n int
	var werr error
	// Control, not Write: the descriptor is held open for the call, and
	// every write to it is the wire's, under w.mu, so the poller's own
	// write lock and readiness bookkeeping (a tenth of a price fan-out's
	// CPU) have nothing to add to a write that never waits.
	err := w.raw.Control(func(fd uintptr) {
		for {
			n, werr = syscall.Write(int(fd), framed)
			if werr != syscall.EINTR {
				return // done, whatever the socket took: never wait here
			}
		}
	})
	switch {
	case err != nil:
		return notWritten, err
	case werr == syscall.EAGAIN:
		return notWritten, nil
	case werr != nil:
		return notWritten, werr
	case n == len(framed):
		return written, nil
	case n <= 0:
		return notWritten, nil
	}
	w.rest = framed[n:]
	if partialHook != nil {
		partialHook()
	}
	return writtenInPart, nil
}

// appendTextFrame appends msg as one final, unmasked text frame (RFC 6455
// §5.2: a server's frames are not masked).
func appendTextFrame(dst, msg []byte) []byte {
	const finText = 0x80 | 0x1
	switch n := len(msg); {
	case n < 126:
		dst = append(dst, finText, byte(n))
	case n <= 0xffff:
		dst = append(dst, finText, 126)
		dst = binary.BigEndian.AppendUint16(dst, uint16(n))
	default:
		dst = append(dst, finText, 127)
		dst = binary.BigEndian.AppendUint64(dst, uint64(n))
	}
	return append(dst, msg...)
}
