package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/spells-dev/spells/cluster/redisbus"
	"github.com/spells-dev/spells/hub"
	"github.com/spells-dev/spells/internal/clock"
	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/vault"
	"github.com/spells-dev/spells/vault/actor"
	"github.com/spells-dev/spells/vault/exec"
	"github.com/spells-dev/spells/vault/keys"
	"github.com/spells-dev/spells/vault/notify"
	"github.com/spells-dev/spells/web"
)

// run starts a node, calls started with its listen address once it serves,
// and shuts it down in order when ctx ends.
func run(ctx context.Context, opts Options, started func(addr string)) error {
	procs := setProcs(opts.ProcsPerCPU, os.Getenv("GOMAXPROCS") != "")
	n, err := newNode(ctx, opts, clock.Real{})
	if err != nil {
		return err
	}
	n.log.Info().Int("gomaxprocs", procs).Int("cpus", runtime.NumCPU()).Msg("Go processors")
	if started != nil {
		started(n.ln.Addr().String())
	}
	return n.serve(ctx)
}

func newNode(ctx context.Context, opts Options, clk clock.Clock) (*daemon, error) {
	log := newLogger(opts)
	explicitNode := opts.Node
	if opts.Node == "" {
		opts.Node, _ = os.Hostname()
	}
	if opts.ShutdownTimeout <= 0 {
		opts.ShutdownTimeout = 15 * time.Second
	}
	if opts.DrainTimeout <= 0 {
		opts.DrainTimeout = 5 * time.Minute
	}
	key, err := nodeKey(opts.DataDir)
	if err != nil {
		return nil, err
	}
	if opts.Redis != "" && opts.MasterKey == "" && opts.MasterKeyFile == "" {
		// A vault that moves keeps its keys sealed: the node it moves to
		// must hold the same key-encryption key.
		return nil, errors.New("-redis: the nodes of a cluster share one key-encryption key; give it on every node with -master-key-file or SPELLS_MASTER_KEY")
	}
	kek, err := masterKey(opts, log)
	if err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", opts.Listen)
	if err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	if opts.wrapListener != nil {
		ln = opts.wrapListener(ln)
	}
	if len(opts.SIWEDomains) == 0 {
		opts.SIWEDomains = defaultDomains(ln.Addr())
	}
	var secret []byte
	if opts.Redis != "" {
		if secret, err = clusterSecret(opts); err == nil {
			opts.Node, err = clusterNodeID(opts.DataDir, explicitNode, ln.Addr())
		}
		if err != nil {
			ln.Close()
			return nil, err
		}
		// Every node of the cluster checks every other's nonces and
		// session ids: one key, from the shared secret.
		key = derive(secret, "sign-in nonces")
	}
	n := &daemon{opts: opts, log: log, ln: ln, secret: secret, served: make(chan error, 1)}
	n.http = &http.Server{Handler: http.HandlerFunc(n.serveHTTP), ReadHeaderTimeout: 10 * time.Second}
	go func() { n.served <- n.http.Serve(ln) }() // waited for by serve, or below
	log.Info().Str("listen", ln.Addr().String()).Msg("listening on " + ln.Addr().String() + "; /healthz and /readyz answer while the node starts")
	n.waiting("its parts to start")
	if n.startFull = probeDisk(opts.DataDir); n.startFull != nil {
		err := n.startFull
		n.waiting("room on the data directory's disk")
		log.Error().Err(err).Str("data", opts.DataDir).Msg("the data directory takes no writes (its disk may be full): the node starts and serves what it can; vaults refuse writes with storage_full until there is room")
	}
	if err := n.build(ctx, key, kek, clk); err != nil {
		n.http.Close()
		<-n.served
		return nil, err
	}
	return n, nil
}

