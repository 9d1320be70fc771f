package hub

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
)

// Buffer sizes for an upgraded socket. net/http hands the hijacked
// connection over with its own 4 KiB reader and writer, which coder/websocket
// keeps for the socket's life: 8 KiB of every idle session. Frames here are
// small (a price tick is about 90 bytes, a signed command about 530, a
// firing's diff about 930); a larger one is read in more calls or written
// in two.
const (
	socketReadBuffer  = 1 << 10
	socketWriteBuffer = 1 << 10
)

// smallBuffers wraps a ResponseWriter so that hijacking it returns the
// connection with smaller buffers. Bytes the client sent right behind the
// upgrade request (already in net/http's reader) come first in the new
// reader's buffer (TestFrameRightBehindTheUpgradeIsRead).
type smallBuffers struct{ http.ResponseWriter }

func (w smallBuffers) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	hj, ok := w.ResponseWriter.(http.Hijacker)
	if !ok {
		return nil, nil, http.ErrNotSupported
	}
	c, brw, err := hj.Hijack()
	if err != nil {
		return nil, nil, err
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
	return c, bufio.NewReadWriter(br, bufio.NewWriterSize(c, socketWriteBuffer)), nil
}
