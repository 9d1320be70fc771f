package hub

import (
	"context"
	"net"
	"time"

	"github.com/coder/websocket"
)

// What a connection's writer writes to: a WebSocket, or the stream of a
// session another node forwards here.

// wsSocket is a client's WebSocket; nc is the connection under it, whose
// write deadline the writer sets.
type wsSocket struct {
	ws *websocket.Conn
	nc net.Conn
}

func (s wsSocket) write(msg []byte) error {
	return s.ws.Write(context.Background(), websocket.MessageText, msg)
}

func (s wsSocket) setWriteDeadline(t time.Time) { s.nc.SetWriteDeadline(t) }

func (s wsSocket) ping(ctx context.Context) error { return s.ws.Ping(ctx) }

func (s wsSocket) close(code websocket.StatusCode, reason string) {
	s.ws.Close(code, reason)
}

func (s wsSocket) closeNow() { s.ws.CloseNow() }

// upSocket is a forwarded session's stream. The link bounds its writes;
// pings are the link's.
type upSocket struct{ c *conn }

func (s upSocket) write(msg []byte) error { return s.c.up.Write(msg) }

func (upSocket) setWriteDeadline(time.Time) {}

func (upSocket) ping(context.Context) error { return nil }

func (s upSocket) closeNow() { s.close(websocket.StatusGoingAway, "") }

func (s upSocket) close(code websocket.StatusCode, reason string) {
	s.c.up.Close(code, reason)
	s.c.endStream()
}
