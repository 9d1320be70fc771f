package cluster

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/spells-dev/spells/cluster/redistest"
)

func dial(t *testing.T, url string) redis.UniversalClient {
	t.Helper()
	rdb, err := Dial(context.Background(), url)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rdb.Close() })
	return rdb
}

// startDirectory joins a node to the directory in rdb; held is the vaults
// it holds (read under its own lock).
func startDirectory(t *testing.T, rdb redis.UniversalClient, node string, lease time.Duration, held *heldSet) *Directory {
	t.Helper()
	if held == nil {
		held = &heldSet{m: map[string]uint64{}}
	}
	d := newDir(t, rdb, DirectoryConfig{Node: node, Addr: "127.0.0.1:1" + node[len(node)-1:], Lease: lease,
		Held: held.get, Logger: zerolog.Nop()})
	d.Start(context.Background())
	t.Cleanup(d.Close)
	waitFor(t, "the directory settled", d.Settled)
	return d
}

type heldSet struct {
	mu sync.Mutex
	m  map[string]uint64
}

func (h *heldSet) get() map[string]uint64 {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make(map[string]uint64, len(h.m))
	for k, v := range h.m {
		out[k] = v
	}
	return out
}

func vaultN(i int) common.Address { return common.BigToAddress(big.NewInt(int64(i))) }

func TestClaimsRace(t *testing.T) {
	srv := redistest.Start(t)
	rdb := dial(t, srv.URL())
	var dirs []*Directory
	for i := 1; i <= 5; i++ {
		dirs = append(dirs, startDirectory(t, rdb, fmt.Sprintf("node-%d", i), time.Second, nil))
	}
	// Every node is asked for the same new vault at once, 50 times over.
	for v := 0; v < 50; v++ {
		vault := vaultN(1000 + v)
		var wg sync.WaitGroup
		errs := make([]error, len(dirs))
		start := make(chan struct{})
		for i, d := range dirs {
			wg.Add(1)
			go func() {
				defer wg.Done()
				<-start
				errs[i] = d.Claim(context.Background(), vault)
			}()
		}
		close(start)
		wg.Wait()
		winner := -1
		for i, err := range errs {
			var el *ElsewhereError
			switch {
			case err == nil:
				if winner >= 0 {
					t.Fatalf("vault %d: nodes %d and %d both claimed it", v, winner, i)
				}
				winner = i
			case errors.As(err, &el):
			default:
				t.Fatalf("claim: %v", err)
			}
		}
		if winner < 0 {
			t.Fatalf("vault %d: nobody claimed it: %v", v, errs)
		}
		for i, err := range errs {
			var el *ElsewhereError
			if i != winner && (!errors.As(err, &el) || el.Home != (Home{Node: dirs[winner].Node(), Epoch: 1})) {
				t.Fatalf("vault %d: node %d was told %v, want the winner %s", v, i, err, dirs[winner].Node())
			}
		}
		h, ok, err := dirs[0].Lookup(context.Background(), vault)
		if err != nil || !ok || h.Node != dirs[winner].Node() {
			t.Fatalf("lookup: %v %v %v", h, ok, err)
		}
		// The winner claiming again (its own retry) is not a conflict.
		if err := dirs[winner].Claim(context.Background(), vault); err != nil {
			t.Fatalf("reclaim by the home: %v", err)
		}
	}
}

func TestPlacementSpreadsAndAgrees(t *testing.T) {
	members := []Member{{ID: "node-a"}, {ID: "node-b"}, {ID: "node-c"}}
	count := map[string]int{}
	const n = 30000
	for i := 0; i < n; i++ {
		key := idOf(vaultN(i))
		m := Rendezvous(key, members)
		count[m.ID]++
		// The order members are listed in does not change the answer.
		if r := Rendezvous(key, []Member{members[2], members[0], members[1]}); r.ID != m.ID {
			t.Fatalf("%s: %s in one order, %s in another", key, m.ID, r.ID)
		}
		// A node leaving moves only the vaults it won.
		if m.ID != "node-c" {
			if r := Rendezvous(key, members[:2]); r.ID != m.ID {
				t.Fatalf("%s moved from %s to %s when node-c left", key, m.ID, r.ID)
			}
		}
	}
	for id, c := range count {
		if c < n/3*95/100 || c > n/3*105/100 {
			t.Errorf("%s got %d of %d vaults; want within 5%% of a third", id, c, n)
		}
	}
	t.Logf("placement over 3 nodes: %v", count)
}

