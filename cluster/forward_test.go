package cluster

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/ethereum/go-ethereum/common"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/spells-dev/spells/cluster/redistest"
	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/protocol/client"
)

// forwardedSession starts nodes a and b, b holding w's vault, and signs w
// in through a.
func forwardedSession(t *testing.T) (a, b *testNode, w *client.Wallet, c *client.Conn, s *client.Session) {
	t.Helper()
	rdb := dial(t, redistest.Start(t).URL())
	w, err := client.NewWallet()
	if err != nil {
		t.Fatal(err)
	}
	a = startNode(t, rdb, "node-a", nodeOpts{})
	b = startNode(t, rdb, "node-b", nodeOpts{held: map[common.Address]uint64{w.Address(): 3}})
	knows(t, a, b)
	ctx := testCtx(t)
	if c, err = client.Dial(ctx, a.wsURL, nil); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseNow)
	if s, err = c.SignIn(ctx, w, client.SignInParams{}, nil); err != nil {
		t.Fatalf("sign-in through node a: %v", err)
	}
	return a, b, w, c, s
}

// linkedNodes starts nodes a and b, and the link b dials to a.
func linkedNodes(t *testing.T) (a, b *testNode, lk *link) {
	t.Helper()
	rdb := dial(t, redistest.Start(t).URL())
	a = startNode(t, rdb, "node-a", nodeOpts{})
	b = startNode(t, rdb, "node-b", nodeOpts{})
	knows(t, a, b)
	lk, err := b.links.link(testCtx(t), "node-a")
	if err != nil {
		t.Fatal(err)
	}
	return a, b, lk
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// TestASessionReachesItsVaultsNode: a client of node a whose vault lives
// on node b is served by b's vaults through the link, with a's nonce; a's
// own vaults never see it. When b's links close, the client is told to
// reconnect (4004).
func TestASessionReachesItsVaultsNode(t *testing.T) {
	a, b, w, c, s := forwardedSession(t)
	ctx := testCtx(t)
	for i := 0; i < 3; i++ {
		if _, err := c.Command(ctx, s, protocol.OpTriggerList, struct{}{}); err != nil {
			t.Fatalf("command %d: %v", i+1, err)
		}
	}
	if got := b.echo.vaults(); len(got) != 1 || got[0] != w.Address() {
		t.Fatalf("node b served %v", got)
	}
	if got := a.echo.vaults(); len(got) != 0 {
		t.Fatalf("node a's own vaults served %v", got)
	}
	if got := testutil.ToFloat64(a.links.m.StreamsOpen); got != 1 {
		t.Fatalf("streams a opened: %g", got)
	}

	b.links.Close()
	for {
		if _, err := c.Next(ctx); err != nil {
			break
		}
	}
	if code := websocket.CloseStatus(c.Err()); code != protocol.CloseNodeLink {
		t.Fatalf("closed with %d, want %d", code, protocol.CloseNodeLink)
	}
}

// TestAVaultHeldHereIsNotForwarded: a vault whose file this node holds is
// served here, even when the directory names another node.
func TestAVaultHeldHereIsNotForwarded(t *testing.T) {
	rdb := dial(t, redistest.Start(t).URL())
	w, _ := client.NewWallet()
	a := startNode(t, rdb, "node-a", nodeOpts{held: map[common.Address]uint64{w.Address(): 1}})
	fw, err := a.links.Route(testCtx(t), w.Address())
	if err != nil || fw != nil {
		t.Fatalf("route of a vault held here: %v, %v", fw, err)
	}
}

// TestAMalformedRecordEndsOnlyTheLink: a peer that sends what is not a
// record loses its link; the node goes on, and the next route dials a new
// one.
func TestAMalformedRecordEndsOnlyTheLink(t *testing.T) {
	a, b, lk := linkedNodes(t)
	ctx := testCtx(t)
	if err := lk.ws.Write(ctx, websocket.MessageText, []byte("hello?")); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "node a to drop the link", func() bool { return testutil.ToFloat64(a.links.m.LinksDropped) == 1 })
	waitFor(t, "node b to see it dropped", func() bool { return testutil.ToFloat64(b.links.m.LinksDropped) == 1 })
	again, err := b.links.link(ctx, "node-a")
	if err != nil || again == lk {
		t.Fatalf("a new link after the old one fell: %v", err)
	}
}

// TestAStreamOfTheWrongParityIsRefused: stream ids are odd on the node
// that dialed and even on the other; a peer opening one of the other's
// ids gets the stream closed, so it cannot take over a stream.
func TestAStreamOfTheWrongParityIsRefused(t *testing.T) {
	_, _, lk := linkedNodes(t)
	ctx := testCtx(t)
	wrong := lk.next + 1 // the other node's parity
	got := &recordedDown{closed: make(chan websocket.StatusCode, 1)}
	lk.mu.Lock()
	lk.streams[wrong] = &stream{lk: lk, id: wrong, down: got}
	lk.mu.Unlock()
	if err := lk.send(recOpen, wrong, []byte(`{"nonce":"n","remote":"x"}`)); err != nil {
		t.Fatal(err)
	}
	select {
	case code := <-got.closed:
		if code != websocket.StatusPolicyViolation {
			t.Fatalf("closed with %d, want 1008", code)
		}
	case <-ctx.Done():
		t.Fatal("the stream was not refused")
	}
}

