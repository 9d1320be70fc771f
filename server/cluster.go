package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/spells-dev/spells/cluster"
	"github.com/spells-dev/spells/protocol"
)

// clusterParts are what a node of a cluster (-redis) runs beside the
// single node's parts: the Redis client, the directory and the node links.
type clusterParts struct {
	rdb     redis.UniversalClient
	dir     *cluster.Directory
	links   *cluster.Links
	handoff *cluster.Handoff // set by startHandoff, once the manager exists
	secret  []byte
	reg     prometheus.Registerer
}

// minClusterSecret is the shortest cluster secret accepted.
const minClusterSecret = 32

// clusterSecret reads the secret every node of the cluster shares.
func clusterSecret(o Options) ([]byte, error) {
	s := o.ClusterSecret
	if o.ClusterSecretFile != "" {
		b, err := os.ReadFile(o.ClusterSecretFile)
		if err != nil {
			return nil, fmt.Errorf("-cluster-secret-file: %w", err)
		}
		s = strings.TrimSpace(string(b))
	}
	if s == "" {
		return nil, errors.New("-redis needs the cluster's shared secret: -cluster-secret-file or SPELLS_CLUSTER_SECRET (at least 32 characters, the same on every node)")
	}
	if len(s) < minClusterSecret {
		return nil, fmt.Errorf("the cluster secret has %d characters; at least %d are needed", len(s), minClusterSecret)
	}
	return []byte(s), nil
}

// derive makes a key for one use from the cluster secret.
func derive(secret []byte, use string) []byte {
	m := hmac.New(sha256.New, secret)
	m.Write([]byte("spells cluster key\x00" + use))
	return m.Sum(nil)
}

// clusterNodeID is this node's id in the cluster, kept in <data>/node.id
// from its first start as a member (homes of its vaults name it): -node,
// or the host name and listen port. A -node that differs from the kept
// id is refused: the vaults here would be orphaned.
func clusterNodeID(dir, flagNode string, ln net.Addr) (string, error) {
	p := filepath.Join(dir, "node.id")
	if b, err := os.ReadFile(p); err == nil {
		id := strings.TrimSpace(string(b))
		if flagNode != "" && flagNode != id {
			return "", fmt.Errorf("-node %q: this data directory belongs to cluster node %q (%s); vaults here have their homes under that id", flagNode, id, p)
		}
		return id, nil
	} else if !os.IsNotExist(err) {
		return "", fmt.Errorf("node id: %w", err)
	}
	id := flagNode
	if id == "" {
		host, _ := os.Hostname()
		_, port, _ := net.SplitHostPort(ln.String())
		id = host + "-" + port
	}
	if strings.ContainsAny(id, " \t\n") {
		return "", fmt.Errorf("node id %q: no spaces", id)
	}
	if err := os.WriteFile(p, []byte(id+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("node id: %w", err)
	}
	return id, nil
}

// nodeAddr is where other nodes reach this one: -node-addr, or loopback
// on the listen port.
func nodeAddr(o Options, ln net.Addr) string {
	if o.NodeAddr != "" {
		return o.NodeAddr
	}
	_, port, _ := net.SplitHostPort(ln.String())
	return net.JoinHostPort("127.0.0.1", port)
}

// claim is the vault manager's Claim in a cluster: the directory records
// this node as a new vault's home, or says why not in the client's terms.
func (c *clusterParts) claim(ctx context.Context, vault common.Address) error {
	err := c.dir.Claim(ctx, vault)
	var el *cluster.ElsewhereError
	var aw *cluster.AwaitingError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &aw):
		return protocol.Errorf(protocol.CodeUnavailable, "%v; retry later", err)
	case errors.As(err, &el):
		return protocol.Errorf(protocol.CodeVaultElsewhere, "this vault was just created on node %s: sign in again to reach it there", el.Home.Node)
	case errors.Is(err, cluster.ErrOut):
		return protocol.Errorf(protocol.CodeUnavailable, "%v: this node creates no vault; sign in through another node", err)
	case errors.Is(err, cluster.ErrRebuilding):
		return protocol.Errorf(protocol.CodeUnavailable, "%v: new vaults wait until it is; retry in a few seconds", err)
	}
	return protocol.Errorf(protocol.CodeNodeUnreachable, "the cluster's directory (Redis) does not answer, so a new vault cannot be recorded; retry")
}

// start joins the cluster: the directory reads the vaults the manager
// found, then the lease is renewed until stop.
func (c *clusterParts) start(ctx context.Context, vaults cluster.Vaults, log zerolog.Logger) {
	pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if err := c.rdb.Ping(pctx).Err(); err != nil {
		log.Warn().Err(err).Msg("redis does not answer at start: serving the vaults held here, and joining the cluster when it does")
	}
	c.dir.Start(ctx)
	c.handoff = cluster.NewHandoff(c.links, vaults, cluster.NewHandoffMetrics(c.reg))
	if step := os.Getenv("SPELLS_TEST_CRASH_HANDOFF"); step != "" {
		// Fault injection for tests: the process ends at that step of a
		// move as if killed (no shutdown, nothing flushed beyond what is
		// already synced).
		c.handoff.CrashAt(step, func() { os.Exit(3) })
	}
	c.handoff.Start()
	log.Info().Str("node", c.dir.Node()).Int("members", len(c.dir.Members())).Msg("cluster member: vaults are placed over the live nodes, and reached from any of them")
}