func TestDirectoryRebuiltAfterRedisLosesIt(t *testing.T) {
	srv := redistest.Start(t)
	rdb := dial(t, srv.URL())
	held := &heldSet{m: map[string]uint64{}}
	for i := 0; i < 1200; i++ { // more than one batch
		held.m[idOf(vaultN(5000+i))] = 1
	}
	lease := 600 * time.Millisecond
	a := startDirectory(t, rdb, "node-a", lease, held)
	b := startDirectory(t, rdb, "node-b", lease, nil)
	some := vaultN(5000)
	if h, ok, err := b.Lookup(context.Background(), some); err != nil || !ok || h.Node != "node-a" {
		t.Fatalf("home after start: %v %v %v", h, ok, err)
	}
	if n := testutil.ToFloat64(a.m.HomesWritten); n != 1200 {
		t.Fatalf("homes written at start: %v", n)
	}
	waitFor(t, "both members seen", func() bool { return len(b.Members()) == 2 })

	srv.Restart() // empty
	fresh := vaultN(99)
	// Within a lease every node finds the directory gone and writes its
	// homes back; meanwhile no vault is created.
	waitFor(t, "home written back", func() bool {
		h, ok, err := b.Lookup(context.Background(), some)
		return err == nil && ok && h.Node == "node-a"
	})
	if err := b.Claim(context.Background(), fresh); !errors.Is(err, ErrRebuilding) {
		t.Fatalf("claim while rebuilding: %v", err)
	}
	if got := testutil.ToFloat64(a.m.Rebuilds) + testutil.ToFloat64(b.m.Rebuilds); got < 1 {
		t.Fatalf("rebuilds counted: %v", got)
	}
	waitFor(t, "claims after the rebuild", func() bool { return b.Claim(context.Background(), fresh) == nil })
	keys, err := rdb.Keys(context.Background(), "*").Result() // KEYS leaves out expired keys, DBSIZE may not
	if n := len(keys); err != nil || n != 1200+1+4 {
		t.Fatalf("keys after the rebuild: %d, %v; want the 1200 homes, the new one and 4 directory keys (members, nodes, generation, proof)", n, err)
	}
}

