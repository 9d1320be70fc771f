package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"time"
)

func main() {
	if err := run(context.Background(), os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "bench:", err)
		os.Exit(1)
	}
}

const usageText = `usage: go run ./bench SCENARIO [flags]

scenarios: fanout, peer, commands, connections, storm, cold, baseline, execute, events, cluster, backup (see bench/doc.go),
and verify (after commands -save and a node restart)
`

func run(ctx context.Context, args []string) error {
	if len(args) == 0 {
		return fmt.Errorf("no scenario\n%s", usageText)
	}
	ctx, stop := signal.NotifyContext(ctx, os.Interrupt)
	defer stop()
	scenario, args := args[0], args[1:]
	if scenario == "peer-clients" {
		return runPeerClients(ctx, args)
	}
	fs := flag.NewFlagSet(scenario, flag.ContinueOnError)
	base := fs.String("node", "http://127.0.0.1:8080", "the node's base URL")
	debug := fs.String("debug", "", "the node's -debug-listen URL (http://127.0.0.1:6060): lets the bench force a garbage collection before reading memory")
	token := fs.String("token", os.Getenv("SPELLS_SIGNAL_TOKEN"), "the node's signal ingest token")
	out := fs.String("json", "", "also write the JSON report to this file")
	poll := fs.Duration("poll", 5*time.Millisecond, "pause between reads of the node's counters while timing a tick (each read costs the node about 1 ms of CPU from /metrics, 0.27 ms from -debug's /debug/metrics)")
	var fp fanoutParams
	var cp commandsParams
	var np connectionsParams
	var kp coldParams
	var bp baselineParams
	var vp verifyParams
	var ep executeParams
	var vp2 eventsParams
	var lp clusterParams
	var kb backupParams
	var sp stormParams
	var pp peerParams
	var clusterNodes string
	switch scenario {
	case "fanout":
		fs.IntVar(&fp.Vaults, "vaults", 10000, "vaults, each with a trigger on the bench signal")
		fs.IntVar(&fp.Connected, "connected", 2000, "vaults that keep a dashboard connection")
		fs.IntVar(&fp.Ticks, "ticks", 50, "price-only ticks")
		fs.DurationVar(&fp.Gap, "gap", 100*time.Millisecond, "time between ticks")
		fs.DurationVar(&fp.Settle, "settle", 0, "after the firing, wait up to this long for every vault to close its file, then read the node's memory with the dashboards connected (0: skip)")
	case "peer":
		fs.StringVar(&pp.Centrifugo, "centrifugo", "", "the centrifugo (v6) binary the bench starts beside the node (bench/peerpair.sh builds it)")
		fs.StringVar(&pp.CPUs, "cpus", "", "taskset CPU list for centrifugo (give the node the same one; empty: unpinned)")
		fs.IntVar(&pp.Dashboards, "dashboards", 10000, "dashboards on each system (on Spells each signs in to its own vault with a trigger on the signal)")
		fs.Float64Var(&pp.Rate, "rate", 5, "publishes a second")
		fs.DurationVar(&pp.Window, "window", 20*time.Second, "how long each system is published to in a round")
		fs.IntVar(&pp.Rounds, "rounds", 2, "rounds; each publishes to Spells, then to Centrifugo")
		fs.DurationVar(&pp.Settle, "settle", 0, "before the rounds, wait up to this long for every Spells vault file to close (0: start at once)")
	case "commands":
		fs.IntVar(&cp.Clients, "clients", 64, "client connections")
		fs.BoolVar(&cp.Single, "single", false, "all clients on one vault")
		fs.DurationVar(&cp.Duration, "duration", 10*time.Second, "how long to send")
		fs.IntVar(&cp.Window, "window", 1, "commands each client keeps in flight (1: wait for each ack)")
		fs.StringVar(&cp.Save, "save", "", "write the vaults' keys and checked versions to this file (for verify after a restart)")
	case "verify":
		fs.StringVar(&vp.From, "from", "", "the file written by commands -save")
	case "backup":
		fs.IntVar(&kb.Commands.Clients, "clients", 64, "client connections, each on its own vault")
		fs.DurationVar(&kb.Commands.Duration, "duration", 10*time.Second, "how long to send commands")
		fs.StringVar(&kb.Admin, "admin-token", os.Getenv("SPELLS_ADMIN_TOKEN"), "the node's -admin-token (for the restores)")
	case "execute":
		fs.IntVar(&ep.Vaults, "vaults", 50, "vaults, each firing one swap on the dev chain")
		fs.StringVar(&ep.Amount, "amount", "10", "dUSD each swap sells")
		fs.DurationVar(&ep.Timeout, "timeout", 2*time.Minute, "how long to wait for the intents to end")
		fs.DurationVar(&ep.Profile, "profile", 5*time.Second, "with -debug: a CPU profile of the node this long from the crossing splits its CPU between the dev chain and the rest (0: none)")
	case "events":
		fs.IntVar(&vp2.Vaults, "vaults", 200, "vaults, each with a notify trigger on the bench signal and one on a dUSD Transfer event")
		fs.IntVar(&vp2.Rounds, "rounds", 5, "rounds, each crossing the signal, then sending one transfer")
		fs.DurationVar(&vp2.Timeout, "timeout", time.Minute, "how long to wait for every vault's firing")
	case "cluster":
		fs.StringVar(&clusterNodes, "nodes", "http://127.0.0.1:8081,http://127.0.0.1:8082,http://127.0.0.1:8083", "the cluster's three nodes, comma separated")
		fs.StringVar(&lp.Single, "single", "", "a single node (no -redis) for the single-node signal figure; empty: not measured")
		fs.IntVar(&lp.Clients, "clients", 16, "command clients, each on its own vault on the third node")
		fs.IntVar(&lp.Rounds, "rounds", 3, "rounds of each kind (direct, forwarded), taking turns")
		fs.DurationVar(&lp.Round, "round", 3*time.Second, "length of a round")
		fs.IntVar(&lp.Dashboards, "dashboards", 200, "dashboards per node for the signal test")
		fs.IntVar(&lp.Ticks, "ticks", 40, "signal values published")
		fs.DurationVar(&lp.Gap, "gap", 100*time.Millisecond, "time between signal values")
	case "connections":
		fs.IntVar(&np.Conns, "conns", 1000, "signed idle sessions to hold")
		fs.IntVar(&np.PerVault, "per-vault", 50, "sessions per vault")
		fs.DurationVar(&np.Hold, "hold", 2*time.Second, "how long to hold them before reading the node's memory")
	case "storm":
		fs.IntVar(&sp.SignIns, "signins", 1000, "first sign-ins, each creating its vault; then every dashboard resumes at once")
		fs.IntVar(&sp.Parallel, "parallel", 64, "first sign-ins in flight at once")
		fs.StringVar(&sp.Restart, "restart", "", "a shell command that stops the node and starts it again, returning once it is started; the dashboards then resume (empty: their sockets are dropped instead)")
	case "cold":
		fs.IntVar(&kp.Vaults, "vaults", 1000, "vaults to hibernate and wake")
		fs.DurationVar(&kp.Wait, "wait", 2*time.Minute, "how long to wait for hibernation")
	case "baseline":
		fs.IntVar(&bp.Users, "users", 10000, "users, each with the same trigger in both designs")
		fs.StringVar(&bp.DSN, "baseline-dsn", "postgres://postgres@127.0.0.1:5432/test", "PostgreSQL for the old design")
		fs.DurationVar(&bp.Interval, "interval", 60*time.Second, "the old design's sweep interval")
	default:
		return fmt.Errorf("unknown scenario %q\n%s", scenario, usageText)
	}
	if err := fs.Parse(args); err != nil {
		return err
	}
	n := newNode(*base, *token)
	n.debug = strings.TrimRight(*debug, "/")
	n.poll = *poll
	var r *Report
	var err error
	switch scenario {
	case "fanout":
		r, err = fanout(ctx, n, fp)
	case "peer":
		r, err = peer(ctx, n, pp)
	case "commands":
		r, err = commands(ctx, n, cp)
	case "connections":
		r, err = connections(ctx, n, np)
	case "storm":
		r, err = storm(ctx, n, sp)
	case "cold":
		r, err = cold(ctx, n, kp)
	case "baseline":
		r, err = baseline(ctx, n, bp)
	case "verify":
		r, err = verify(ctx, n, vp)
	case "backup":
		kb.Commands.Window = 1
		r, err = backupBench(ctx, n, kb)
	case "execute":
		r, err = execute(ctx, n, ep)
	case "events":
		r, err = events(ctx, n, vp2)
	case "cluster":
		lp.Nodes = strings.Split(clusterNodes, ",")
		r, err = clusterBench(ctx, *token, lp)
	}
	if err != nil {
		return err
	}
	r.print(os.Stdout)
	if *out != "" {
		b, _ := json.MarshalIndent(r, "", "  ")
		return os.WriteFile(*out, b, 0o644)
	}
	return nil
}

// runPeerClients is the peer scenario's child process (not a scenario of
// its own): one system's dashboards, driven over stdin and stdout.
func runPeerClients(ctx context.Context, args []string) error {
	var p peerClientsParams
	fs := flag.NewFlagSet("peer-clients", flag.ContinueOnError)
	fs.StringVar(&p.System, "system", "", "spells or centrifugo")
	fs.StringVar(&p.Base, "node", "", "the server's base URL")
	fs.StringVar(&p.Signal, "signal", "", "spells: the signal the vaults' triggers watch")
	fs.StringVar(&p.Secret, "secret", "", "centrifugo: the HMAC key of its connection tokens")
	fs.IntVar(&p.Dashboards, "dashboards", 0, "dashboards to connect")
	fs.Int64Var(&p.Epoch, "epoch", 0, "unix µs a tick's value counts from")
	if err := fs.Parse(args); err != nil {
		return err
	}
	return peerClients(ctx, p)
}
