package cluster

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/spells-dev/spells/cluster/redistest"
)

// TestADrainMovesEveryVaultWithItsBytes: every vault of the draining node
// arrives whole at the node rendezvous hashing picks, one epoch later, and
// the directory names that node.
func TestADrainMovesEveryVaultWithItsBytes(t *testing.T) {
	rdb := dial(t, redistest.Start(t).URL())
	held := map[common.Address]uint64{}
	for i := 1; i <= 9; i++ {
		held[vaultN(1000+i)] = uint64(i)
	}
	a := startNode(t, rdb, "node-a", nodeOpts{held: held})
	b := startNode(t, rdb, "node-b", nodeOpts{})
	c := startNode(t, rdb, "node-c", nodeOpts{})
	knows(t, a, b, c)
	want := map[common.Address][]byte{}
	for v := range held {
		f, _ := a.files.file(v)
		want[v] = f.data
	}

	res, err := a.handoff.Drain(testCtx(t))
	if err != nil || res.Moved != len(held) || res.Failed != 0 || res.Left != 0 {
		t.Fatalf("drain: %+v, %v", res, err)
	}
	for v, epoch := range held {
		home, ok, err := a.dir.Lookup(testCtx(t), v)
		if err != nil || !ok || home.Epoch != epoch+1 || home.Node == "node-a" {
			t.Fatalf("%s: home %+v %v %v, want another node at epoch %d", v.Hex(), home, ok, err, epoch+1)
		}
		to := b
		if home.Node == "node-c" {
			to = c
		}
		f, ok := to.files.file(v)
		if !ok || f.epoch != epoch+1 || !bytes.Equal(f.data, want[v]) {
			t.Fatalf("%s on %s: %v epoch %d, want its bytes at epoch %d", v.Hex(), home.Node, ok, f.epoch, epoch+1)
		}
		if a.files.holds(v) {
			t.Fatalf("%s is still held by the drained node", v.Hex())
		}
	}
	if got := testutil.ToFloat64(a.handoff.m.Moves.WithLabelValues("moved")); got != float64(len(held)) {
		t.Fatalf("moves counted: %g", got)
	}
}

// TestAMoveTheReceiverCannotTakeIsAborted: a receiver with another
// key-encryption key, or a copy that does not match its checksum, refuses
// the vault; it stays where it was, served, at its epoch, and nothing is
// left on the receiver.
func TestAMoveTheReceiverCannotTakeIsAborted(t *testing.T) {
	for _, tc := range []struct {
		name    string
		kek     string
		corrupt bool
		says    string
	}{
		{"another key-encryption key", "kek-2", false, "key-encryption key"},
		{"a corrupted copy", "", true, "checksum"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rdb := dial(t, redistest.Start(t).URL())
			v := vaultN(7)
			a := startNode(t, rdb, "node-a", nodeOpts{held: map[common.Address]uint64{v: 4}})
			b := startNode(t, rdb, "node-b", nodeOpts{kek: tc.kek})
			knows(t, a, b)
			a.files.corrupt = tc.corrupt
			err := a.handoff.Move(testCtx(t), v, "node-b")
			if err == nil || !strings.Contains(err.Error(), tc.says) {
				t.Fatalf("move: %v, want a refusal naming the %s", err, tc.says)
			}
			if held, _, aborted := a.files.counts(); held != 1 || aborted != 1 {
				t.Fatalf("sender: %d held, %d aborted", held, aborted)
			}
			if held, incoming, _ := b.files.counts(); held != 0 || incoming != 0 {
				t.Fatalf("receiver: %d held, %d incoming", held, incoming)
			}
			home, ok, _ := a.dir.Lookup(testCtx(t), v)
			if !ok || home != (Home{Node: "node-a", Epoch: 4}) {
				t.Fatalf("home %+v, want node-a at 4", home)
			}
		})
	}
}

// TestTheDirectoryDecidesWhatIsInstalled: a commit for an epoch the
// directory does not name this node for is refused, and an offer larger
// than any vault is refused before its bytes arrive.
func TestTheDirectoryDecidesWhatIsInstalled(t *testing.T) {
	rdb := dial(t, redistest.Start(t).URL())
	v := vaultN(8)
	a := startNode(t, rdb, "node-a", nodeOpts{held: map[common.Address]uint64{v: 1}})
	b := startNode(t, rdb, "node-b", nodeOpts{})
	knows(t, a, b)
	ctx := testCtx(t)
	lk, err := a.links.link(ctx, "node-b")
	if err != nil {
		t.Fatal(err)
	}
	data := []byte("a vault file")
	if _, err := lk.call(ctx, recMoveOffer, moveOffer{KEK: "kek-1", Vault: v.Hex(), Epoch: 2, Sum: sumHex(data), Size: len(data)}, data); err != nil {
		t.Fatalf("offer: %v", err)
	}
	_, err = lk.call(ctx, recMoveCommit, moveCommit{Vault: v.Hex(), Epoch: 2}, nil)
	if err == nil || !strings.Contains(err.Error(), "does not name this node") {
		t.Fatalf("a commit the directory does not back: %v", err)
	}
	if held, incoming, _ := b.files.counts(); held != 0 || incoming != 1 {
		t.Fatalf("receiver: %d held, %d incoming; want the copy kept, not installed", held, incoming)
	}
	_, err = lk.call(ctx, recMoveOffer, moveOffer{KEK: "kek-1", Vault: vaultN(9).Hex(), Epoch: 2, Sum: sumHex(nil), Size: maxMoveSize + 1}, nil)
	if err == nil || !strings.Contains(err.Error(), "oversized") {
		t.Fatalf("an oversized offer: %v", err)
	}
}