// TestANewClusterCreatesVaultsAtOnce: nodes that never saw a directory
// and hold no vault start one and create vaults at once (a first start is
// not a loss); a node that held vaults, or had seen the directory, and
// finds none waits a lease, and says so to the newcomers in Redis.
func TestANewClusterCreatesVaultsAtOnce(t *testing.T) {
	srv := redistest.Start(t)
	rdb := dial(t, srv.URL())
	dir := t.TempDir()
	lease := 2 * time.Second
	start := func(node string, held *heldSet) *Directory {
		if held == nil {
			held = &heldSet{m: map[string]uint64{}}
		}
		d := newDir(t, rdb, DirectoryConfig{Node: node, Addr: "127.0.0.1:1", Lease: lease, Logger: zerolog.Nop(),
			PeersFile: filepath.Join(dir, node+".json"), Held: held.get})
		d.Start(context.Background())
		t.Cleanup(d.Close)
		return d
	}
	began := time.Now()
	a, b := start("node-a", nil), start("node-b", nil)
	waitFor(t, "both members", func() bool { return len(a.Members()) == 2 && len(b.Members()) == 2 })
	if err := a.Claim(context.Background(), vaultN(1)); err != nil {
		t.Fatalf("a new cluster refused a new vault: %v", err)
	}
	if err := b.Claim(context.Background(), vaultN(2)); err != nil {
		t.Fatalf("a new cluster refused a new vault on its second node: %v", err)
	}
	if took := time.Since(began); took >= lease {
		t.Fatalf("the first vaults took %v, a lease (%v) or more", took, lease)
	}
	if got := testutil.ToFloat64(a.m.Rebuilds) + testutil.ToFloat64(b.m.Rebuilds); got != 0 {
		t.Fatalf("a first start counted as %v rebuilds", got)
	}

	// Redis loses everything; a brand-new node starts the directory again
	// before the others notice. Node a, holding a vault, finds it lost and
	// marks it; the newcomer then refuses new vaults too.
	a.Close()
	b.Close()
	srv.Restart()
	newcomer := start("node-new", nil)
	waitFor(t, "the newcomer settled", newcomer.Settled)
	a = start("node-a", &heldSet{m: map[string]uint64{idOf(vaultN(1)): 1}})
	waitFor(t, "node-a found the loss", func() bool { return errors.Is(a.Claim(context.Background(), vaultN(3)), ErrRebuilding) })
	if err := newcomer.Claim(context.Background(), vaultN(4)); !errors.Is(err, ErrRebuilding) {
		t.Fatalf("a newcomer created a vault while another node rebuilt the directory: %v", err)
	}
	if h, ok, err := newcomer.Lookup(context.Background(), vaultN(1)); err != nil || !ok || h.Node != "node-a" {
		t.Fatalf("node-a's home after its rebuild: %v %v %v", h, ok, err)
	}
	// Node-a awaits node-b, which it saw before the loss; so does the
	// newcomer, which never knew node-b, for as long as node-a does.
	time.Sleep(lease + lease/2)
	if err := newcomer.Claim(context.Background(), vaultN(4)); !errors.Is(err, ErrRebuilding) {
		t.Fatalf("a newcomer created a vault while node-a awaits node-b: %v", err)
	}
	start("node-b", nil)
	waitFor(t, "claims once node-b is back", func() bool { return newcomer.Claim(context.Background(), vaultN(4)) == nil })
}

func TestRegisterKeepsTheNewerCopy(t *testing.T) {
	srv := redistest.Start(t)
	rdb := dial(t, srv.URL())
	vault := vaultN(7)
	a := startDirectory(t, rdb, "node-a", time.Second, nil)
	if err := a.Claim(context.Background(), vault); err != nil {
		t.Fatal(err)
	}
	// Another node finds a copy of the same vault at the same epoch (a
	// data directory copied by hand): the directory keeps node-a.
	stale := &heldSet{m: map[string]uint64{idOf(vault): 1}}
	b := startDirectory(t, rdb, "node-b", time.Second, stale)
	if h, _, _ := b.Lookup(context.Background(), vault); h.Node != "node-a" {
		t.Fatalf("home: %v", h)
	}
	if testutil.ToFloat64(b.m.Conflicts) != 1 {
		t.Fatal("conflict not counted")
	}
	// A copy at a higher epoch (a vault moved there) takes the home.
	newer := &heldSet{m: map[string]uint64{idOf(vault): 2}}
	startDirectory(t, rdb, "node-c", time.Second, newer)
	if h, _, _ := a.Lookup(context.Background(), vault); h != (Home{Node: "node-c", Epoch: 2}) {
		t.Fatalf("home: %v", h)
	}
}

