package hub

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"syscall"
)

// Buffer sizes for an upgraded socket. net/http hands the hijacked
// connection over with its own 4 KiB reader and writer, which coder/websocket
// keeps for the socket's life: 8 KiB of every idle session. Here the reader
// holds only a frame header: a bufio.Reader reads a larger payload straight
// into the message (an extra read system call per frame, lost in the noise
// of the commands benchmark). The writer holds a whole price tick (about 90
// bytes) or ack (about 80) so those go out in one write; a larger frame (a
// diff, about 500 bytes, a firing's about 930) goes out in two. Together
// that is 1.5 KiB less per idle session than 1 KiB / 1 KiB (DECISIONS.md,
// "Connections and the runtime").
const (
	socketReadBuffer  = 16
	socketWriteBuffer = 512
)

// smallBuffers wraps a ResponseWriter so that hijacking it returns the
// connection with smaller buffers. Bytes the client sent right behind the
// upgrade request (already in net/http's reader) come first in the new
// reader's buffer (TestFrameRightBehindTheUpgradeIsRead).
//
// It also hands back the hijacked connection (in *netConn), on which the
// hub sets write deadlines, and puts it under wire, through which
// coder/websocket's writer writes (wire.go).
type smallBuffers struct {
	http.ResponseWriter
	netConn *net.Conn
	wire    *wire
}

func (w smallBuffers) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := w.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, http.ErrNotSupported
	}
	c, brw, err := hj.Hijack()
	if err != nil {
		return nil, nil, err
	}
	*w.netConn = c
	w.wire.w = c
	if sc, ok := c.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			w.wire.raw = raw
		}
	}
	br := bufio.NewReaderSize(c, socketReadBuffer)
	if n := brw.Reader.Buffered(); n > 0 {
		pending, _ := brw.Reader.Peek(n)
		br = bufio.NewReaderSize(io.MultiReader(bytes.NewReader(bytes.Clone(pending)), c), max(socketReadBuffer, n))
		// Held in the new buffer, not just in its source: websocket.Accept
		// carries over what is buffered and reads the rest from c itself.
		if _, err := br.Peek(n); err != nil {
			c.Close()
			return nil, nil, err
		}
	}
	return c, bufio.NewReadWriter(br, bufio.NewWriterSize(w.wire, socketWriteBuffer)), nil
}
