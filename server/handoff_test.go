package main

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/ethereum/go-ethereum/common"
	"zombiezen.com/go/sqlite"
	"zombiezen.com/go/sqlite/sqlitex"

	"github.com/spells-dev/spells/chain"
	"github.com/spells-dev/spells/cluster"
	"github.com/spells-dev/spells/cluster/redistest"
	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/protocol/client"
)

const testAdminToken = "admin-test-token"

// resumeOn resumes s through node tn from the version its mirror holds,
// retrying while the vault is moving (or its new node not reachable yet).
func resumeOn(t *testing.T, tn *testNode, s *session) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		c := tn.dial(t)
		err := c.Resume(ctxT(t), s.s, s.mirror.Version)
		if err == nil {
			s.c = c
			return
		}
		c.CloseNow()
		pe := protocol.AsError(err)
		if pe == nil || !protocol.Retryable(pe.Code) || time.Now().After(deadline) {
			t.Fatalf("resume on %s: %v", tn.opts.Node, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (tn *testNode) drain(t *testing.T) cluster.DrainResult {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, "http://"+tn.addr+"/v1/admin/drain", nil)
	req.Header.Set("Authorization", "Bearer "+testAdminToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	var res cluster.DrainResult
	if err := json.Unmarshal(body, &res); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("drain: %d %s", resp.StatusCode, body)
	}
	return res
}

// movedMark reads a vault file's move columns.
func movedMark(t *testing.T, p string) (to string, epoch int64, moved bool) {
	t.Helper()
	conn, err := sqlite.OpenConn("file:"+p+"?mode=ro", sqlite.OpenReadOnly|sqlite.OpenURI)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	err = sqlitex.Execute(conn, "SELECT move_to, epoch, moved FROM vault WHERE id = 1;", &sqlitex.ExecOptions{
		ResultFunc: func(s *sqlite.Stmt) error {
			to, epoch, moved = s.ColumnText(0), s.ColumnInt64(1), s.ColumnInt64(2) != 0
			return nil
		}})
	if err != nil {
		t.Fatal(err)
	}
	return to, epoch, moved
}

func vaultPath(tn *testNode, w *client.Wallet) string {
	id := strings.ToLower(w.Address().Hex())
	return filepath.Join(tn.opts.DataDir, "vaults", id[2:4], id+".db")
}

// TestDrainHandsVaultsOver: node B is drained while dashboards are
// connected to its vaults (on B itself and through A) and signals are
// flowing. Every vault moves to another node, each dashboard is told to
// reconnect and resumes there from its version with no diff lost or
// repeated (the mirror refuses gaps and repeats), the old files are
// tombstones, and the directory names the new homes at epoch 2.
func TestDrainHandsVaultsOver(t *testing.T) {
	tc := startCluster(t, 3)
	a, b, c := tc.nodes[0], tc.nodes[1], tc.nodes[2]
	spec := dip(100)
	spec.Condition.Signal = "DRAIN/X"
	var sessions []*session
	var wallets []*client.Wallet
	for i := 0; i < 6; i++ {
		w := tc.walletPlacedOn(t, 1)
		entry := b
		if i%2 == 1 {
			entry = a // forwarded to B
		}
		s := entry.signIn(t, w)
		s.create(t, spec)
		sessions, wallets = append(sessions, s), append(wallets, w)
	}

	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // signals flowing, published on C
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			v := 150.0
			if i%2 == 1 {
				v = 50
			}
			c.mustPublish(t, "DRAIN/X", v)
		}
	}()
	// Let some firings happen before the drain.
	sessions[0].until(t, "a firing before the drain", isFiring)

	res := b.drain(t)
	close(stop)
	wg.Wait()
	if res.Moved != 6 || res.Failed != 0 || res.Left != 0 {
		t.Fatalf("drain: %+v", res)
	}
	// Every dashboard is told its vault moved, and resumes on another
	// node from its version.
	for i, s := range sessions {
		var closed error
		for closed == nil {
			f, err := s.c.Next(ctxT(t))
			if err != nil {
				closed = err
				break
			}
			if err := s.mirror.Apply(f); err != nil {
				t.Fatalf("dashboard %d before the move: %v", i, err)
			}
		}
		if websocket.CloseStatus(closed) != protocol.CloseVaultMoved {
			t.Fatalf("dashboard %d closed with %v, want %d", i, closed, protocol.CloseVaultMoved)
		}
		resumeOn(t, a, s)
		// A command through the resumed session lands on the new home.
		if _, err := s.cmd(t, protocol.OpTriggerCreate, spec); err != nil {
			t.Fatalf("dashboard %d after the move: %v", i, err)
		}
	}
	c.mustPublish(t, "DRAIN/X", 150)
	c.mustPublish(t, "DRAIN/X", 50)
	for i, w := range wallets {
		sessions[i].until(t, "a firing after the move", isFiring)
		home, ok, err := a.n.cluster.dir.Lookup(ctxT(t), w.Address())
		if err != nil || !ok || home.Epoch != 2 || home.Node == "node-b" {
			t.Fatalf("vault %d home: %v %v %v", i, home, ok, err)
		}
		to, epoch, moved := movedMark(t, vaultPath(b, w))
		if !moved || to != home.Node || epoch != 1 {
			t.Fatalf("vault %d tombstone on B: to %q epoch %d moved %v", i, to, epoch, moved)
		}
		var dest *testNode
		for _, tn := range tc.nodes {
			if tn.opts.Node == home.Node {
				dest = tn
			}
		}
		if to, epoch, moved := movedMark(t, vaultPath(dest, w)); moved || to != "" || epoch != 2 {
			t.Fatalf("vault %d on its new node: to %q epoch %d moved %v", i, to, epoch, moved)
		}
		if _, err := os.Stat(vaultPath(dest, w) + ".incoming"); !os.IsNotExist(err) {
			t.Fatalf("vault %d: the received file is still there", i)
		}
	}
	if held := b.n.mgr.Held(); len(held) != 0 {
		t.Fatalf("node B still holds %v", held)
	}
	// A sign-in on B for a moved vault reaches its new home.
	s := b.signIn(t, wallets[0])
	if _, err := s.cmd(t, protocol.OpTriggerCreate, spec); err != nil {
		t.Fatal(err)
	}
	// A new vault is never placed on the drained node.
	for i := 0; i < 5; i++ {
		w, _ := client.NewWallet()
		b.signIn(t, w)
		if vaultFileOn(b, w) {
			t.Fatal("a new vault was created on the drained node")
		}
	}
}

