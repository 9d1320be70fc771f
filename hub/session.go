package hub

import (
	"github.com/ethereum/go-ethereum/common"
	"github.com/rs/zerolog"

	"github.com/spells-dev/spells/protocol"
)

// Binding a socket to a vault's session, and its commands: the hub passes
// on what the client sent, and the vaults decide.

func (c *conn) signIn(f protocol.ClientFrame, in frameIn) {
	if c.alreadyBound() || !c.signInAllowed() {
		return
	}
	if msg, err := protocol.ParseMessage(f.Message); err == nil && c.forward(msg.Address, in) {
		return
	}
	// The vault layer verifies everything itself; the hub only passes on
	// the nonce it issued on this socket.
	b, err := c.h.cfg.Vaults.SignIn(c.ctx, SignIn{Message: f.Message, Signature: f.Signature, Nonce: c.nonce, Since: f.Since, From: c.source()}, c)
	c.bind(b, err)
}

func (c *conn) resume(f protocol.ClientFrame, in frameIn) {
	if c.alreadyBound() || !c.signInAllowed() {
		return
	}
	if r, err := protocol.ParseResume(f.Body); err == nil && common.IsHexAddress(r.Vault) && c.forward(common.HexToAddress(r.Vault), in) {
		return
	}
	b, err := c.h.cfg.Vaults.Resume(c.ctx, f.Body, f.Sig, c.nonce, c)
	c.bind(b, err)
}

// revoke asks the vault to end every one of its sessions, on the owner's
// signature; it is sent on a socket that has not signed in (its nonce is
// in the signed message).
func (c *conn) revoke(f protocol.ClientFrame, in frameIn) {
	if c.alreadyBound() || !c.signInAllowed() {
		return
	}
	msg, err := protocol.ParseMessage(f.Message)
	if err != nil {
		c.refuse(err, nil)
		return
	}
	if c.forward(msg.Address, in) {
		return
	}
	n, err := c.h.cfg.Vaults.Revoke(c.ctx, SignIn{Message: f.Message, Signature: f.Signature, Nonce: c.nonce})
	if err != nil {
		if c.ctx.Err() == nil {
			c.refuse(err, nil)
		}
		return
	}
	c.logAt(zerolog.InfoLevel).Str("vault", msg.Address.Hex()).Int("sessions", n).Msg("every session revoked")
	c.Send(mustJSON(protocol.Revoked{Type: protocol.TypeRevoked, Vault: msg.Address.Hex(), Sessions: n}))
}

func (c *conn) bind(b Session, err error) {
	if err != nil {
		if c.ctx.Err() == nil {
			c.refuse(err, nil)
		}
		return
	}
	c.bound = b
	c.markSignedIn()
	c.logAt(zerolog.InfoLevel).Str("vault", b.Vault().Hex()).Str("session", b.ID()).Bool("forwarded", c.up != nil).Msg("session bound")
	c.Send(mustJSON(protocol.SignalsFrame{Type: protocol.TypeSignals, Series: c.h.cfg.History.Recent()}))
	if c.up != nil {
		c.outMu.Lock()
		c.boundAfter = true
		if c.ctx.Err() == nil {
			c.startWriterLocked()
		}
		c.outMu.Unlock()
	}
}

func (c *conn) command(f protocol.ClientFrame, seq *uint64) {
	if c.bound == nil {
		c.refuse(protocol.Errorf(protocol.CodeNotSignedIn, "sign in or resume before sending commands"), seq)
		return
	}
	// Not waiting for the answer lets a client pipeline commands; the
	// vault answers them in order, from its goroutine, once durable.
	err := c.bound.Command(c.ctx, f.Body, f.Sig, func(ack protocol.Ack, err error) {
		switch {
		case c.ctx.Err() != nil: // closed meanwhile: nobody to answer
		case err != nil:
			c.refuse(err, seq)
		default:
			c.Send(mustJSON(ack))
		}
	})
	if err != nil && c.ctx.Err() == nil {
		c.refuse(err, seq)
	}
}
