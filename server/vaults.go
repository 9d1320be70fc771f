package main

import (
	"context"
	"time"

	"github.com/ethereum/go-ethereum/common"

	"github.com/spells-dev/spells/cluster"
	"github.com/spells-dev/spells/hub"
	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/vault"
	"github.com/spells-dev/spells/vault/actor"
)

// hubVaults gives the hub the node's vaults (hub.Vaults): the hub passes
// on what clients send, and the vaults decide.
type hubVaults struct {
	m     *vault.Manager
	moves *mover // every signal's values go to the move maker too
}

var _ hub.Vaults = hubVaults{}

func (h hubVaults) SignIn(ctx context.Context, r hub.SignIn, sub hub.Subscriber) (hub.Session, error) {
	b, err := h.m.SignIn(ctx, vault.SignInRequest{Message: r.Message, Signature: r.Signature, Nonce: r.Nonce, Since: r.Since, Sub: sub, From: r.From})
	if err != nil {
		return nil, err
	}
	return boundSession{b}, nil
}

func (h hubVaults) Resume(ctx context.Context, body, sig, nonce string, sub hub.Subscriber) (hub.Session, error) {
	b, err := h.m.Resume(ctx, body, sig, nonce, sub)
	if err != nil {
		return nil, err
	}
	return boundSession{b}, nil
}

func (h hubVaults) Revoke(ctx context.Context, r hub.SignIn) (int, error) {
	return h.m.Revoke(ctx, vault.SignInRequest{Message: r.Message, Signature: r.Signature, Nonce: r.Nonce})
}

func (h hubVaults) SignalReceived(name string, value float64, received time.Time, origin protocol.SignalOrigin) int {
	if h.moves != nil {
		h.moves.observe(name, value, received)
	}
	return h.m.SignalReceived(name, value, received, origin)
}

// boundSession is a socket's binding to a vault's session (hub.Session).
type boundSession struct{ b actor.Bound }

func (s boundSession) Vault() common.Address { return s.b.Vault.Address() }

func (s boundSession) ID() string { return s.b.Session }

func (s boundSession) Command(ctx context.Context, body, sig string, reply func(protocol.Ack, error)) error {
	return s.b.Vault.CommandAsync(ctx, s.b.Session, body, sig, reply)
}

func (s boundSession) Detach(sub hub.Subscriber) { s.b.Vault.Detach(sub) }

// clusterVaults gives a cluster's handoff the node's vaults
// (cluster.Vaults).
type clusterVaults struct{ *vault.Manager }

var _ cluster.Vaults = clusterVaults{}

func (c clusterVaults) MoveOut(ctx context.Context, addr common.Address, to string) (*cluster.Outgoing, error) {
	o, err := c.Manager.MoveOut(ctx, addr, to)
	if err != nil {
		return nil, err
	}
	return &cluster.Outgoing{Vault: o.Vault, Epoch: o.Epoch, To: o.To, Data: o.Data, Sum: o.Sum}, nil
}

func (c clusterVaults) PendingMoves() []cluster.Move { return moves(c.Manager.PendingMoves()) }

func (c clusterVaults) Incoming() []cluster.Move { return moves(c.Manager.Incoming()) }

func moves(ms []vault.Move) []cluster.Move {
	out := make([]cluster.Move, len(ms))
	for i, m := range ms {
		out[i] = cluster.Move{Vault: m.Vault, To: m.To, Epoch: m.Epoch}
	}
	return out
}
