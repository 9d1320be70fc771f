package main

import (
	"context"
	"fmt"
	"os/exec"
	"sort"
	"sync/atomic"
	"time"

	"github.com/spells-dev/spells/protocol/client"
)

type stormParams struct {
	SignIns  int    // first sign-ins, each creating its vault
	Parallel int    // sign-ins in flight at once
	Restart  string // a shell command that stops the node and starts it again ("": the sockets are dropped instead)
}

// storm measures the two storms a node meets: first sign-ins arriving as
// fast as clients can send them (each creates its vault), and every one
// of those dashboards resuming its session at once, after the node
// restarted (Restart, a command the bench runs: it returns once the node
// was started again) or after every socket was dropped.
func storm(ctx context.Context, n *node, p stormParams) (*Report, error) {
	if p.Parallel <= 0 {
		p.Parallel = 64
	}
	r := newReport("storm", map[string]any{"signins": p.SignIns, "parallel": p.Parallel})
	wallets := make([]*client.Wallet, p.SignIns)
	for i := range wallets {
		w, err := client.NewWallet()
		if err != nil {
			return nil, err
		}
		wallets[i] = w
	}
	users := make([]*user, p.SignIns)
	defer func() { closeAll(users) }()
	lat := make([]time.Duration, p.SignIns)
	before, err := n.usage(ctx)
	if err != nil {
		return nil, err
	}
	began := time.Now()
	err = forEach(ctx, p.SignIns, p.Parallel, func(ctx context.Context, i int) error {
		t0 := time.Now()
		u, err := signIn(ctx, n, wallets[i])
		if err != nil {
			return fmt.Errorf("sign-in %d: %w", i, err)
		}
		lat[i] = time.Since(t0)
		users[i] = u
		return nil
	})
	if err != nil {
		return nil, err
	}
	took := time.Since(began)
	after, _ := n.usage(ctx)
	r.set("signins_per_s", float64(p.SignIns)/took.Seconds())
	r.set("signin_p50_ms", ms(quantile(lat, 0.5)))
	r.set("signin_p99_ms", ms(quantile(lat, 0.99)))
	r.set("signin_node_cpu_ms_each", (after.cpu-before.cpu)*1000/float64(p.SignIns))
	r.set("vaults_created", after.all["spells_vaults_created_total"]-before.all["spells_vaults_created_total"])

	// The node restarted (or every socket dropped at once), then every
	// dashboard resumes from the version it had.
	if p.Restart != "" {
		stopped := time.Now()
		out, err := exec.CommandContext(ctx, "sh", "-c", p.Restart).CombinedOutput()
		if err != nil {
			return nil, fmt.Errorf("restart: %v: %s", err, out)
		}
		if err := n.waitReady(ctx, 5*time.Minute); err != nil {
			return nil, err
		}
		r.set("restart_ms", ms(time.Since(stopped)))
	}
	for _, u := range users {
		u.c.CloseNow()
		u.c = nil
	}
	before, _ = n.usage(ctx)
	if p.Restart != "" {
		before.cpu = 0 // a new process
	}
	var live atomic.Int64
	began = time.Now()
	err = forEach(ctx, p.SignIns, p.SignIns, func(ctx context.Context, i int) error {
		u := users[i]
		t0 := time.Now()
		c, err := client.Dial(ctx, n.wsURL(), nil)
		if err != nil {
			return fmt.Errorf("resume %d: %w", i, err)
		}
		u.c = c
		if err := c.Resume(ctx, u.s, u.state.Version); err != nil {
			return fmt.Errorf("resume %d: %w", i, err)
		}
		lat[i] = time.Since(t0)
		live.Add(1)
		return nil
	})
	took = time.Since(began)
	after, _ = n.usage(ctx)
	r.set("resumed", float64(live.Load()))
	r.set("resume_all_ms", ms(took))
	r.set("resume_p50_ms", ms(quantile(lat, 0.5)))
	r.set("resume_p99_ms", ms(quantile(lat, 0.99)))
	r.set("resume_node_cpu_ms_each", (after.cpu-before.cpu)*1000/float64(p.SignIns))
	if err != nil {
		r.note("the resume storm stopped: %v", err)
	}
	if p.Restart != "" {
		r.note("signins_per_s: first sign-ins, each creating its vault, %d in flight; restart_ms: the restart command until the node was ready; resume_all_ms: from then until every dashboard resumed (resume CPU includes the node's start)", p.Parallel)
	} else {
		r.note("signins_per_s: first sign-ins, each creating its vault, %d in flight; resume_all_ms: from every socket dropped to every dashboard resumed", p.Parallel)
	}
	return r, nil
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// quantile is the q-quantile of ds (sorted in place).
func quantile(ds []time.Duration, q float64) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	sort.Slice(ds, func(a, b int) bool { return ds[a] < ds[b] })
	return ds[min(len(ds)-1, int(q*float64(len(ds))))]
}