func TestDirectoryOnRedisCluster(t *testing.T) {
	rc := redistest.StartCluster(t, 3)
	rdb := dial(t, rc.URL())
	if _, ok := rdb.(*redis.ClusterClient); !ok {
		t.Fatalf("Dial(%s) gave a %T, want a cluster client", rc.URL(), rdb)
	}
	held := &heldSet{m: map[string]uint64{}}
	for i := 0; i < 600; i++ {
		held.m[idOf(vaultN(100+i))] = 1
	}
	a := startDirectory(t, rdb, "node-a", 2*time.Second, held)
	b := startDirectory(t, rdb, "node-b", 2*time.Second, nil)
	waitFor(t, "membership on the cluster", func() bool { return len(a.Members()) == 2 && len(b.Members()) == 2 })
	for i := 0; i < 600; i += 97 {
		v := vaultN(100 + i)
		if h, ok, err := b.Lookup(context.Background(), v); err != nil || !ok || h.Node != "node-a" {
			t.Fatalf("home of %s: %v %v %v", v.Hex(), h, ok, err)
		}
	}
	// Claims race on the cluster as on one server.
	for v := 0; v < 20; v++ {
		vault := vaultN(9000 + v)
		var wg sync.WaitGroup
		var wins sync.Map
		for _, d := range []*Directory{a, b} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if d.Claim(context.Background(), vault) == nil {
					wins.Store(d.Node(), true)
				}
			}()
		}
		wg.Wait()
		n := 0
		wins.Range(func(any, any) bool { n++; return true })
		if n != 1 {
			t.Fatalf("vault %d claimed by %d nodes", v, n)
		}
	}
	// The homes are spread over every shard.
	cc := rdb.(*redis.ClusterClient)
	var mu sync.Mutex
	var sizes []int64
	err := cc.ForEachMaster(context.Background(), func(ctx context.Context, c *redis.Client) error {
		n, err := c.DBSize(ctx).Result()
		mu.Lock()
		sizes = append(sizes, n)
		mu.Unlock()
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range sizes {
		if n < 100 {
			t.Fatalf("keys per shard: %v; want the homes spread over all three", sizes)
		}
	}
	t.Logf("keys per shard: %v", sizes)
}

func newDir(t *testing.T, rdb redis.UniversalClient, cfg DirectoryConfig) *Directory {
	t.Helper()
	d, err := NewDirectory(rdb, cfg)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

// TestDirectoryAwaitsNodesAfterALoss: Redis loses the directory while a
// node that holds vaults is down. No vault is created until that node is
// back (its homes written again), since one of its vaults could otherwise
// be created afresh elsewhere; a node that drained and left is not
// awaited, and one gone for good is forgotten by hand.
func TestDirectoryAwaitsNodesAfterALoss(t *testing.T) {
	srv := redistest.Start(t)
	rdb := dial(t, srv.URL())
	dir := t.TempDir()
	lease := 500 * time.Millisecond
	start := func(node string) *Directory {
		d := newDir(t, rdb, DirectoryConfig{Node: node, Addr: "127.0.0.1:1", Lease: lease, Logger: zerolog.Nop(),
			PeersFile: filepath.Join(dir, node+".json"), Held: func() map[string]uint64 { return nil }})
		d.Start(context.Background())
		return d
	}
	a, b, c, gone := start("node-a"), start("node-b"), start("node-c"), start("node-gone")
	defer a.Close()
	waitFor(t, "every node seen", func() bool { return len(a.Members()) == 4 && a.Settled() })
	c.SetDraining(context.Background(), true)
	c.Close() // drained and left
	b.Close() // down, with its vaults on its disk
	gone.Close()
	seen := func(d *Directory, id string) bool {
		d.mu.Lock()
		defer d.mu.Unlock()
		_, ok := d.book.Seen[id]
		return ok
	}
	waitFor(t, "node-c forgotten", func() bool { return !seen(a, "node-c") })

	srv.Restart() // empty
	fresh := vaultN(4242)
	waitFor(t, "the loss seen", func() bool {
		var aw *AwaitingError
		return errors.As(a.Claim(context.Background(), fresh), &aw) && len(aw.Nodes) == 2 && aw.Nodes[0] == "node-b" && aw.Nodes[1] == "node-gone"
	})
	time.Sleep(3 * lease)
	var aw *AwaitingError
	if err := a.Claim(context.Background(), fresh); !errors.As(err, &aw) {
		t.Fatalf("claim while node-b is down after the loss: %v", err)
	}
	b = start("node-b") // back: its homes are written again
	defer b.Close()
	if !a.Forget("node-gone") {
		t.Fatal("node-gone was not known")
	}
	waitFor(t, "claims once node-b is back", func() bool { return a.Claim(context.Background(), fresh) == nil })
	// The peers survive a restart of the node.
	a.Close()
	again := start("node-a")
	defer again.Close()
	again.mu.Lock()
	gen := again.book.Generation
	again.mu.Unlock()
	if !seen(again, "node-b") || gen == "" {
		t.Fatal("the peers and the generation were not kept across a restart")
	}
}
