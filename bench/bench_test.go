package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/spells-dev/spells/cluster/redistest"
)

// startNode builds the server and runs it as a separate process on a free
// loopback port, as the bench expects a node it drives from outside.
func startNode(t *testing.T, extra ...string) *node {
	n, _ := startNodeProc(t, extra...)
	return n
}

// startNodeProc is startNode that also returns the process, for tests that
// stop and restart the node.
func startNodeProc(t *testing.T, extra ...string) (*node, *exec.Cmd) {
	t.Helper()
	return startBin(t, buildServer(t), extra...)
}

// buildServer builds the daemon for the test.
func buildServer(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "spells")
	build := exec.Command("go", "build", "-o", bin, "../server")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build server: %v\n%s", err, out)
	}
	return bin
}

// startBin runs the daemon bin with the bench's settings and extra flags
// (a later -listen wins over the free port).
func startBin(t *testing.T, bin string, extra ...string) (*node, *exec.Cmd) {
	t.Helper()
	args := append([]string{"-listen", "127.0.0.1:0", "-data", t.TempDir(), "-signal-token", "T", "-demo=false", "-chain-rpc", "none",
		"-log-format", "json", "-command-rate", "100000", "-command-burst", "100000",
		// The load comes from one address: no per-address limits.
		"-max-pending-per-ip", "0", "-signin-rate-per-ip", "0", "-new-vaults-per-ip", "0", "-new-vaults-per-minute", "0"}, extra...)
	cmd := exec.Command(bin, args...)
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Signal(os.Interrupt)
		_ = cmd.Wait()
	})
	ready := regexp.MustCompile(`open the dashboard at http://localhost:(\d+)/`)
	debug := regexp.MustCompile(`pprof profiles served on (http://[0-9.:]+)/`)
	port := make(chan string, 1)
	debugURL := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			if m := debug.FindStringSubmatch(sc.Text()); m != nil {
				debugURL <- m[1]
			}
			if m := ready.FindStringSubmatch(sc.Text()); m != nil {
				port <- m[1]
			}
		}
	}()
	select {
	case p := <-port:
		n := newNode("http://127.0.0.1:"+p, "T")
		select {
		case n.debug = <-debugURL: // logged before ready, when asked for
		default:
		}
		return n, cmd
	case <-time.After(60 * time.Second):
		t.Fatal("node did not start")
	}
	return nil, nil
}

func checkReport(t *testing.T, r *Report, keys ...string) {
	t.Helper()
	for _, k := range keys {
		v, ok := r.Results[k]
		if !ok {
			t.Errorf("%s report lacks %s: %v", r.Scenario, k, r.Results)
			continue
		}
		if v < 0 {
			t.Errorf("%s: %s = %g, want >= 0", r.Scenario, k, v)
		}
	}
	var sink discard
	r.print(&sink)
	if sink.n == 0 {
		t.Error("report printed nothing")
	}
}

type discard struct{ n int }

func (d *discard) Write(p []byte) (int, error) { d.n += len(p); return len(p), nil }

