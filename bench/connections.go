package main

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/spells-dev/spells/protocol/client"
)

type connectionsParams struct {
	Conns    int
	PerVault int // sessions per wallet (default 50)
	Hold     time.Duration
}

// connections: hold Conns signed-in idle sessions (PerVault sessions per
// vault), and report the node's resident memory per connection.
func connections(ctx context.Context, n *node, p connectionsParams) (*Report, error) {
	if p.PerVault <= 0 {
		p.PerVault = 50
	}
	r := newReport("connections", map[string]any{"conns": p.Conns, "per_vault": p.PerVault, "hold": p.Hold.String()})
	wallets := make([]*client.Wallet, (p.Conns+p.PerVault-1)/p.PerVault)
	for i := range wallets {
		w, err := client.NewWallet()
		if err != nil {
			return nil, err
		}
		wallets[i] = w
	}
	// Create the vaults first, so the measurement is of connections.
	if err := forEach(ctx, len(wallets), 32, func(ctx context.Context, i int) error {
		u, err := signIn(ctx, n, wallets[i])
		if err == nil {
			u.c.Close()
		}
		return err
	}); err != nil {
		return nil, err
	}
	before, err := n.usage(ctx)
	if err != nil {
		return nil, err
	}
	users := make([]*user, p.Conns)
	var held atomic.Int64
	began := time.Now()
	err = forEach(ctx, p.Conns, 64, func(ctx context.Context, i int) error {
		u, err := signIn(ctx, n, wallets[i/p.PerVault])
		if err != nil {
			return err
		}
		users[i] = u
		held.Add(1)
		return nil
	})
	defer closeAll(users)
	r.set("connected", float64(held.Load()))
	r.set("connect_per_s", float64(held.Load())/time.Since(began).Seconds())
	if err != nil {
		r.note("stopped at %d connections: %v", held.Load(), err)
	}
	time.Sleep(p.Hold) // a measurement window, not a wait for an event
	after, err := n.usage(ctx)
	if err != nil {
		return nil, err
	}
	r.addUsage(before, after)
	if h := held.Load(); h > 0 {
		r.set("node_bytes_per_conn", (after.rss-before.rss)/float64(h))
	}
	r.set("node_ws_connections", after.all["spells_ws_connections"])
	return r, nil
}
