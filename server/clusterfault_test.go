package main

import (
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spells-dev/spells/cluster/redistest"
	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/protocol/client"
)

// TestRedisDownAndBackEmpty: Redis is killed mid-traffic. Each node keeps
// serving the vaults it holds, sign-ins included, and their dashboards;
// a vault on another node is a clear, retryable node_unreachable; signals
// still reach the vaults of the node they are published on. Redis comes
// back empty: the directory is rebuilt and signals cross nodes again,
// with no operator.
func TestRedisDownAndBackEmpty(t *testing.T) {
	tc := startCluster(t, 2)
	a, b := tc.nodes[0], tc.nodes[1]
	wa, wb := tc.walletPlacedOn(t, 0), tc.walletPlacedOn(t, 1)
	local := a.signIn(t, wa)
	spec := dip(100)
	spec.Condition.Signal = "OUTAGE/X"
	local.create(t, spec)
	b.signIn(t, wb).c.CloseNow() // wb's vault exists, on B

	tc.redis.Stop()
	waitFor(t, "node A to see Redis gone", func() bool { return testutilValue(t, a, "spells_directory_reachable") == 0 })

	// The vault held on A: its dashboard and a new sign-in still work.
	if _, err := local.cmd(t, protocol.OpTriggerCreate, spec); err != nil {
		t.Fatalf("command while Redis is down: %v", err)
	}
	again := a.signIn(t, wa)
	// The vault on B, from A: retryable, and said so.
	conn := a.dial(t)
	_, err := conn.SignIn(ctxT(t), wb, client.SignInParams{}, nil)
	wantCode(t, err, protocol.CodeNodeUnreachable)
	if !protocol.Retryable(protocol.CodeNodeUnreachable) {
		t.Fatal("node_unreachable is not retryable")
	}
	// A new vault cannot be placed: retryable too.
	stranger, _ := client.NewWallet()
	_, err = a.dial(t).SignIn(ctxT(t), stranger, client.SignInParams{}, nil)
	wantCode(t, err, protocol.CodeNodeUnreachable)
	// Signals published on A reach A's vaults.
	a.mustPublish(t, "OUTAGE/X", 150)
	a.mustPublish(t, "OUTAGE/X", 50)
	again.until(t, "the firing with Redis down", isFiring)

	// Redis back, empty.
	tc.redis.Restart()
	waitFor(t, "the directory rebuilt", func() bool {
		h, ok, err := a.n.cluster.dir.Lookup(ctxT(t), wb.Address())
		return err == nil && ok && h.Node == "node-b"
	})
	waitFor(t, "both nodes settled", func() bool { return a.n.cluster.dir.Settled() && b.n.cluster.dir.Settled() })
	if testutilValue(t, a, "spells_directory_rebuilds_total")+testutilValue(t, b, "spells_directory_rebuilds_total") < 1 {
		t.Fatal("no rebuild counted")
	}
	s := a.signIn(t, wb) // through A to B again
	s.create(t, spec)
	// Signals cross nodes again: B's vault fires on a value published on
	// A (the subscription was made again by itself).
	waitFor(t, "B subscribed again", func() bool { return testutilValue(t, b, "spells_redis_bus_resyncs_total") >= 2 })
	a.mustPublish(t, "OUTAGE/X", 150)
	a.mustPublish(t, "OUTAGE/X", 50)
	s.until(t, "the firing on B after Redis came back", isFiring)
}

func isFiring(f protocol.ServerFrame) bool {
	for _, c := range f.Changes {
		if c.Kind == protocol.KindIntent {
			return true
		}
	}
	return false
}

// TestKilledNodesVaultsWaitForIt: a node is killed with SIGKILL. Its
// vaults are unavailable (node_unreachable, retryable) from the other
// node, which never creates them afresh; once it restarts on its data
// they are served again, data intact.
func TestKilledNodesVaultsWaitForIt(t *testing.T) {
	r := redistest.Start(t)
	secretFile, keyFile := clusterFiles(t)
	addrs, domains := clusterAddrs(t, 2)
	oa := testOptions(t)
	oa.Listen, oa.SIWEDomains, oa.Node = addrs[0], domains, "node-a"
	oa.Redis, oa.ClusterSecretFile, oa.ClusterLease, oa.MasterKey = r.URL(), secretFile, time.Second, testMasterKey
	a := startNode(t, oa, nil)
	dataB := t.TempDir()
	args := []string{"-listen", addrs[1], "-siwe-domains", strings.Join(domains, ","), "-node", "node-b",
		"-redis", r.URL(), "-cluster-secret-file", secretFile, "-cluster-lease", "1s", "-master-key-file", keyFile}
	b := startProc(t, dataB, args...)
	waitFor(t, "both members", func() bool { return len(a.n.cluster.dir.Members()) == 2 && a.n.cluster.dir.Settled() })

	w := walletFor(t, a.n.cluster.dir.Members(), "node-b")
	s := a.signIn(t, w)
	id, _ := s.create(t, dip(100))
	held := s.mirror.Version

	if err := b.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	<-b.exited
	// The forwarded dashboard is told to reconnect.
	if _, err := s.c.Next(ctxT(t)); err == nil {
		for {
			if _, err = s.c.Next(ctxT(t)); err != nil {
				break
			}
		}
	}
	// Until B is back, its vault is unavailable from A, and A never
	// creates it (its membership lapses meanwhile).
	for i := 0; i < 3; i++ {
		_, err := a.dial(t).SignIn(ctxT(t), w, client.SignInParams{}, nil)
		wantCode(t, err, protocol.CodeNodeUnreachable)
		time.Sleep(700 * time.Millisecond)
	}
	if vaultFileOn(a, w) {
		t.Fatal("node A created the killed node's vault")
	}
	startProc(t, dataB, args...)
	waitFor(t, "node B back", func() bool { _, ok := a.n.cluster.dir.Member("node-b"); return ok })
	rc := a.dial(t)
	var err error
	for deadline := time.Now().Add(10 * time.Second); ; {
		if err = rc.Resume(ctxT(t), s.s, held); err == nil || time.Now().After(deadline) {
			break
		}
		rc = a.dial(t)
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("resume after node B restarted: %v", err)
	}
	s.c = rc
	if _, err := s.cmd(t, protocol.OpTriggerDelete, map[string]string{"id": id}); err != nil {
		t.Fatalf("the trigger made before the kill: %v", err)
	}
}