// TestScenariosSmoke runs every scenario small and fast so the bench code
// cannot rot. It checks the reports' shape and sanity, not speed.
func TestScenariosSmoke(t *testing.T) {
	n := startNode(t, "-idle-after", "1s", "-debug-listen", "127.0.0.1:0")
	if n.debug == "" {
		t.Fatal("the node did not log its pprof address")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	r, err := fanout(ctx, n, fanoutParams{Vaults: 12, Connected: 4, Ticks: 3, Gap: 10 * time.Millisecond, Settle: 30 * time.Second})
	if err != nil {
		t.Fatalf("fanout: %v", err)
	}
	checkReport(t, r, "price_p50_ms", "price_p99_ms", "firing_diff_p99_ms", "firing_all_intents_written_ms", "node_rss_mib", "settled_rss_mib")
	if r.Results["firing_diff_samples"] != 4 {
		t.Errorf("firing reached %g of 4 dashboards", r.Results["firing_diff_samples"])
	}
	if r.Results["settled_files_open"] != 0 || r.Results["settled_dashboards"] < 4 {
		t.Errorf("settled with %g files open and %g dashboards (want 0 and 4): %v", r.Results["settled_files_open"], r.Results["settled_dashboards"], r.Notes)
	}

	for _, single := range []bool{false, true} {
		r, err = commands(ctx, n, commandsParams{Clients: 3, Single: single, Duration: 300 * time.Millisecond, Window: 4})
		if err != nil {
			t.Fatalf("commands: %v", err)
		}
		checkReport(t, r, "acked_per_s", "ack_p99_ms", "node_cpu_ms_per_command", "floor_cpu_ms", "cpu_per_command_over_floor")
		if r.Results["acked_commands"] == 0 || r.Results["vaults_mismatched"] != 0 {
			t.Errorf("commands (single=%v): %v %v", single, r.Results, r.Notes)
		}
	}

	r, err = storm(ctx, n, stormParams{SignIns: 20, Parallel: 4})
	if err != nil {
		t.Fatalf("storm: %v", err)
	}
	if r.Results["vaults_created"] != 20 || r.Results["resumed"] != 20 || r.Results["signins_per_s"] <= 0 {
		t.Errorf("storm: %v", r.Results)
	}
	r, err = connections(ctx, n, connectionsParams{Conns: 20, PerVault: 5, Hold: 10 * time.Millisecond})
	if err != nil {
		t.Fatalf("connections: %v", err)
	}
	checkReport(t, r, "connected", "node_rss_mib")
	if r.Results["connected"] != 20 || r.Results["node_ws_connections"] < 20 {
		t.Errorf("connections: %v", r.Results)
	}

	r, err = cold(ctx, n, coldParams{Vaults: 5, Wait: 30 * time.Second})
	if err != nil {
		t.Fatalf("cold: %v", err)
	}
	checkReport(t, r, "activation_p50_ms", "activation_p99_ms")
	if _, ok := r.Results["node_heap_bytes_per_hibernated_vault"]; !ok {
		t.Errorf("cold: no memory per hibernated vault: %v", r.Results)
	}
	if r.Results["vaults_open_hibernated"] != 0 || r.Results["activation_samples"] != 5 || r.Results["vaults_open_after_wake"] != 5 {
		t.Errorf("cold: %v %v", r.Results, r.Notes)
	}
}

// TestBaselineSmoke compares both designs on a few users. It needs
// PostgreSQL (SPELLS_BASELINE_DSN, default the local server); without it
// the test skips, unless SPELLS_REQUIRE_POSTGRES=1 (set by .ci/run).
func TestBaselineSmoke(t *testing.T) {
	dsn := os.Getenv("SPELLS_BASELINE_DSN")
	if dsn == "" {
		dsn = "postgres://postgres@127.0.0.1:5432/test"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	if err := pingPostgres(ctx, dsn); err != nil {
		if os.Getenv("SPELLS_REQUIRE_POSTGRES") == "1" {
			t.Fatalf("PostgreSQL required but unreachable: %v", err)
		}
		t.Skipf("PostgreSQL unreachable (%v); set SPELLS_BASELINE_DSN", err)
	}
	n := startNode(t, "-debug-listen", "127.0.0.1:0") // its ticks are timed from /debug/metrics
	if n.debug == "" {
		t.Fatal("the node did not log its debug listener")
	}
	r, err := baseline(ctx, n, baselineParams{Users: 150, DSN: dsn, Interval: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	checkReport(t, r, "crossing_baseline_sweep_ms", "crossing_spells_ms", "crossing_speedup_vs_scheduled", "quiet_baseline_db_rows_read",
		"few_spells_ms", "few_speedup_vs_sweep", "crossing_spells_p50_ms", "crossing_spells_p99_ms", "crossing_scheduled_p99_ms",
		"crossing_speedup_p50_vs_scheduled", "crossing_spells_node_wall_ms", "crossing_spells_node_cpu_ms")
	if p50, p99, all := r.Results["crossing_spells_p50_ms"], r.Results["crossing_spells_p99_ms"], r.Results["crossing_spells_ms"]; p50 > p99 || p99 > all {
		t.Errorf("crossing reaction p50 %g, p99 %g, all %g ms: not in order", p50, p99, all)
	}
	// 150 users: thresholds 1000 for users 0 and 100, 990 for the others.
	for k, want := range map[string]float64{"quiet_spells_vaults_woken": 0, "quiet_spells_transactions": 0, "quiet_baseline_fired": 0,
		"few_baseline_fired": 2, "few_spells_intents": 2, "few_spells_vaults_woken": 2,
		"crossing_baseline_fired": 148, "crossing_spells_intents": 148} {
		if r.Results[k] != want {
			t.Errorf("%s = %g, want %g", k, r.Results[k], want)
		}
	}
}

// TestCommandsSurviveRestart runs commands with -save, stops the node
// (SIGINT, as an operator would), starts it again on the same data and
// checks with verify that every acknowledged command is there.
func TestCommandsSurviveRestart(t *testing.T) {
	data := t.TempDir()
	saved := filepath.Join(t.TempDir(), "acked.json")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	n, cmd := startNodeProc(t, "-data", data)
	r, err := commands(ctx, n, commandsParams{Clients: 6, Duration: 500 * time.Millisecond, Window: 8, Save: saved})
	if err != nil {
		t.Fatalf("commands: %v", err)
	}
	if r.Results["acked_commands"] == 0 || r.Results["vaults_mismatched"] != 0 {
		t.Fatalf("commands: %v %v", r.Results, r.Notes)
	}
	if err := cmd.Process.Signal(os.Interrupt); err != nil {
		t.Fatal(err)
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("node exit: %v", err)
	}
	n2 := startNode(t, "-data", data)
	v, err := verify(ctx, n2, verifyParams{From: saved})
	if err != nil {
		t.Fatalf("verify: %v", err)
	}
	checkReport(t, v, "vaults_checked", "acked_commands_checked")
	if v.Results["vaults_checked"] != 6 || v.Results["vaults_mismatched"] != 0 || v.Results["acked_commands_checked"] != r.Results["acked_commands"] {
		t.Fatalf("verify after restart: %v %v (commands acked %v)", v.Results, v.Notes, r.Results["acked_commands"])
	}
	// And verify does notice a vault that lacks a command.
	b, _ := os.ReadFile(saved)
	var sv savedVaults
	if err := json.Unmarshal(b, &sv); err != nil {
		t.Fatal(err)
	}
	sv.Vaults[0].Version++
	if err := sv.write(saved); err != nil {
		t.Fatal(err)
	}
	if v, err = verify(ctx, n2, verifyParams{From: saved}); err != nil || v.Results["vaults_mismatched"] != 1 {
		t.Fatalf("verify with one vault short: %v %v", v, err)
	}
}

// TestExecuteSmoke runs the execute scenario small against a node on its
// dev chain: every swap is confirmed, and the report has its figures.
func TestExecuteSmoke(t *testing.T) {
	n := startNode(t, "-chain-rpc", "dev", "-dev-chain-rpc", "127.0.0.1:0", "-chain-poll", "200ms", "-debug-listen", "127.0.0.1:0")
	if n.debug == "" {
		t.Fatal("the node did not log its debug listener")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r, err := execute(ctx, n, executeParams{Vaults: 3, Amount: "10", Timeout: time.Minute, Profile: 2 * time.Second})
	if err != nil {
		t.Fatalf("execute: %v", err)
	}
	checkReport(t, r, "confirmed_per_s", "signal_to_confirmed_p50_ms", "node_cpu_ms_per_intent", "floor_cpu_ms", "cpu_per_intent_over_floor",
		"chain_share_of_node_cpu", "node_cpu_ms_per_intent_without_chain", "cpu_without_chain_over_floor")
	// Three swaps give a short profile few samples: all of them may be
	// the chain's, none of them may be missing.
	if sh := r.Results["chain_share_of_node_cpu"]; sh <= 0 || sh > 1 {
		t.Errorf("the dev chain's share of the node's CPU: %g, want above 0 and at most 1 (it mines and simulates every swap)", sh)
	}
	if r.Results["confirmed"] != 3 {
		t.Errorf("%g of 3 swaps confirmed: %v", r.Results["confirmed"], r.Results)
	}
}

// TestEventsSmoke runs the events scenario, small, on the dev chain: every
// vault fires once a round for the signal and once for the transfer's log.
func TestEventsSmoke(t *testing.T) {
	n := startNode(t, "-chain-rpc", "dev", "-dev-chain-rpc", "127.0.0.1:0", "-chain-poll", "200ms", "-confirmations", "1", "-alerts-allow-private")
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	r, err := events(ctx, n, eventsParams{Vaults: 4, Rounds: 2, Timeout: time.Minute})
	if err != nil {
		t.Fatalf("events: %v", err)
	}
	checkReport(t, r, "signal_to_fired_p50_ms", "mined_to_fired_p50_ms", "node_cpu_ms_per_signal_firing", "node_cpu_ms_per_event_firing", "event_cpu_over_signal_cpu")
	if n := r.Results["mined_to_fired_samples"]; n != 8 {
		t.Errorf("%g event firings, want 8 (4 vaults, 2 rounds): %v", n, r.Results)
	}
}

// TestClusterScenario runs the cluster scenario, small, on three nodes
// sharing a real redis-server and one single node.
func TestClusterScenario(t *testing.T) {
	r := redistest.Start(t)
	bin := buildServer(t)
	dir := t.TempDir()
	secret, kek := filepath.Join(dir, "secret"), filepath.Join(dir, "kek")
	os.WriteFile(secret, []byte("a cluster secret of at least 32 characters"), 0o600)
	os.WriteFile(kek, []byte("6b656b2d666f722d636c75737465722d74657374732d6f6e6c792d3332627974"), 0o600)
	var ports, domains []string
	for i := 0; i < 3; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		_, port, _ := net.SplitHostPort(l.Addr().String())
		l.Close()
		ports, domains = append(ports, port), append(domains, "localhost:"+port, "127.0.0.1:"+port)
	}
	var urls []string
	for i, port := range ports {
		n, _ := startBin(t, bin, "-listen", "127.0.0.1:"+port, "-siwe-domains", strings.Join(domains, ","), "-node", fmt.Sprintf("bench-%d", i),
			"-redis", r.URL(), "-cluster-secret-file", secret, "-master-key-file", kek, "-cluster-lease", "1s")
		urls = append(urls, n.base)
	}
	single, _ := startBin(t, bin)
	ctx := context.Background()
	deadline := time.Now().Add(20 * time.Second)
	for _, u := range urls {
		for {
			if _, members, err := newNode(u, "T").clusterID(ctx); err == nil && members == 3 {
				break
			}
			if time.Now().After(deadline) {
				t.Fatal("the cluster did not form")
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	var rep *Report
	var err error
	for tries := 0; ; tries++ {
		// New vaults wait while the directory settles (one lease).
		rep, err = clusterBench(ctx, "T", clusterParams{Nodes: urls, Single: single.base, Clients: 4, Rounds: 2, Round: 300 * time.Millisecond,
			Dashboards: 10, Ticks: 5, Gap: 50 * time.Millisecond})
		if err == nil || tries == 20 || !strings.Contains(err.Error(), "unavailable") {
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	if err != nil {
		t.Fatal(err)
	}
	checkReport(t, rep, "direct_ack_p50_ms", "forwarded_ack_p50_ms", "forwarded_vs_direct_p50", "forwarded_vs_direct_cpu",
		"cluster_signal_p99_ms", "single_signal_p99_ms", "cluster_vs_single_signal_p99")
	if rep.Results["direct_refused"]+rep.Results["forwarded_refused"] != 0 {
		t.Fatalf("refused commands: %v", rep.Results)
	}
	if got, want := rep.Results["cluster_signal_frames"], rep.Results["cluster_signal_expected"]; got != want {
		t.Fatalf("signal frames: %v of %v", got, want)
	}
}

// TestPeerAgainstCentrifugo runs the peer scenario small against a node
// and a Centrifugo built from its Go module (SPELLS_CENTRIFUGO, set by
// .ci/run); without it the test skips, unless SPELLS_REQUIRE_CENTRIFUGO=1.
func TestPeerAgainstCentrifugo(t *testing.T) {
	bin := os.Getenv("SPELLS_CENTRIFUGO")
	if bin == "" {
		if os.Getenv("SPELLS_REQUIRE_CENTRIFUGO") == "1" {
			t.Fatal("SPELLS_CENTRIFUGO is not set and SPELLS_REQUIRE_CENTRIFUGO=1")
		}
		t.Skip("SPELLS_CENTRIFUGO not set (a centrifugo v6 binary; .ci/run builds one)")
	}
	n := startNode(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	r, err := peer(ctx, n, peerParams{Centrifugo: bin, Dashboards: 6, Rate: 20, Window: 500 * time.Millisecond, Rounds: 2, Settle: 0})
	if err != nil {
		t.Fatal(err)
	}
	// Six dashboards move neither memory nor CPU measurably: the shape
	// and the deliveries are what is checked here.
	checkReport(t, r, "spells_r1_p99_ms", "centrifugo_r1_p99_ms", "spells_r2_p50_ms", "centrifugo_r2_p50_ms", "ratio_p99_r1", "ratio_p99_r2")
	for _, k := range []string{"spells_r1_delivered_fraction", "spells_r2_delivered_fraction", "centrifugo_r1_delivered_fraction", "centrifugo_r2_delivered_fraction"} {
		if r.Results[k] != 1 {
			t.Errorf("%s = %g, want every tick on every dashboard: %v", k, r.Results[k], r.Notes)
		}
	}
}