func (n *daemon) build(ctx context.Context, key []byte, kek *keys.KEK, clk clock.Clock) error {
	origins := make([]string, 0, len(n.opts.SIWEDomains))
	for _, d := range n.opts.SIWEDomains {
		origins = append(origins, "http://"+d)
	}
	ch, err := startChain(ctx, n.opts, append(origins, n.opts.Origins...), n.waiting, n.log.With().Str("part", "chain").Logger())
	if err != nil {
		return err
	}
	n.chain = ch
	chainID := ch.id(n.opts)
	var chainInfo *protocol.ChainInfo
	var chainClient exec.Chain
	if ch.client != nil {
		chainInfo = &ch.info
		chainClient = ch.client
	}
	var keyMade func(owner, key common.Address)
	if ch.faucet != nil {
		keyMade = ch.faucet.keyMade
	}
	// The node's own metrics, and the process's (CPU, memory,
	// descriptors, Go runtime) apart: /metrics serves both, the debug
	// listener's /debug/metrics only the first, which is far cheaper to
	// read (see startDebug).
	reg, runtimeReg := prometheus.NewRegistry(), prometheus.NewRegistry()
	runtimeReg.MustRegister(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}), collectors.NewGoCollector())
	n.metricsReg = reg
	nonces := protocol.NewNonceIssuer(key)
	history := hub.NewHistory(0)
	loadHistory(history, n.opts.DataDir, n.log)
	var claim func(context.Context, common.Address) error
	if n.opts.Redis != "" {
		n.cluster, err = n.newClusterParts(n.secret, kek.ID(), reg, func() map[string]uint64 { return n.mgr.Held() },
			func(a common.Address) bool { return n.mgr.Holds(a) })
		if err != nil {
			ch.close()
			return err
		}
		claim = n.cluster.claim
		if keyMade == nil && chainInfo != nil {
			// The dev chain's faucet runs on another node: ask it (Fund
			// does not wait, as KeyMade must not).
			links, id := n.cluster.links, chainInfo.ChainID
			keyMade = func(owner, key common.Address) { links.Fund(id, owner, key) }
		}
	}
	gate, err := newCreateGate(n.opts)
	if err != nil {
		ch.close()
		return err
	}
	var backups actor.Backup
	var restore func(context.Context, string, protocol.RestoreArgs, string) (actor.RestorePoint, error)
	if n.opts.Backup != "" {
		if n.backup, err = n.startBackup(ctx, kek, reg); err != nil {
			ch.close()
			return err
		}
		backups, restore = n.backup.shipper, n.backup.restoreCopy
	}
	if n.opts.BackupRestore {
		if err := n.restoreFromBackup(ctx); err != nil {
			ch.close()
			return err
		}
	}
	push, err := notify.LoadVAPID(filepath.Join(n.opts.DataDir, "push.key"), n.pushContact())
	if err != nil {
		ch.close()
		return err
	}
	n.push = push
	mgr, err := vault.NewManager(vault.Config{Dir: n.opts.DataDir, Domains: n.opts.SIWEDomains, ChainID: chainID, Claim: claim, Backup: backups, Restore: restore, AllowCreate: gate.allow,
		Nonces: nonces, KEK: kek, Chain: chainInfo, Client: chainClient, Confirmations: n.opts.Confirmations, Finality: n.opts.Finality, PollEvery: n.opts.ChainPoll, BumpAfter: n.opts.FeeBumpAfter, KeyMade: keyMade, Clock: clk, Logger: n.log.With().Str("part", "vault").Logger(), Metrics: vault.NewMetrics(reg),
		Latest: history.Latest, MaxOpen: n.opts.MaxOpen, IdleAfter: n.opts.IdleAfter, AlertsAllowPrivate: n.opts.AlertsAllowPrivate,
		AlertSMTP: notify.SMTPConfig{Server: n.opts.SMTP, From: n.opts.SMTPFrom}, AlertTelegram: notify.TelegramConfig{Token: n.opts.TelegramToken, API: n.opts.TelegramAPI}, AlertVAPID: push})
	if err != nil {
		ch.close()
		return err
	}
	if err := mgr.Scan(ctx); err != nil {
		mgr.Close(context.Background())
		ch.close()
		return err
	}
	if n.cluster != nil {
		n.standDownStale(ctx, mgr)
	}
	mgr.Run()
	n.hubMetrics = hub.NewMetrics(reg)
	n.mgr = mgr
	if n.backup != nil {
		n.backup.shipper.OnWiped(mgr.RebaseAll)
		if !n.backup.wasShipped(n.opts.DataDir) {
			n.log.Warn().Msg("backup: the node did not stop with every change shipped (a crash, a store that was down, or its first start with -backup): every vault ships its whole file again, one at a time")
			mgr.RebaseAll()
		}
	}
	if n.startFull != nil {
		mgr.DiskFull("start", n.startFull)
	}
	if n.cluster != nil {
		n.cluster.start(ctx, clusterVaults{mgr}, n.log.With().Str("part", "cluster").Logger())
	}
	n.bus = n.startBus(reg)
	n.mover = startMover(n.bus, mgr.Moves, history.Snapshot, reg, n.log.With().Str("part", "moves").Logger())
	hcfg := hub.Config{Vaults: hubVaults{m: mgr, moves: n.mover}, Nonces: nonces, Bus: n.bus, History: history, Domains: n.opts.SIWEDomains,
		ChainID: chainID, Node: n.opts.Node, OriginPatterns: n.opts.Origins, Clock: clk,
		CommandRate: n.opts.CommandRate, CommandBurst: n.opts.CommandBurst, MaxConnections: n.connLimit(),
		MaxPendingPerAddress: orNoLimit(n.opts.MaxPendingPerIP), SignInRate: orNoLimit(n.opts.SignInRatePerIP),
		SignInBurst: orNoLimit(n.opts.SignInBurstPerIP), Logger: n.log.With().Str("part", "hub").Logger(), Metrics: n.hubMetrics}
	if n.cluster != nil {
		hcfg.Router = n.cluster.links
	}
	if n.opts.hubTweak != nil {
		n.opts.hubTweak(&hcfg)
	}
	n.hub = hub.New(hcfg)
	journal, replay, err := openJournal(journalPath(n.opts.DataDir))
	if err != nil {
		return err
	}
	n.journal = journal
	for _, s := range replay {
		// Accepted before the node stopped: evaluated again (a crossing
		// already evaluated changes nothing).
		if err := n.bus.Publish(ctx, s); err != nil {
			n.log.Warn().Err(err).Str("signal", s.Name).Msg("replay a journaled signal")
		}
	}
	if len(replay) > 0 {
		n.log.Info().Int("signals", len(replay)).Msg("the newest accepted value of each signal published again from the journal")
	}
	if n.cluster != nil {
		n.cluster.links.SetHub(n.hub)
	}
	n.history = startHistorySaver(history, n.opts.DataDir, n.log)
	n.routesBuilt = n.routes(prometheus.Gatherers{reg, runtimeReg})
	if ch.client != nil {
		n.readCount = readMetrics(reg)
		n.reads = startReads(n.bus, ch.client, n.mgr.Reads, n.mgr.ReadFailed, n.opts.ChainPoll, clk, n.readCount, n.log.With().Str("part", "reads").Logger())
		n.logs = startLogs(ch.client, n.mgr, n.opts.Confirmations, n.opts.ChainPoll, logMetrics(reg), n.log.With().Str("part", "events").Logger())
		n.mgr.ServeEvents(n.logs)
	}
	fed := map[string]bool{}
	if ch.client != nil && len(ch.info.Feeds) > 0 {
		n.feeds = startFeeds(n.bus, ch.client, ch.info.Feeds, n.opts.ChainPoll, clk, n.log.With().Str("part", "feeds").Logger())
		for _, f := range ch.info.Feeds {
			fed[f.Signal] = true
		}
	}
	if n.opts.Demo {
		var pool market
		if ch.dev != nil {
			t, err := ch.dev.NewTrader(ctx)
			if err != nil {
				n.log.Warn().Err(err).Msg("no demo trader; ETH/USD is a random walk")
			} else {
				pool = t
			}
		}
		n.demo = startDemo(n.bus, n.opts.DemoInterval, clk, n.log, pool, fed)
	}
	return nil
}

