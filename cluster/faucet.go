package cluster

import (
	"context"
	"encoding/json"

	"github.com/ethereum/go-ethereum/common"
)

// The dev faucet across the cluster: a node without the dev chain asks the
// node that runs it to fund the session keys it makes.

// Fund asks the node that runs the dev chain's faucet for chain to fund a
// session key this node made, and its owner once: on a dev cluster only
// one node runs the chain, and the vaults of the others need gas too. It
// does not wait: the request is sent from a goroutine the links own (it
// may wait for a link); what cannot be sent is logged.
func (l *Links) Fund(chain uint64, owner, key common.Address) {
	if !l.spawn(func(ctx context.Context) { l.fund(ctx, chain, owner, key) }) {
		l.log.Info().Str("owner", owner.Hex()).Msg("node shutting down: a new vault's session key is not funded")
	}
}

func (l *Links) fund(ctx context.Context, chain uint64, owner, key common.Address) {
	for _, m := range l.cfg.Dir.Members() {
		if m.Faucet != chain || m.ID == l.me {
			continue
		}
		ctx, cancel := context.WithTimeout(ctx, linkWait+handshakeTimeout)
		lk, err := l.link(ctx, m.ID)
		cancel()
		if err == nil {
			b, _ := json.Marshal(fundRequest{Chain: chain, Owner: owner.Hex(), Key: key.Hex()})
			err = lk.send(recFund, 0, b)
		}
		if err != nil {
			l.log.Warn().Err(err).Str("faucet", m.ID).Str("owner", owner.Hex()).Msg("could not ask the faucet to fund a new vault")
		}
		return
	}
	l.log.Info().Str("owner", owner.Hex()).Msg("no node of the cluster runs a faucet on this chain: the new vault's session key is not funded")
}

// fund serves a peer's fund request with this node's faucet.
func (lk *link) fund(payload []byte) {
	var r fundRequest
	if lk.l.cfg.Fund == nil || json.Unmarshal(payload, &r) != nil || r.Chain != lk.l.cfg.FundChain ||
		!common.IsHexAddress(r.Owner) || !common.IsHexAddress(r.Key) {
		lk.l.log.Warn().Str("peer", lk.peer).Msg("node link: a fund request this node does not serve")
		return
	}
	lk.l.cfg.Fund(common.HexToAddress(r.Owner), common.HexToAddress(r.Key))
}
