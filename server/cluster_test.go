package main

import (
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spells-dev/spells/cluster"
	"github.com/spells-dev/spells/cluster/redistest"
	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/protocol/client"
)

const (
	testClusterSecret = "a cluster secret of at least 32 characters"
	testMasterKey     = "6b656b2d666f722d636c75737465722d74657374732d6f6e6c792d3332627974"
)

// testCluster is n nodes in this process sharing one Redis, named node-a,
// node-b, …, on ports picked up front so that every node accepts every
// node's SIWE domains (a cluster serves one set of domains).
type testCluster struct {
	redis *redistest.Server
	nodes []*testNode
}

func startCluster(t *testing.T, n int) *testCluster {
	t.Helper()
	r := redistest.Start(t)
	tc := startClusterOn(t, n, r.URL())
	tc.redis = r
	return tc
}

// clusterAddrs picks n free loopback addresses for a cluster's nodes, and
// the SIWE domains every one of them accepts (a cluster serves one set).
func clusterAddrs(t *testing.T, n int) (addrs, domains []string) {
	t.Helper()
	for i := 0; i < n; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addrs = append(addrs, l.Addr().String())
		l.Close()
		_, port, _ := net.SplitHostPort(l.Addr().String())
		domains = append(domains, "localhost:"+port, "127.0.0.1:"+port)
	}
	return addrs, domains
}

// startClusterOn starts n nodes on the Redis at url. The ports are picked
// free before the nodes start (each must know the others' as SIWE
// domains), so another process may take one meanwhile: then the cluster
// is started again on other ports.
func startClusterOn(t *testing.T, n int, url string) *testCluster {
	t.Helper()
	tc := &testCluster{}
	for attempt := 0; ; attempt++ {
		addrs, domains := clusterAddrs(t, n)
		tc.nodes = nil
		var err error
		for i := 0; i < n && err == nil; i++ {
			o := testOptions(t)
			o.Listen, o.SIWEDomains = addrs[i], domains
			o.Redis, o.ClusterSecret, o.Node = url, testClusterSecret, "node-"+string(rune('a'+i))
			o.ClusterLease, o.AdminToken, o.MasterKey = time.Second, testAdminToken, testMasterKey
			var tn *testNode
			if tn, err = startNodeErr(t, o, nil); err == nil {
				tc.nodes = append(tc.nodes, tn)
			}
		}
		if err == nil {
			break
		}
		for _, tn := range tc.nodes {
			tn.shutdown()
		}
		if attempt == 2 || !strings.Contains(err.Error(), "address already in use") {
			t.Fatal(err)
		}
	}
	for _, tn := range tc.nodes {
		waitFor(t, "every node in the directory", func() bool { return len(tn.n.cluster.dir.Members()) == n && tn.n.cluster.dir.Settled() })
	}
	return tc
}

// walletPlacedOn makes wallets until placement puts one's vault on node i.
func (tc *testCluster) walletPlacedOn(t *testing.T, i int) *client.Wallet {
	t.Helper()
	return walletFor(t, tc.nodes[0].n.cluster.dir.Members(), tc.nodes[i].opts.Node)
}

// walletFor makes wallets until placement over members puts one's vault on
// the node with id.
func walletFor(t *testing.T, members []cluster.Member, id string) *client.Wallet {
	t.Helper()
	for {
		w, err := client.NewWallet()
		if err != nil {
			t.Fatal(err)
		}
		if cluster.Rendezvous(strings.ToLower(w.Address().Hex()), members).ID == id {
			return w
		}
	}
}

func vaultFileOn(tn *testNode, w *client.Wallet) bool {
	id := strings.ToLower(w.Address().Hex())
	_, err := os.Stat(filepath.Join(tn.opts.DataDir, "vaults", id[2:4], id+".db"))
	return err == nil
}