func (n *daemon) routes(metrics prometheus.Gatherer) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("GET /v1/ws", n.hub)
	if n.cluster != nil {
		mux.Handle("GET /v1/node-link", n.cluster.links)
	}
	mux.Handle("GET /v1/history", historyHandler(n.hub.History(), n))
	mux.Handle("GET /v1/chain", n.chain.handler(n))
	if n.chain.dev != nil || n.opts.ChainRelay {
		mux.Handle("POST /v1/chain/rpc", newRelay(n.chain, n))
		mux.HandleFunc("GET /v1/chain/tx/{hash}", n.txViewHandler)
	}
	mux.Handle("GET /favicon.ico", web.Favicon())
	mux.HandleFunc("GET /v1/push/key", func(w http.ResponseWriter, _ *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]string{"publicKey": n.push.Public})
	})
	mux.Handle("POST /v1/signals", n.signalsHandler())
	mux.HandleFunc("POST /v1/admin/drain", n.drainHandler)
	mux.HandleFunc("POST /v1/admin/forget-node", n.forgetHandler)
	mux.HandleFunc("POST /v1/admin/restore", n.restoreHandler)
	mux.HandleFunc("POST /v1/admin/restore-node", n.restoreNodeHandler)
	mux.HandleFunc("GET /v1/signals", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", http.MethodPost)
		n.httpError(w, r, http.StatusMethodNotAllowed, "method_not_allowed", "signals are published with POST /v1/signals")
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, _ *http.Request) { fmt.Fprintln(w, "ok") })
	mux.HandleFunc("GET /readyz", n.readyz)
	mux.Handle("GET /metrics", promhttp.HandlerFor(metrics, promhttp.HandlerOpts{}))
	mux.Handle("GET /", web.Handler())
	return mux
}

