package main

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/spells-dev/spells/internal/rendezvous"
	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/protocol/client"
)

type clusterParams struct {
	Nodes      []string // the cluster's three nodes' base URLs
	Single     string   // a single node (no -redis), for the signal figure
	Clients    int      // command clients, each on its own vault, all on the third node
	Rounds     int      // direct, forwarded, direct, forwarded, …
	Round      time.Duration
	Dashboards int // per node, for the signal test
	Ticks      int
	Gap        time.Duration
}

// clusterBench: three nodes sharing a Redis.
//
//   - Commands: Clients vaults live on the third node; each has two
//     sessions, one on that node (direct) and one through the first node
//     (forwarded over the node link). The two kinds take turns, Rounds
//     times each, for Round each: ack latency and the three nodes' CPU per
//     acknowledged command, as a ratio forwarded / direct.
//   - Signals: Dashboards dashboards per node, each on its vault's own
//     node; Ticks values published on the second node; the time from
//     publishing to each dashboard's signal frame. The same dashboards
//     (three times Dashboards) on a single node, the values published on
//     it, give the single-node figure; p99 as a ratio cluster / single.
func clusterBench(ctx context.Context, token string, p clusterParams) (*Report, error) {
	if len(p.Nodes) != 3 {
		return nil, fmt.Errorf("cluster: -nodes names %d nodes, want 3", len(p.Nodes))
	}
	r := newReport("cluster", map[string]any{"clients": p.Clients, "rounds": p.Rounds, "round": p.Round.String(),
		"dashboards_per_node": p.Dashboards, "ticks": p.Ticks, "gap": p.Gap.String()})
	nodes := make([]*node, 3)
	members := make([]string, 3) // the nodes' ids
	for i, base := range p.Nodes {
		nodes[i] = newNode(base, token)
		id, n, err := nodes[i].clusterID(ctx)
		if err != nil {
			return nil, err
		}
		if n != 3 {
			return nil, fmt.Errorf("cluster: %s sees %d members, want 3", base, n)
		}
		members[i] = id
	}
	placed := func(i int) (*client.Wallet, error) {
		for {
			w, err := client.NewWallet()
			if err != nil {
				return nil, err
			}
			if rendezvous.Pick(strings.ToLower(w.Address().Hex()), members) == i {
				return w, nil
			}
		}
	}
	if err := clusterCommands(ctx, r, nodes, placed, p); err != nil {
		return nil, err
	}
	if err := clusterSignals(ctx, r, nodes, placed, p); err != nil {
		return nil, err
	}
	return r, nil
}