// TestThreeNodes: a client on node A whose vault lives on node C is served
// there through A; a signal published on node B reaches vaults on all
// three; a session resumes through another node with no diff lost or
// repeated; nodes asked for one new vault at once create it once.
func TestThreeNodes(t *testing.T) {
	tc := startCluster(t, 3)
	a, b, c := tc.nodes[0], tc.nodes[1], tc.nodes[2]

	// A client on A, its vault placed on C.
	wc := tc.walletPlacedOn(t, 2)
	s := a.signIn(t, wc)
	if !vaultFileOn(c, wc) || vaultFileOn(a, wc) || vaultFileOn(b, wc) {
		t.Fatal("the vault's file is not on node C alone")
	}
	home, ok, err := a.n.cluster.dir.Lookup(ctxT(t), wc.Address())
	if err != nil || !ok || home != (cluster.Home{Node: "node-c", Epoch: 1}) {
		t.Fatalf("home: %v %v %v", home, ok, err)
	}
	spec := dip(100)
	spec.Condition.Signal = "CLUSTER/X"
	id, _ := s.create(t, spec)

	// One vault on each node, each signed in on another node, each with
	// the same trigger.
	sessions := []*session{s}
	for i, entry := range []*testNode{b, c, a} {
		w := tc.walletPlacedOn(t, i)
		ss := entry.signIn(t, w)
		ss.create(t, spec)
		sessions = append(sessions, ss)
	}
	if got := testutilValue(t, c, "spells_forwarded_sessions"); got < 2 {
		t.Fatalf("node C serves %v forwarded sessions, want its two", got)
	}

	// A signal published on B reaches every vault: each fires once.
	b.mustPublish(t, "CLUSTER/X", 150)
	b.mustPublish(t, "CLUSTER/X", 50)
	for i, ss := range sessions {
		ss.until(t, "the firing on vault "+strconv.Itoa(i), isFiring)
	}
	if tr := s.mirror.Triggers[id]; tr.Fires != 1 {
		t.Fatalf("the trigger fired %d times", tr.Fires)
	}

	// The client leaves A and resumes on B from the version it holds;
	// meanwhile the vault changed twice more.
	held := s.mirror.Version
	s.c.CloseNow()
	writer := c.signIn(t, wc) // a second session, on the vault's own node
	writer.create(t, spec)
	writer.create(t, spec)
	rc := b.dial(t)
	if err := rc.Resume(ctxT(t), s.s, held); err != nil {
		t.Fatalf("resume through B: %v", err)
	}
	s.c = rc
	s.untilVersion(t, held+2)
	if s.mirror.Version != held+2 {
		t.Fatalf("resumed at %d, want %d", s.mirror.Version, held+2)
	}
	if _, err := s.cmd(t, protocol.OpTriggerDelete, map[string]string{"id": id}); err != nil {
		t.Fatalf("command after the resume: %v", err)
	}

	// Every node asked for one new vault at once: it is created once.
	w, _ := client.NewWallet()
	var wg sync.WaitGroup
	for _, tn := range tc.nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := client.Dial(ctxT(t), tn.wsURL(), nil)
			if err != nil {
				t.Error(err)
				return
			}
			defer conn.CloseNow()
			if _, err := conn.SignIn(ctxT(t), w, client.SignInParams{}, nil); err != nil {
				t.Errorf("sign-in on %s: %v", tn.opts.Node, err)
			}
		}()
	}
	wg.Wait()
	files := 0
	for _, tn := range tc.nodes {
		if vaultFileOn(tn, w) {
			files++
		}
	}
	if files != 1 {
		t.Fatalf("the vault has %d files", files)
	}
}

// TestSignalsAcrossNodes: two nodes sharing a Redis: a signal published on
// one fires a trigger of a vault on the other, and reaches its dashboard.
func TestSignalsAcrossNodes(t *testing.T) {
	signalsAcross(t, startCluster(t, 2))
}

