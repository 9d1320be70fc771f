package hub

import (
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/ethereum/go-ethereum/common"
	"github.com/rs/zerolog"

	"github.com/spells-dev/spells/protocol"
)

// forward sends a sign-in, resume or revoke frame to the node of the
// vault it names when that is another node, and waits for the verdict.
// It reports false when the vault is served here.
func (c *conn) forward(vault common.Address, in frameIn) bool {
	r := c.h.cfg.Router
	if r == nil || c.up != nil {
		return false // a forwarded session is served where it lands: one hop
	}
	fw, err := r.Route(c.ctx, vault)
	if err != nil {
		c.refuse(err, nil)
		return true
	}
	if fw == nil {
		return false
	}
	d := &downstream{c: c, verdict: make(chan verdict, 1)}
	s, err := fw.Open(c.ctx, c.nonce, c.remote, d)
	if err == nil {
		err = s.Send(in.data, in.binary)
	}
	if err != nil {
		if s != nil {
			s.Close()
		}
		c.refuse(err, nil)
		return true
	}
	t := time.NewTimer(verdictTimeout)
	defer t.Stop()
	var v verdict
	select {
	case v = <-d.verdict:
	case <-c.ctx.Done():
		s.Close()
		return true
	case <-t.C:
		s.Close()
		c.h.cfg.Metrics.ForwardFailed.Inc()
		c.refuse(protocol.Errorf(protocol.CodeNodeUnreachable, "the vault's node did not answer in %s; retry", verdictTimeout), nil)
		return true
	}
	switch {
	case v.bound:
		c.stream = s
		c.markSignedIn()
		c.logAt(zerolog.InfoLevel).Str("vault", vault.Hex()).Msg("session forwarded to the vault's node")
	case v.code != StreamUnbound:
		c.kill(v.code, v.reason, "forwarded_closed")
	}
	return true
}

// forwardFrame sends a frame of a bound forwarded session on; the entry
// still spends the client's rate limit.
func (c *conn) forwardFrame(in frameIn) {
	if in.limited {
		var seq *uint64
		if f, err := protocol.DecodeClientFrame(in.data); err == nil && f.Type == protocol.TypeCmd {
			seq = peekSeq(f.Body)
		}
		c.h.cfg.Metrics.RateLimited.Inc()
		c.refuse(protocol.Errorf(protocol.CodeRateLimited, "more than %g frames per second; slow down", c.h.cfg.CommandRate), seq)
		return
	}
	if err := c.stream.Send(in.data, in.binary); err != nil {
		c.kill(protocol.CloseNodeLink, "lost the link to the vault's node: reconnect and resume", "node_link")
	}
}

// downstream is the entry's receiver of one stream.
type downstream struct {
	c       *conn
	mu      sync.Mutex
	decided bool
	verdict chan verdict // the first Bound or Closed, once
}

func (d *downstream) Deliver(msg []byte) { d.c.Send(msg) }

func (d *downstream) Bound() { d.decide(verdict{bound: true}) }

func (d *downstream) Closed(code websocket.StatusCode, reason string) {
	if !d.decide(verdict{code: code, reason: reason}) && code != StreamUnbound {
		// A bound session ended on the vault's node (its session ended,
		// the vault reloaded, the node stops): the client is told why.
		d.c.kill(code, reason, "forwarded_closed")
	}
}

// decide hands the waiting worker its verdict; false once one was given.
func (d *downstream) decide(v verdict) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.decided {
		return false
	}
	d.decided = true
	d.verdict <- v
	return true
}
