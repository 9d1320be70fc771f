package cluster

import (
	"context"
	"encoding/binary"

	"github.com/coder/websocket"
)

// A link's read loop: every record the peer sends, dispatched.

// read dispatches records until the link ends. Nothing it calls blocks:
// a session's frames queue on its conn, or close it.
func (lk *link) read() {
	defer lk.close(websocket.StatusGoingAway, "")
	for {
		typ, data, err := lk.ws.Read(context.Background())
		if err != nil {
			return
		}
		if typ != websocket.MessageBinary || len(data) < headerLen {
			lk.l.log.Warn().Str("peer", lk.peer).Msg("node link: malformed record; link closed")
			return
		}
		kind, id, payload := data[0], binary.BigEndian.Uint32(data[1:headerLen]), data[headerLen:]
		if kind == recOpen {
			lk.accept(id, payload)
			continue
		}
		if lk.readMove(kind, id, payload) {
			continue
		}
		if kind == recFund {
			lk.fund(payload)
			continue
		}
		s := lk.stream(id)
		if s == nil {
			continue // a stream that just ended here
		}
		switch kind {
		case recText, recBinary:
			if s.fwd != nil {
				s.fwd.Frame(payload, kind == recBinary)
			} else if s.down != nil {
				s.down.Deliver(payload)
			}
		case recBound:
			if s.down != nil {
				s.down.Bound()
			}
		case recClose:
			lk.forget(id)
			s.once.Do(func() {}) // nothing to tell the peer: it ended it
			code, reason := websocket.StatusNormalClosure, ""
			if len(payload) >= 2 {
				code, reason = websocket.StatusCode(binary.BigEndian.Uint16(payload)), string(payload[2:])
			}
			if s.fwd != nil {
				s.fwd.Close()
			} else if s.down != nil {
				s.down.Closed(code, reason)
			}
		}
	}
}