// TestHandoffWithAnIntentInFlight: a vault whose intent has a transaction
// in flight is moved while its dashboard is connected and a signal keeps
// firing another of its triggers. The new node watches the transaction to
// confirmed; the session key sent exactly one transaction, the payee is
// paid once, and the dashboard's versions run on without a gap or a
// repeat. Node A hosts the dev chain; B and C reach
// it over JSON-RPC.
func TestHandoffWithAnIntentInFlight(t *testing.T) {
	r := redistest.Start(t)
	addrs, domains := clusterAddrs(t, 3)
	opts := func(i int) Options {
		o := testOptions(t)
		o.Listen, o.SIWEDomains, o.Node = addrs[i], domains, "node-"+string(rune('a'+i))
		o.Redis, o.ClusterSecret, o.ClusterLease, o.AdminToken, o.MasterKey = r.URL(), testClusterSecret, time.Second, testAdminToken, testMasterKey
		o.ChainID, o.ChainPoll, o.Confirmations, o.FeeBumpAfter = 0, 100*time.Millisecond, 4, 5*time.Second
		return o
	}
	oa := opts(0)
	oa.ChainRPC, oa.DevChainRPC, oa.DevChainBlockInterval = chainDev, "127.0.0.1:0", time.Second
	a := startNode(t, oa, nil)
	_, info := getChainInfo(t, a)
	deployment := filepath.Join(t.TempDir(), "deployment.json")
	raw, _ := json.Marshal(info)
	if err := os.WriteFile(deployment, raw, 0o600); err != nil {
		t.Fatal(err)
	}
	tc := &testCluster{redis: r, nodes: []*testNode{a}}
	for i := 1; i < 3; i++ {
		o := opts(i)
		o.ChainRPC, o.ChainDeployment = info.RPC, deployment
		tc.nodes = append(tc.nodes, startNode(t, o, nil))
	}
	for _, tn := range tc.nodes {
		waitFor(t, "every node in the directory", func() bool { return len(tn.n.cluster.dir.Members()) == 3 && tn.n.cluster.dir.Settled() })
	}
	b := tc.nodes[1]
	w := tc.walletPlacedOn(t, 1)
	s := b.signIn(t, w)
	// B runs no chain: it asks A's faucet, over the node link, to fund the
	// new vault (grantTransfer waits for the funds).
	key := common.HexToAddress(s.mirror.Account.SessionKey)
	c := a.n.chain.client
	ctx := context.Background()
	g := grantTransfer(t, c, info, s, "MOVE/TX")
	usd, payee := g.usd, g.payee
	transfer, _ := s.create(t, g.spec)
	flow := dip(100)
	flow.Condition.Signal = "MOVE/FLOW"
	flow.Action = protocol.Action{Kind: "notify"}
	s.alertsTo(t, newWebhook(t).url)
	s.create(t, flow)
	b.mustPublish(t, "MOVE/TX", 15)
	b.mustPublish(t, "MOVE/TX", 5)
	s.until(t, "the intent submitted", func(f protocol.ServerFrame) bool { return intentStatus(f) == protocol.IntentSubmitted })

	stop := make(chan struct{})
	flowing := make(chan struct{})
	go func() { // signals flowing through the move, published on C
		defer close(flowing)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-time.After(25 * time.Millisecond):
			}
			tc.nodes[2].mustPublish(t, "MOVE/FLOW", map[bool]float64{true: 150, false: 50}[i%2 == 0])
		}
	}()
	time.Sleep(200 * time.Millisecond)
	res := b.drain(t)
	time.Sleep(200 * time.Millisecond)
	close(stop)
	<-flowing
	if res.Moved != 1 || res.Left != 0 {
		t.Fatalf("drain: %+v", res)
	}
	for {
		f, err := s.c.Next(ctxT(t))
		if err != nil {
			if websocket.CloseStatus(err) != protocol.CloseVaultMoved {
				t.Fatalf("dashboard closed with %v", err)
			}
			break
		}
		if err := s.mirror.Apply(f); err != nil {
			t.Fatal(err)
		}
	}
	status := func() string {
		for _, in := range s.mirror.Intents {
			if in.TriggerID == transfer {
				return in.Status
			}
		}
		return ""
	}
	if st := status(); st == protocol.IntentConfirmed || st == protocol.IntentFinal {
		t.Fatal("the intent was confirmed before the move: nothing was in flight")
	}
	resumeOn(t, b, s) // through B, forwarded to the vault's new node
	deadline := time.Now().Add(60 * time.Second)
	for {
		st := status()
		if st == protocol.IntentConfirmed || st == protocol.IntentFinal {
			break
		}
		if st == protocol.IntentFailed || st == protocol.IntentReverted || st == protocol.IntentRefused || time.Now().After(deadline) {
			t.Fatalf("after the move the intent is %q", st)
		}
		s.until(t, "an intent change", func(f protocol.ServerFrame) bool { return intentStatus(f) != "" })
	}
	if n, _ := c.NonceAt(ctx, key, nil); n != 1 {
		t.Fatalf("the session key sent %d transactions, want 1", n)
	}
	if got := tokenBalance(t, c, usd, payee); got.Cmp(chain.Units(1)) != 0 {
		t.Fatalf("the payee holds %s, want 1 dUSD", got)
	}
	home, _, _ := a.n.cluster.dir.Lookup(ctxT(t), w.Address())
	if home.Node == "node-b" || home.Epoch != 2 {
		t.Fatalf("home after the move: %v", home)
	}
}