// TestSettlingFinishesAnInterruptedMove: a sender that stopped after the
// directory's switch finds its pending move done (its copy becomes a
// tombstone), and the receiver installs the copy the directory names it
// for.
func TestSettlingFinishesAnInterruptedMove(t *testing.T) {
	rdb := dial(t, redistest.Start(t).URL())
	v, w := vaultN(10), vaultN(11)
	a := startNode(t, rdb, "node-a", nodeOpts{held: map[common.Address]uint64{v: 5, w: 2}})
	b := startNode(t, rdb, "node-b", nodeOpts{})
	knows(t, a, b)
	ctx := testCtx(t)
	// v: switched to b before a stopped; w: a stopped before the switch.
	if err := a.dir.Move(ctx, v, Home{Node: "node-a", Epoch: 5}, Home{Node: "node-b", Epoch: 6}, time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	a.files.mu.Lock()
	a.files.pending[idOf(v)] = Move{Vault: v, To: "node-b", Epoch: 6}
	a.files.pending[idOf(w)] = Move{Vault: w, To: "node-b", Epoch: 3}
	a.files.mu.Unlock()
	b.files.mu.Lock()
	b.files.incoming[idOf(v)] = memFile{data: []byte("v"), epoch: 6}
	b.files.mu.Unlock()

	a.handoff.Start()
	b.handoff.Start()
	waitFor(t, "the sender to settle", func() bool {
		return testutil.ToFloat64(a.handoff.m.Settled.WithLabelValues("done")) == 1 &&
			testutil.ToFloat64(a.handoff.m.Settled.WithLabelValues("aborted")) == 1
	})
	waitFor(t, "the receiver to install", func() bool { return b.files.holds(v) })
	if a.files.holds(v) || !a.files.holds(w) {
		t.Fatalf("sender holds v %v (want false), w %v (want true)", a.files.holds(v), a.files.holds(w))
	}
}

func sumHex(data []byte) string {
	s := sha256.Sum256(data)
	return hex.EncodeToString(s[:])
}

// TestADrainWithNowhereToGoMovesNothing.
func TestADrainWithNowhereToGoMovesNothing(t *testing.T) {
	rdb := dial(t, redistest.Start(t).URL())
	a := startNode(t, rdb, "node-a", nodeOpts{held: map[common.Address]uint64{vaultN(30): 1}})
	_, err := a.handoff.Drain(testCtx(t))
	if err == nil || !strings.Contains(err.Error(), "no other live node") {
		t.Fatalf("drain alone: %v", err)
	}
	if held, _, _ := a.files.counts(); held != 1 {
		t.Fatalf("%d vaults held after a drain with nowhere to go", held)
	}
}

// TestMovesInProgressPerLinkAreBounded: a peer offering more moves at
// once than a link takes has the extra ones refused, with a retry.
func TestMovesInProgressPerLinkAreBounded(t *testing.T) {
	rdb := dial(t, redistest.Start(t).URL())
	a := startNode(t, rdb, "node-a", nodeOpts{})
	b := startNode(t, rdb, "node-b", nodeOpts{})
	knows(t, a, b)
	ctx := testCtx(t)
	lk, err := a.links.link(ctx, "node-b")
	if err != nil {
		t.Fatal(err)
	}
	// Offers whose bytes never come: each holds a place on b's side.
	lk.mu.Lock()
	first := lk.next
	lk.next += uint32(4 * moveParallel)
	lk.mu.Unlock()
	for i := 0; i < 2*moveParallel; i++ {
		o, _ := json.Marshal(moveOffer{KEK: "kek-1", Vault: vaultN(40 + i).Hex(), Epoch: 2, Sum: sumHex([]byte("x")), Size: 1})
		if err := lk.send(recMoveOffer, first+uint32(2*i), o); err != nil {
			t.Fatal(err)
		}
	}
	_, err = lk.call(ctx, recMoveOffer, moveOffer{KEK: "kek-1", Vault: vaultN(60).Hex(), Epoch: 2, Sum: sumHex([]byte("x")), Size: 1}, []byte("x"))
	if err == nil || !strings.Contains(err.Error(), "too many moves") {
		t.Fatalf("one move past the bound: %v", err)
	}
}