type recordedDown struct{ closed chan websocket.StatusCode }

func (d *recordedDown) Deliver([]byte) {}
func (d *recordedDown) Bound()         {}
func (d *recordedDown) Closed(code websocket.StatusCode, reason string) {
	d.closed <- code
}

// TestANewVaultsKeyIsFundedByTheFaucetNode: a node without the dev chain
// asks the member that runs its faucet, over the link; a request for a
// chain nobody's faucet serves reaches no one.
func TestANewVaultsKeyIsFundedByTheFaucetNode(t *testing.T) {
	rdb := dial(t, redistest.Start(t).URL())
	funded := make(chan [2]common.Address, 2)
	a := startNode(t, rdb, "node-a", nodeOpts{faucet: 1337, fund: func(owner, key common.Address) { funded <- [2]common.Address{owner, key} }})
	b := startNode(t, rdb, "node-b", nodeOpts{})
	knows(t, a, b)
	owner, key := common.HexToAddress("0x1111"), common.HexToAddress("0x2222")
	b.links.Fund(1, owner, key) // no faucet on chain 1
	b.links.Fund(1337, owner, key)
	select {
	case got := <-funded:
		if got != [2]common.Address{owner, key} {
			t.Fatalf("funded %v", got)
		}
	case <-testCtx(t).Done():
		t.Fatal("the faucet node was never asked")
	}
	// The links wait for their requests when they close: nothing else
	// arrives.
	b.links.Close()
	if len(funded) != 0 {
		t.Fatalf("a request for another chain was served: %v", <-funded)
	}
}

// TestADeadPeerIsNotDialedAtEverySignIn: a peer that refused a dial is
// backed off: the next route to it answers at once, without a dial, and
// says to retry.
func TestADeadPeerIsNotDialedAtEverySignIn(t *testing.T) {
	rdb := dial(t, redistest.Start(t).URL())
	a := startNode(t, rdb, "node-a", nodeOpts{})
	// node-z is a member whose address refuses connections.
	z := newDir(t, rdb, DirectoryConfig{Node: "node-z", Addr: "127.0.0.1:1", Lease: 2 * time.Second, Logger: a.dir.log})
	z.Start(context.Background())
	t.Cleanup(z.Close)
	knows(t, a)
	waitFor(t, "node-z in a's members", func() bool { _, ok := a.dir.Member("node-z"); return ok })
	ctx := testCtx(t)
	for i := 0; i < 3; i++ {
		_, err := a.links.link(ctx, "node-z")
		if pe := protocol.AsError(err); pe == nil || pe.Code != protocol.CodeNodeUnreachable || !protocol.Retryable(pe.Code) {
			t.Fatalf("attempt %d: %v", i+1, err)
		}
	}
	if got := testutil.ToFloat64(a.links.m.Dials.WithLabelValues("failed")); got != 1 {
		t.Fatalf("%g dials failed, want 1 (the others backed off)", got)
	}
}

// TestRoutingWithoutRedis: with Redis down, a vault held here is still
// served here, and one that is not gets a retryable node_unreachable that
// names the directory.
func TestRoutingWithoutRedis(t *testing.T) {
	srv := redistest.Start(t)
	rdb := dial(t, srv.URL())
	held := vaultN(20)
	a := startNode(t, rdb, "node-a", nodeOpts{held: map[common.Address]uint64{held: 1}})
	srv.Stop()
	ctx := testCtx(t)
	if fw, err := a.links.Route(ctx, held); err != nil || fw != nil {
		t.Fatalf("a vault held here: %v %v", fw, err)
	}
	_, err := a.links.Route(ctx, vaultN(21))
	if pe := protocol.AsError(err); pe == nil || pe.Code != protocol.CodeNodeUnreachable || !strings.Contains(pe.Message, "Redis") {
		t.Fatalf("a vault elsewhere, Redis down: %v", err)
	}
}

func TestCloseRecordPayload(t *testing.T) {
	long := strings.Repeat("é", 100) // 200 bytes
	p := closePayload(4004, long)
	if len(p) != 2+120 || p[0] != 0x0f || p[1] != 0xa4 {
		t.Fatalf("payload % x…, %d bytes", p[:2], len(p))
	}
	if p := closePayload(1000, ""); len(p) != 2 {
		t.Fatalf("an empty reason: %d bytes", len(p))
	}
}

// TestTheVaultsNodeAnswersAForwardedSocket: what the vault's node refuses
// on a forwarded session (a binary frame, a command not in order) comes
// back through the link as the socket's own error, and the session goes
// on.
func TestTheVaultsNodeAnswersAForwardedSocket(t *testing.T) {
	a, _, _, c, s := forwardedSession(t)
	ctx := testCtx(t)
	if err := c.SendRaw(ctx, websocket.MessageBinary, []byte("\x00\x01")); err != nil {
		t.Fatal(err)
	}
	for {
		f, err := c.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if f.Type == protocol.TypeError {
			if f.Code != protocol.CodeBadFrame {
				t.Fatalf("a binary frame: %s %q", f.Code, f.Message)
			}
			break
		}
	}
	if _, err := c.Command(ctx, s, protocol.OpTriggerList, struct{}{}); err != nil {
		t.Fatalf("a command after the refusal: %v", err)
	}
	if got := a.echo.vaults(); len(got) != 0 {
		t.Fatalf("node a's own vaults served %v", got)
	}
}
