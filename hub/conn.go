package hub

import (
	"context"
	"encoding/json"
	"net"
	"net/netip"

	"github.com/coder/websocket"
	"github.com/rs/zerolog"
	"golang.org/x/time/rate"

	"github.com/spells-dev/spells/protocol"
)

// A connection's state changes that every part of it uses: being
// counted, signing in, refusing a frame, and closing.

func newConn(h *Hub, ws *websocket.Conn, nc net.Conn, wr *wire, remote string, key netip.Prefix) *conn {
	ctx, cancel := context.WithCancel(context.Background())
	ws.SetReadLimit(h.cfg.ReadLimit)
	c := &conn{
		h: h, ws: ws, sock: wsSocket{ws, nc, wr}, ctx: ctx, cancel: cancel, remote: remote, key: key,
		nonce: h.cfg.Nonces.Issue(h.cfg.Clock.Now()),
		limit: rate.NewLimiter(rate.Limit(h.cfg.CommandRate), h.cfg.CommandBurst),
	}
	c.pending.Store(true)
	return c
}

// authenticated stops counting the socket against its address's limit
// of unauthenticated sockets (it signed in, or it ended).
func (c *conn) authenticated() {
	if c.pending.Swap(false) {
		c.h.limits.authenticated(c.key)
	}
}

// markSignedIn marks the socket bound to a session: here, or on the vault's
// node through a stream.
func (c *conn) markSignedIn() {
	c.signedIn.Store(true)
	c.authenticated()
	// Neither is needed once bound (a second sign-in is refused), and an
	// idle session should hold no more than it uses.
	if c.signInTimer != nil {
		c.signInTimer.Stop()
	}
	c.signInTimer, c.nonce = nil, ""
}

// refuse sends an error frame and logs it. seq is the command's seq as
// sent, echoed even when it is 0; nil for frames that are not commands.
func (c *conn) refuse(err error, seq *uint64) {
	ef := protocol.NewErrorFrame(err, seq)
	c.h.cfg.Metrics.FrameErrors.WithLabelValues(string(ef.Code)).Inc()
	level := zerolog.InfoLevel
	if ef.Code == protocol.CodeInternal {
		level = zerolog.ErrorLevel
	}
	ev := c.logAt(level).Str("code", string(ef.Code)).Str("msg", ef.Message)
	if seq != nil {
		ev = ev.Uint64("seq", *seq)
	}
	ev.Msg("frame refused")
	c.Send(mustJSON(ef))
}

// Gone is called by a vault that ended under this connection (a failed
// group commit, a damaged file): the client reconnects and resumes from
// the version it holds.
func (c *conn) Gone() {
	c.kill(websocket.StatusTryAgainLater, "vault reloaded: reconnect and resume", "vault_gone")
}

// Moved is called by a vault that moved to another node of the cluster:
// the client reconnects (to any node) and resumes from the version it
// holds, and is routed to the vault's new node.
func (c *conn) Moved() {
	c.kill(protocol.CloseVaultMoved, "vault moved to another node: reconnect and resume", "vault_moved")
}

func (c *conn) alreadyBound() bool {
	if c.bound != nil {
		c.refuse(protocol.Errorf(protocol.CodeAlreadySignedIn, "this socket is already bound to a session"), nil)
		return true
	}
	return false
}

// signInAllowed spends one of the address's sign-in attempts, refusing
// the frame if it has none left.
func (c *conn) signInAllowed() bool {
	if c.up != nil || c.h.limits.signInAllowed(c.key) {
		// (A forwarded attempt was counted by the client's node.)
		return true
	}
	c.h.cfg.Metrics.SignInsLimited.Inc()
	c.refuse(protocol.Errorf(protocol.CodeRateLimited, "too many sign-ins from your address; retry in a few seconds"), nil)
	return false
}

func (c *conn) endStream() { c.endedOnce.Do(func() { close(c.ended) }) }

// peekSeq reads seq from an unverified command body, only to label the
// answer to it; nil when the body names none.
func peekSeq(body string) *uint64 {
	var p struct {
		Seq *uint64 `json:"seq"`
	}
	_ = json.Unmarshal([]byte(body), &p)
	return p.Seq
}

// source is the address the client is counted under by the limits per
// source address ("" if unknown).
func (c *conn) source() string {
	k := c.key
	if !k.IsValid() {
		k = addrKey(c.remote)
	}
	if !k.IsValid() {
		return ""
	}
	return k.String()
}
