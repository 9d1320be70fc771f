package main

import (
	"context"
	"fmt"
	"time"

	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/protocol/client"
)

type coldParams struct {
	Vaults int
	Wait   time.Duration // how long to wait for the node to hibernate them
}

// cold: Vaults vaults are created and left idle until the node hibernates
// them (run the node with a short --idle-after). Then each is woken by its
// first request, a resume of its session followed by a command: the
// resume→ready time includes opening the vault's file. Memory per
// hibernated and per active vault comes from the node's resident memory.
func cold(ctx context.Context, n *node, p coldParams) (*Report, error) {
	r := newReport("cold", map[string]any{"vaults": p.Vaults, "wait": p.Wait.String()})
	base, err := n.collected(ctx)
	if err != nil {
		return nil, err
	}
	users, err := newUsers(ctx, n, p.Vaults, 0, func(ctx context.Context, u *user) error {
		_, err := u.c.Command(ctx, u.s, protocol.OpTriggerCreate, below("BENCH/COLD", 1))
		return err
	})
	if err != nil {
		return nil, err
	}
	// Wait until the node has closed every vault (run it without other
	// clients, with a short --idle-after).
	if waitMetricBelow(ctx, n, "spells_vaults_open", 1, p.Wait).IsZero() {
		m, _ := n.metrics(ctx)
		r.note("the node did not hibernate every vault within %s (is --idle-after short? other clients connected?): %g vaults running, %g of them dozing, %g files open, %g WebSocket connections",
			p.Wait, m["spells_vaults_open"], m["spells_vaults_dozing"], m["spells_vault_files_open"], m["spells_ws_connections"])
	}
	hib, err := n.collected(ctx)
	if err != nil {
		return nil, err
	}
	var lat []time.Duration
	var conns []*client.Conn // held open, so the woken vaults stay open
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for _, u := range users {
		c, d, err := wake(ctx, n, u)
		if err != nil {
			return nil, err
		}
		conns = append(conns, c)
		lat = append(lat, d)
	}
	active, err := n.collected(ctx)
	if err != nil {
		return nil, err
	}
	per := float64(p.Vaults)
	r.latencies("activation", lat)
	r.set("vaults_open_hibernated", hib.all["spells_vaults_open"])
	r.set("vaults_open_after_wake", active.all["spells_vaults_open"])
	// Woken vaults with a connection doze again once idle for the node's
	// --idle-after, and past --max-open-vaults the oldest doze: the
	// per-active-vault figures count however many still hold their file.
	r.set("vault_files_open_after_wake", active.all["spells_vault_files_open"])
	r.set("node_heap_bytes_per_hibernated_vault", (hib.heap-base.heap)/per)
	r.set("node_rss_bytes_per_active_vault", (active.rss-hib.rss)/per)
	r.set("node_heap_bytes_per_active_vault", (active.heap-hib.heap)/per)
	if n.debug == "" {
		r.note("heap figures include garbage: pass -debug with the node's -debug-listen URL to collect first")
	}
	r.note("a hibernated vault costs only Go heap (its index entries, alarm, map slot); an active vault's resident memory includes one signed-in connection held open to keep it running, and its SQLite connection while its file is open (vault_files_open_after_wake of them at the reading)")
	return r, nil
}

// wake resumes u's session on a new connection (opening the hibernated
// vault), sends one command, and returns the open connection and the
// resume→ready time.
func wake(ctx context.Context, n *node, u *user) (*client.Conn, time.Duration, error) {
	c, err := client.Dial(ctx, n.wsURL(), nil)
	if err != nil {
		return nil, 0, err
	}
	t0 := time.Now()
	if err := c.Resume(ctx, u.s, 0); err != nil {
		c.Close()
		return nil, 0, fmt.Errorf("resume: %w", err)
	}
	d := time.Since(t0)
	if _, err := c.Command(ctx, u.s, protocol.OpTriggerList, struct{}{}); err != nil {
		c.Close()
		return nil, 0, err
	}
	return c, d, nil
}

func waitMetricBelow(ctx context.Context, n *node, name string, below float64, limit time.Duration) time.Time {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		if m, err := n.metrics(ctx); err == nil && m[name] < below {
			return time.Now()
		}
		time.Sleep(50 * time.Millisecond)
	}
	return time.Time{}
}