// readyz is GET /readyz: 200 while the node serves, 503 while it starts,
// stops, its disk is full (for its vaults or its dev chain), or it stays out of its cluster (another secret
// or key-encryption key than the cluster's); the body says which, and how many vaults are
// quarantined (they do not make the node unready: every other vault
// serves).
func (n *daemon) readyz(w http.ResponseWriter, _ *http.Request) {
	status, code := "ready", http.StatusOK
	switch {
	case !n.ready.Load():
		status, code = "not_serving", http.StatusServiceUnavailable
	case n.mgr.StorageFull():
		status, code = "storage_full", http.StatusServiceUnavailable
	case n.chain.halted() != nil:
		status, code = "storage_full", http.StatusServiceUnavailable
	case n.cluster != nil && n.cluster.dir.Out() != "":
		status, code = "out_of_cluster", http.StatusServiceUnavailable
	}
	body := map[string]any{"status": status, "vaults_quarantined": n.mgr.Quarantined(), "node": n.opts.Node}
	if err := n.chain.halted(); err != nil {
		body["dev_chain"] = err.Error()
	}
	if n.cluster != nil {
		body["cluster_members"] = len(n.cluster.dir.Members())
		body["redis_reachable"] = n.cluster.dir.Reachable()
		if out := n.cluster.dir.Out(); out != "" {
			body["cluster_out"] = out
		}
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(body)
}

// serve runs the HTTP server until ctx ends, then shuts down in order:
// refuse new work, close WebSockets with "going away", stop the demo feed
// and the bus, and flush and close every vault.
func (n *daemon) serve(ctx context.Context) error {
	errc := n.served
	n.routesReady.Store(&n.routesBuilt)
	if n.opts.DebugListen != "" {
		if err := n.startDebug(n.opts.DebugListen); err != nil {
			n.log.Error().Err(err).Msg("pprof not served")
		}
	}
	n.ready.Store(true)
	n.log.Info().Str("dashboard", n.dashboardURL()).Strs("siwe_domains", n.opts.SIWEDomains).
		Str("data", n.opts.DataDir).Bool("demo", n.opts.Demo).Msg("spells node ready: open the dashboard at " + n.dashboardURL())
	if n.opts.SignalToken == "" {
		n.log.Info().Msg("signal ingest disabled: POST /v1/signals answers 503 until the node runs with --signal-token")
	}
	var serveErr error
	served := false
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
		served = true
	}
	n.ready.Store(false)
	if n.opts.DrainOnShutdown && n.cluster != nil {
		if _, err := n.drain(); err != nil {
			n.log.Warn().Err(err).Msg("drain before shutdown did not finish; the vaults left stay on this node's disk")
		}
	}
	n.log.Info().Dur("within", n.opts.ShutdownTimeout).Msg("shutting down")
	sctx, cancel := context.WithTimeout(context.Background(), n.opts.ShutdownTimeout)
	defer cancel()
	if err := n.hub.Shutdown(sctx); err != nil {
		n.log.Warn().Err(err).Msg("websockets did not all close in time")
	}
	if err := n.http.Shutdown(sctx); err != nil {
		n.log.Warn().Err(err).Msg("http shutdown")
	}
	if !served {
		<-errc // Serve returns once Shutdown has closed the listener
	}
	if n.debug != nil {
		n.debug.Close()
		<-n.debugDone
	}
	n.stopParts(sctx)
	n.log.Info().Msg("stopped")
	if serveErr != nil && !errors.Is(serveErr, http.ErrServerClosed) {
		return serveErr
	}
	return nil
}

