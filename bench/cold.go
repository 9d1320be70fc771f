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
	base, err := n.usage(ctx)
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
		r.note("the node did not hibernate every vault within %s (is --idle-after short? other clients connected?)", p.Wait)
	}
	hib, _ := n.usage(ctx)
	var lat []time.Duration
	for _, u := range users {
		d, err := wake(ctx, n, u)
		if err != nil {
			return nil, err
		}
		lat = append(lat, d)
	}
	active, _ := n.usage(ctx)
	r.latencies("activation", lat)
	r.set("vaults_open_hibernated", hib.all["spells_vaults_open"])
	r.set("vaults_open_after_wake", active.all["spells_vaults_open"])
	r.set("node_bytes_per_hibernated_vault", (hib.rss-base.rss)/float64(p.Vaults))
	r.set("node_bytes_per_active_vault", (active.rss-hib.rss)/float64(p.Vaults))
	r.note("memory per vault is the change in the node's resident memory divided by the vault count; it includes Go heap growth not yet returned")
	return r, nil
}

// wake resumes u's session on a new connection (opening the hibernated
// vault), sends one command, and returns the resume→ready time.
func wake(ctx context.Context, n *node, u *user) (time.Duration, error) {
	c, err := client.Dial(ctx, n.wsURL(), nil)
	if err != nil {
		return 0, err
	}
	defer c.Close()
	t0 := time.Now()
	if err := c.Resume(ctx, u.s, 0); err != nil {
		return 0, fmt.Errorf("resume: %w", err)
	}
	d := time.Since(t0)
	if _, err := c.Command(ctx, u.s, protocol.OpTriggerList, struct{}{}); err != nil {
		return 0, err
	}
	return d, nil
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
