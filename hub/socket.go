package hub

import (
	"context"
	"net"
	"time"

	"github.com/coder/websocket"
)

// What a connection's writer writes to: a WebSocket, or the stream of a
// session another node forwards here.

// wsSocket is a client's WebSocket. The hub writes its messages itself,
// framed here, straight to nc (one write system call a message, no
// goroutine hand-off or lock of coder/websocket's on the way); the
// library keeps the read half, pings, and the close handshake, whose
// control frames reach nc through the same wire (wire.go), so frames
// never interleave.
type wsSocket struct {
	ws   *websocket.Conn
	nc   net.Conn
	wire *wire
}

func (s wsSocket) write(msg, framed []byte) error {
	if framed == nil {
		framed = appendTextFrame(make([]byte, 0, len(msg)+textHeaderMax), msg)
	}
	return s.wire.writeMessage(framed)
}

func (s wsSocket) flush() error { return s.wire.flushRest() }

func (s wsSocket) setWriteDeadline(t time.Time) { s.nc.SetWriteDeadline(t) }

func (s wsSocket) ping(ctx context.Context) error { return s.ws.Ping(ctx) }

func (s wsSocket) close(code websocket.StatusCode, reason string) {
	s.ws.Close(code, reason)
}

func (s wsSocket) closeNow() { s.ws.CloseNow() }

// upSocket is a forwarded session's stream. The link bounds its writes;
// pings are the link's.
type upSocket struct{ c *conn }

func (s upSocket) write(msg, _ []byte) error { return s.c.up.Write(msg) }

func (upSocket) flush() error { return nil }

func (upSocket) setWriteDeadline(time.Time) {}

func (upSocket) ping(context.Context) error { return nil }

func (s upSocket) closeNow() { s.close(websocket.StatusGoingAway, "") }

func (s upSocket) close(code websocket.StatusCode, reason string) {
	s.c.up.Close(code, reason)
	s.c.endStream()
}