// stopParts stops the demo feed and the bus, then closes the vaults,
// giving up waiting on them when ctx ends (what they acknowledged is
// durable; an unclosed file is recovered at the next start).
func (n *daemon) stopParts(ctx context.Context) {
	if n.feeds != nil {
		n.feeds.stop()
	}
	if n.reads != nil {
		n.reads.stop()
	}
	if n.logs != nil {
		n.logs.stop()
	}
	if n.mover != nil {
		n.mover.stop()
	}
	if n.demo != nil {
		n.demo.stop()
	}
	if n.cluster != nil {
		n.cluster.handoff.Close()
		n.cluster.links.Close()
	}
	n.bus.Close()
	if n.journal != nil {
		n.journal.close()
	}
	if n.cluster != nil {
		n.cluster.dir.Close()
		_ = n.cluster.rdb.Close()
	}
	n.history.close()
	closeErr := n.mgr.Close(ctx)
	if closeErr != nil {
		n.log.Warn().Err(closeErr).Msg("shutdown ran out of time")
	}
	if n.backup != nil {
		// The vaults' last changes, given as they closed, are shipped.
		n.backup.shipper.Close(ctx)
		if closeErr == nil && n.backup.shipper.Backlog() == 0 {
			n.backup.markShipped(n.opts.DataDir, n.log)
		}
	}
	n.chain.close()
}

// startBus starts the in-memory bus, or in a cluster the Redis one (on the
// cluster's Redis client, which the cluster's parts close).
func (n *daemon) startBus(reg prometheus.Registerer) nodeBus {
	if n.cluster == nil {
		return hub.NewMemoryBus(0, n.hubMetrics.BusConflated)
	}
	log := n.log.With().Str("part", "redis").Logger()
	log.Info().Msg("signals go through redis: a signal published on any node reaches every node")
	return redisbus.New(n.cluster.rdb, redisbus.NewMetrics(reg), n.hubMetrics.BusConflated, log)
}

// chainHandler is GET /v1/chain: the chain and the contracts the node
// executes with.
func (c *nodeChain) handler(n *daemon) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if c.client == nil {
			n.httpError(w, r, http.StatusNotFound, "no_chain", "this node runs without a chain (-chain-rpc none)")
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(c.info)
	}
}