// TestNodesOnRedisCluster: the same two nodes on a three-shard Redis
// Cluster (the directory's keys and the signals' keys spread over its
// shards), a dashboard reaching its vault through the other node.
func TestNodesOnRedisCluster(t *testing.T) {
	rc := redistest.StartCluster(t, 3)
	signalsAcross(t, startClusterOn(t, 2, rc.URL()))
}

func signalsAcross(t *testing.T, tc *testCluster) {
	a, b := tc.nodes[0], tc.nodes[1]
	w := tc.walletPlacedOn(t, 1)
	s := a.signIn(t, w) // its vault on b, reached through a
	if !vaultFileOn(b, w) {
		t.Fatal("the vault is not on node b")
	}
	spec := dip(100)
	spec.Condition.Signal = "CROSS/NODE"
	id, _ := s.create(t, spec)
	a.mustPublish(t, "CROSS/NODE", 150)
	s.until(t, "the first value from the other node", func(f protocol.ServerFrame) bool { return f.Type == protocol.TypeSignal && f.Name == "CROSS/NODE" })
	a.mustPublish(t, "CROSS/NODE", 50)
	s.until(t, "the firing", isFiring)
	if tr := s.mirror.Triggers[id]; tr.Fires != 1 {
		t.Fatalf("the trigger fired %d times", tr.Fires)
	}
}

// testutilValue reads a gauge or counter (summed over its labels) from a
// node's own registry.
func testutilValue(t *testing.T, tn *testNode, name string) float64 {
	t.Helper()
	mfs, err := tn.n.metricsReg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, m := range mf.GetMetric() {
			sum += m.GetGauge().GetValue() + m.GetCounter().GetValue()
		}
	}
	return sum
}

// clusterFiles writes the cluster secret and the shared key-encryption key
// to files, for nodes run as processes.
func clusterFiles(t *testing.T) (secret, kek string) {
	t.Helper()
	dir := t.TempDir()
	secret, kek = filepath.Join(dir, "secret"), filepath.Join(dir, "kek")
	if err := os.WriteFile(secret, []byte(testClusterSecret), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(kek, []byte(testMasterKey), 0o600); err != nil {
		t.Fatal(err)
	}
	return secret, kek
}

// TestANodeWithoutTheClusterSecretOrKeyStaysOut: a node started with
// another cluster secret, or another key-encryption key, joins no
// cluster: the members do not count it, placement leaves it out, and its
// /readyz answers 503 naming why.
func TestANodeWithoutTheClusterSecretOrKeyStaysOut(t *testing.T) {
	tc := startCluster(t, 1)
	a := tc.nodes[0]
	for _, c := range []struct {
		secret, key, says string
	}{
		{"another cluster secret of at least 32 characters", testMasterKey, "cluster secret"},
		{testClusterSecret, strings.Repeat("ab", 32), "key-encryption key"},
	} {
		o := testOptions(t)
		o.Redis, o.ClusterSecret, o.MasterKey, o.Node, o.ClusterLease = tc.redis.URL(), c.secret, c.key, "node-x", time.Second
		x := startNode(t, o, nil)
		waitFor(t, "node-x to serve and find it is out", func() bool { return x.n.ready.Load() && x.n.cluster.dir.Out() != "" })
		rec := httptest.NewRecorder()
		x.n.readyz(rec, httptest.NewRequest("GET", "/readyz", nil))
		var body map[string]any
		json.Unmarshal(rec.Body.Bytes(), &body)
		if rec.Code != http.StatusServiceUnavailable || body["status"] != "out_of_cluster" || !strings.Contains(fmt.Sprint(body["cluster_out"]), c.says) {
			t.Fatalf("readyz of a node with another %s: %d %v", c.says, rec.Code, body)
		}
		if n := len(a.n.cluster.dir.Members()); n != 1 {
			t.Fatalf("node-a counts %d members", n)
		}
		x.shutdown()
	}
}