// clusterID reads a node's id and the members it sees from /readyz.
func (n *node) clusterID(ctx context.Context) (string, int, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, n.base+"/readyz", nil)
	resp, err := n.http.Do(req)
	if err != nil {
		return "", 0, err
	}
	defer resp.Body.Close()
	var body struct {
		Node    string `json:"node"`
		Members int    `json:"cluster_members"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil || body.Node == "" {
		return "", 0, fmt.Errorf("%s/readyz: not a cluster node (%v)", n.base, err)
	}
	return body.Node, body.Members, nil
}

// cpu is the three nodes' CPU seconds so far.
// nodesCPU is the CPU time the nodes have used, in seconds.
func nodesCPU(ctx context.Context, nodes []*node) (float64, error) {
	total := 0.0
	for _, n := range nodes {
		u, err := n.usage(ctx)
		if err != nil {
			return 0, err
		}
		total += u.cpu
	}
	return total, nil
}

func clusterCommands(ctx context.Context, r *Report, nodes []*node, placed func(int) (*client.Wallet, error), p clusterParams) error {
	direct := make([]*user, p.Clients)
	forwarded := make([]*user, p.Clients)
	triggers := make([]string, p.Clients)
	defer closeAll(direct)
	defer closeAll(forwarded)
	if err := forEach(ctx, p.Clients, 16, func(ctx context.Context, i int) error {
		w, err := placed(2)
		if err != nil {
			return err
		}
		if direct[i], err = signIn(ctx, nodes[2], w); err != nil {
			return err
		}
		ack, err := direct[i].c.Command(ctx, direct[i].s, protocol.OpTriggerCreate, below("BENCH/CL", 1))
		if err != nil {
			return err
		}
		var res struct{ ID string }
		if err := json.Unmarshal(ack.Result, &res); err != nil {
			return err
		}
		triggers[i] = res.ID
		forwarded[i], err = signIn(ctx, nodes[0], w)
		return err
	}); err != nil {
		return err
	}
	type tally struct {
		lat          []time.Duration
		acked, bad   int64
		cpu, seconds float64
	}
	var t [2]tally
	for round := 0; round < 2*p.Rounds; round++ {
		kind := round % 2 // 0 direct, 1 forwarded: taking turns
		users := direct
		if kind == 1 {
			users = forwarded
		}
		c0, err := nodesCPU(ctx, nodes)
		if err != nil {
			return err
		}
		began := time.Now()
		deadline := began.Add(p.Round)
		var mu sync.Mutex
		var wg sync.WaitGroup
		for i, u := range users {
			wg.Add(1)
			go func() {
				defer wg.Done()
				lat, ok, bad := pipeline(ctx, u, triggers[i], 1, deadline)
				mu.Lock()
				t[kind].lat = append(t[kind].lat, lat...)
				t[kind].acked += ok
				t[kind].bad += bad
				mu.Unlock()
			}()
		}
		wg.Wait()
		c1, err := nodesCPU(ctx, nodes)
		if err != nil {
			return err
		}
		t[kind].cpu += c1 - c0
		t[kind].seconds += time.Since(began).Seconds()
	}
	for kind, name := range []string{"direct", "forwarded"} {
		r.latencies(name+"_ack", t[kind].lat)
		r.set(name+"_acked_per_s", float64(t[kind].acked)/t[kind].seconds)
		r.set(name+"_refused", float64(t[kind].bad))
		if t[kind].acked > 0 {
			r.set(name+"_cpu_ms_per_command", 1000*t[kind].cpu/float64(t[kind].acked))
		}
	}
	if d := r.Results["direct_ack_p50_ms"]; d > 0 {
		r.set("forwarded_vs_direct_p50", r.Results["forwarded_ack_p50_ms"]/d)
		r.set("forwarded_vs_direct_p99", r.Results["forwarded_ack_p99_ms"]/r.Results["direct_ack_p99_ms"])
	}
	if d := r.Results["direct_cpu_ms_per_command"]; d > 0 {
		r.set("forwarded_vs_direct_cpu", r.Results["forwarded_cpu_ms_per_command"]/d)
	}
	return nil
}

// sigReader times the bench signal's frames on one dashboard.
type sigReader struct {
	mu  sync.Mutex
	lat []time.Duration
	got int
}

func (sr *sigReader) read(ctx context.Context, u *user, name string) {
	for {
		f, err := u.c.Next(ctx)
		if err != nil {
			return
		}
		if f.Type == protocol.TypeSignal && f.Name == name && f.At > 0 {
			d := time.Since(time.UnixMilli(f.At))
			sr.mu.Lock()
			sr.lat = append(sr.lat, d)
			sr.got++
			sr.mu.Unlock()
		}
	}
}

// fanoutTimes connects dashboards (each at its vault's own node, entry[i]
// for dashboard i), publishes ticks on pub and returns the latencies and
// how many frames arrived.
func fanoutTimes(ctx context.Context, entries []*node, wallets []*client.Wallet, pub *node, name string, p clusterParams) ([]time.Duration, int, error) {
	users := make([]*user, len(wallets))
	defer closeAll(users)
	if err := forEach(ctx, len(wallets), 32, func(ctx context.Context, i int) error {
		var err error
		users[i], err = signIn(ctx, entries[i], wallets[i])
		return err
	}); err != nil {
		return nil, 0, err
	}
	rctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sr := &sigReader{}
	var wg sync.WaitGroup
	for _, u := range users {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sr.read(rctx, u, name)
		}()
	}
	for k := 0; k < p.Ticks; k++ {
		if err := pub.publish(ctx, tick{Name: name, Value: float64(1000 + k), At: time.Now().UnixMilli()}); err != nil {
			return nil, 0, err
		}
		time.Sleep(p.Gap)
	}
	time.Sleep(time.Second) // the last tick's frames
	cancel()
	closeAll(users)
	wg.Wait()
	return sr.lat, sr.got, nil
}

func clusterSignals(ctx context.Context, r *Report, nodes []*node, placed func(int) (*client.Wallet, error), p clusterParams) error {
	var wallets []*client.Wallet
	var entries []*node
	for i := range nodes {
		for k := 0; k < p.Dashboards; k++ {
			w, err := placed(i)
			if err != nil {
				return err
			}
			wallets, entries = append(wallets, w), append(entries, nodes[i])
		}
	}
	lat, got, err := fanoutTimes(ctx, entries, wallets, nodes[1], "BENCH/CLSIG", p)
	if err != nil {
		return err
	}
	r.latencies("cluster_signal", lat)
	r.set("cluster_signal_frames", float64(got))
	r.set("cluster_signal_expected", float64(len(wallets)*p.Ticks))
	if p.Single == "" {
		r.note("no -single node: the single-node signal figure was not measured")
		return nil
	}
	single := newNode(p.Single, nodes[0].token)
	all := make([]*node, len(wallets))
	for i := range all {
		all[i] = single
	}
	lat, got, err = fanoutTimes(ctx, all, wallets, single, "BENCH/SGSIG", p)
	if err != nil {
		return err
	}
	r.latencies("single_signal", lat)
	r.set("single_signal_frames", float64(got))
	if s := r.Results["single_signal_p99_ms"]; s > 0 {
		r.set("cluster_vs_single_signal_p99", r.Results["cluster_signal_p99_ms"]/s)
	}
	return nil
}
