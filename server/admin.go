package main

import (
	"context"
	"encoding/json"
	"net/http"
	"path/filepath"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/spells-dev/spells/cluster"
	"github.com/spells-dev/spells/vault"
)

// A node in a cluster: its parts made, and the admin endpoints (drain,
// forget a node) that need them.

// newClusterParts prepares the cluster's parts before the vault manager
// exists (its claims go to the directory); startCluster starts them.
func (n *daemon) newClusterParts(secret []byte, kekID string, reg prometheus.Registerer, held func() map[string]uint64, holds func(common.Address) bool) (*clusterParts, error) {
	var faucetChain uint64
	var fund func(owner, key common.Address)
	if n.chain.faucet != nil {
		faucetChain, fund = n.chain.info.ChainID, n.chain.faucet.keyMade
	}
	log := n.log.With().Str("part", "cluster").Logger()
	redis.SetLogger(redisLog{log})
	rdb, err := cluster.NewClient(n.opts.Redis)
	if err != nil {
		return nil, err
	}
	dir, err := cluster.NewDirectory(rdb, cluster.DirectoryConfig{Node: n.opts.Node, Addr: nodeAddr(n.opts, n.ln.Addr()),
		Lease: n.opts.ClusterLease, Held: held, Superseded: n.superseded, Faucet: faucetChain, PeersFile: filepath.Join(n.opts.DataDir, "cluster.json"),
		Secret: derive(secret, "membership"), KEKID: kekID, Logger: log, Metrics: cluster.NewDirectoryMetrics(reg)})
	if err != nil {
		rdb.Close()
		return nil, err
	}
	links := cluster.NewLinks(cluster.LinksConfig{Dir: dir, Secret: derive(secret, "node link"), Holds: holds,
		DataDir: n.opts.DataDir, Fund: fund, FundChain: faucetChain, Logger: log, Metrics: cluster.NewLinkMetrics(reg)})
	return &clusterParts{rdb: rdb, dir: dir, links: links, secret: secret, reg: reg}, nil
}

// standDownStale makes tombstones, before any vault runs, of the copies
// held here that the directory gives to another node at a higher epoch
// (restored there while this node was gone). Without Redis the copies
// run; the directory's first write of this node's homes finds them.
func (n *daemon) standDownStale(ctx context.Context, mgr *vault.Manager) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	stale, err := n.cluster.dir.Superseded(ctx, mgr.Held())
	if err != nil {
		n.log.Warn().Err(err).Msg("could not check the directory for vaults restored elsewhere before running them")
		return
	}
	for addr, home := range stale {
		if err := mgr.StandDown(addr, home.Node, home.Epoch); err != nil {
			n.log.Error().Err(err).Msg("a superseded vault could not be stood down")
		}
	}
}

// superseded is cluster.DirectoryConfig.Superseded: the vault manager
// stands its copy down (the manager exists before the directory starts).
func (n *daemon) superseded(vault common.Address, home cluster.Home) {
	n.mgr.Supersede(vault, home.Node, home.Epoch)
}

// drain hands every vault of this node to the other nodes, for at most
// -drain-timeout.
func (n *daemon) drain() (cluster.DrainResult, error) {
	ctx, cancel := context.WithTimeout(context.Background(), n.opts.DrainTimeout)
	defer cancel()
	return n.cluster.handoff.Drain(ctx)
}

// drainHandler is POST /v1/admin/drain: authenticated by -admin-token, it
// drains the node and answers what moved. The node keeps serving (the
// vaults it still holds, and forwarding); it creates no new vault.
func (n *daemon) drainHandler(w http.ResponseWriter, r *http.Request) {
	if !n.adminAllowed(w, r) {
		return
	}
	res, err := n.drain()
	if err != nil && res.Moved+res.Failed == 0 {
		n.httpError(w, r, http.StatusConflict, "drain_failed", err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(res)
}

// adminAllowed checks a cluster's admin request: adminToken, and the node
// is in a cluster.
func (n *daemon) adminAllowed(w http.ResponseWriter, r *http.Request) bool {
	switch {
	case !n.adminToken(w, r):
		return false
	case n.cluster == nil:
		n.httpError(w, r, http.StatusConflict, "not_clustered", "this node runs alone: the admin endpoints are for nodes run with --redis")
		return false
	}
	return true
}

// adminToken checks that the admin token is configured and given.
func (n *daemon) adminToken(w http.ResponseWriter, r *http.Request) bool {
	if n.opts.AdminToken == "" {
		n.httpError(w, r, http.StatusServiceUnavailable, "admin_disabled", "the admin endpoints are off: start the node with --admin-token")
		return false
	}
	return n.bearer(w, r, n.opts.AdminToken)
}

// forgetHandler is POST /v1/admin/forget-node?node=ID: this node stops
// awaiting a node gone for good (its data lost) after Redis lost the
// directory. Run it on every node.
func (n *daemon) forgetHandler(w http.ResponseWriter, r *http.Request) {
	if !n.adminAllowed(w, r) {
		return
	}
	id := r.URL.Query().Get("node")
	if id == "" || id == n.opts.Node {
		n.httpError(w, r, http.StatusBadRequest, "bad_request", "name another node: ?node=ID")
		return
	}
	known := n.cluster.dir.Forget(id)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"node": id, "was_known": known})
}
