package cluster

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"time"

	"github.com/coder/websocket"

	"github.com/spells-dev/spells/hub"
	"github.com/spells-dev/spells/protocol"
)

// One link: its records out, its streams, its pings, and its end.

func (lk *link) send(kind byte, id uint32, payload []byte) error {
	buf := make([]byte, headerLen+len(payload))
	buf[0] = kind
	binary.BigEndian.PutUint32(buf[1:], id)
	copy(buf[headerLen:], payload)
	ctx, cancel := context.WithTimeout(context.Background(), linkWriteTimeout)
	defer cancel()
	if err := lk.ws.Write(ctx, websocket.MessageBinary, buf); err != nil {
		lk.close(websocket.StatusGoingAway, "write failed")
		return unreachable("lost the link to node %s; retry", lk.peer)
	}
	lk.l.m.RecordsSent.Inc()
	return nil
}

// Open implements hub.Forwarder: a new stream to the peer for a client.
func (lk *link) Open(ctx context.Context, nonce, remote string, down hub.Downstream) (hub.Stream, error) {
	lk.mu.Lock()
	if lk.over {
		lk.mu.Unlock()
		return nil, unreachable("lost the link to node %s; retry", lk.peer)
	}
	s := &stream{lk: lk, id: lk.next, down: down}
	lk.next += 2
	lk.streams[s.id] = s
	lk.mu.Unlock()
	open, _ := json.Marshal(map[string]string{"nonce": nonce, "remote": remote})
	if err := lk.send(recOpen, s.id, open); err != nil {
		return nil, err
	}
	lk.l.m.StreamsOpen.Inc()
	return s, nil
}

// Send implements hub.Stream.
func (s *stream) Send(frame []byte, bin bool) error {
	kind := recText
	if bin {
		kind = recBinary
	}
	return s.lk.send(kind, s.id, frame)
}

// Close implements hub.Stream (the client left) and, on the vault's
// side, ends the stream from there.
func (s *stream) Close() { s.end(websocket.StatusNormalClosure, "") }

// Write, Bound and Close are hub.Upstream: the vault's node's side.
func (s *stream) Write(msg []byte) error { return s.lk.send(recText, s.id, msg) }

// Bound implements hub.Upstream.
func (s *stream) Bound() { _ = s.lk.send(recBound, s.id, nil) }

// Close implements hub.Upstream.
func (u upstream) Close(code websocket.StatusCode, reason string) { u.end(code, reason) }

// end tells the peer the stream is over, once, and forgets it.
func (s *stream) end(code websocket.StatusCode, reason string) {
	s.once.Do(func() {
		s.lk.forget(s.id)
		_ = s.lk.send(recClose, s.id, closePayload(code, reason))
	})
}

func (lk *link) forget(id uint32) {
	lk.mu.Lock()
	delete(lk.streams, id)
	lk.mu.Unlock()
}

func (lk *link) stream(id uint32) *stream {
	lk.mu.Lock()
	defer lk.mu.Unlock()
	return lk.streams[id]
}

// accept serves a stream the peer opened.
func (lk *link) accept(id uint32, payload []byte) {
	var open struct {
		Nonce  string `json:"nonce"`
		Remote string `json:"remote"`
	}
	if json.Unmarshal(payload, &open) != nil || lk.l.hub == nil || id%2 == lk.next%2 {
		_ = lk.send(recClose, id, closePayload(websocket.StatusPolicyViolation, "malformed stream"))
		return
	}
	s := &stream{lk: lk, id: id}
	lk.mu.Lock()
	if lk.over || lk.streams[id] != nil {
		lk.mu.Unlock()
		return
	}
	lk.streams[id] = s
	lk.mu.Unlock()
	fwd, err := lk.l.hub.ServeForwarded(upstream{s}, open.Nonce, open.Remote+" via "+lk.peer)
	if err != nil {
		s.end(websocket.StatusGoingAway, err.Error())
		return
	}
	lk.mu.Lock()
	s.fwd = fwd
	lk.mu.Unlock()
}

// ping checks the peer every linkPing; one that does not answer ends the
// link.
// ping checks the link every linkPing. When the link closes, it runs the
// WebSocket's close handshake (which may wait for the peer); the link's
// read loop ends with it.
func (lk *link) ping() {
	defer func() { lk.ws.Close(lk.closeCode, lk.closeReason) }()
	t := time.NewTicker(linkPing)
	defer t.Stop()
	for {
		select {
		case <-lk.done:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), linkWriteTimeout)
		err := lk.ws.Ping(ctx)
		cancel()
		if err != nil {
			lk.close(websocket.StatusGoingAway, "ping failed")
			return
		}
	}
}

// close ends the link once: every stream on it ends (an entry's client
// is closed with CloseNodeLink, to reconnect; a forwarded session ends).
func (lk *link) close(code websocket.StatusCode, reason string) {
	lk.closeOnce.Do(func() {
		lk.mu.Lock()
		lk.over = true
		streams := lk.streams
		lk.streams = map[uint32]*stream{}
		for id, ch := range lk.calls {
			close(ch)
			delete(lk.calls, id)
		}
		lk.moves = map[uint32]*moveIn{}
		lk.mu.Unlock()
		lk.closeCode, lk.closeReason = code, reason
		close(lk.done) // the ping loop closes the WebSocket
		lk.l.dropped(lk)
		lk.l.log.Warn().Str("peer", lk.peer).Int("streams", len(streams)).Str("reason", reason).Msg("node link down")
		for _, s := range streams {
			s.once.Do(func() {})
			switch {
			case s.fwd != nil:
				s.fwd.Close()
			case s.down != nil:
				s.down.Closed(protocol.CloseNodeLink, "lost the link to the vault's node: reconnect and resume")
			}
		}
	})
}

func (l *Links) dropped(lk *link) {
	l.mu.Lock()
	if l.links[lk.peer] == lk {
		delete(l.links, lk.peer)
	}
	l.mu.Unlock()
	l.m.Links.Dec()
	l.m.LinksDropped.Inc()
}
