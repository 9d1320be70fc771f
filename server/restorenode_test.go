package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/spells-dev/spells/backup/s3test"
	"github.com/spells-dev/spells/cluster"
	"github.com/spells-dev/spells/cluster/redistest"
)

// TestAGoneNodesVaultsAreRestoredElsewhere: node A of a cluster is gone
// (its disk with it, as far as the cluster knows); node B, told so,
// restores A's vaults from the shared backup at the next epoch, and
// serves them. When A comes back with its old disk, its copy is
// superseded by the higher epoch: kept as a tombstone, never run, and a
// sign-in through A reaches B's copy.
func TestAGoneNodesVaultsAreRestoredElsewhere(t *testing.T) {
	r := redistest.Start(t)
	srv := s3test.Start(t)
	addrs, domains := clusterAddrs(t, 2)
	opts := make([]Options, 2)
	for i := range opts {
		o := testOptions(t)
		o.Listen, o.SIWEDomains, o.Node = addrs[i], domains, "node-"+string(rune('a'+i))
		o.Redis, o.ClusterSecret, o.ClusterLease = r.URL(), testClusterSecret, time.Second
		o.AdminToken, o.MasterKey = testAdminToken, testMasterKey
		o.Backup, o.BackupEvery = srv.URL+"/spells/cluster", 50*time.Millisecond
		opts[i] = o
	}
	a := startNode(t, opts[0], nil)
	b := startNode(t, opts[1], nil)
	for _, tn := range []*testNode{a, b} {
		waitFor(t, "both members", func() bool { return len(tn.n.cluster.dir.Members()) == 2 && tn.n.cluster.dir.Settled() })
	}
	w := walletFor(t, b.n.cluster.dir.Members(), "node-a")
	s := a.signIn(t, w)
	for i := 0; i < 3; i++ {
		s.create(t, dip(float64(100+i)))
	}
	if err := a.shutdown(); err != nil { // its last changes shipped as it closed
		t.Fatal(err)
	}
	waitFor(t, "node A's membership to lapse", func() bool { _, ok := b.n.cluster.dir.Member("node-a"); return !ok })

	code, body := adminPost(t, b, "/v1/admin/restore-node?node=node-b", testAdminToken)
	if code != http.StatusBadRequest {
		t.Fatalf("restore-node of itself: %d %s", code, body)
	}
	code, body = adminPost(t, b, "/v1/admin/restore-node?node=node-a", testAdminToken)
	var res struct {
		Restored int
		Failed   map[string]string
	}
	if err := json.Unmarshal([]byte(body), &res); code != http.StatusOK || err != nil || res.Restored != 1 || len(res.Failed) != 0 {
		t.Fatalf("restore-node: %d %s", code, body)
	}
	home, ok, err := b.n.cluster.dir.Lookup(ctxT(t), w.Address())
	if err != nil || !ok || home != (cluster.Home{Node: "node-b", Epoch: 2}) {
		t.Fatalf("the vault's home after the restore: %v %v %v", home, ok, err)
	}
	sb := b.signIn(t, w)
	if n := len(sb.mirror.Triggers); n != 3 {
		t.Fatalf("the restored vault has %d triggers, want 3", n)
	}
	sb.create(t, dip(200))

	// A comes back on its old disk: its copy (epoch 1) stands down.
	a = startNode(t, opts[0], nil)
	waitFor(t, "node A's copy superseded", func() bool { return !a.n.mgr.Holds(w.Address()) })
	if to, _, moved := movedMark(t, vaultPath(a, w)); !moved || to != "node-b" {
		t.Fatalf("node A's copy: moved %v to %q, want a tombstone to node-b", moved, to)
	}
	// A restore in place asked of the node that does not serve the vault.
	vault := strings.ToLower(w.Address().Hex())
	if code, body := adminPost(t, a, "/v1/admin/restore?mode=in_place&vault="+vault, testAdminToken); code != http.StatusConflict {
		t.Fatalf("a restore in place on a node that does not serve the vault: %d %s", code, body)
	}
	sa := a.signIn(t, w)
	if n := len(sa.mirror.Triggers); n != 4 {
		t.Fatalf("through node A the vault has %d triggers, want B's 4", n)
	}
	if h, _, _ := a.n.cluster.dir.Lookup(ctxT(t), w.Address()); h.Node != "node-b" || !strings.HasPrefix(h.String(), "node-b 2") {
		t.Fatalf("node A took the home back: %v", h)
	}
}
