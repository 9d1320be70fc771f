package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"

	"github.com/spells-dev/spells/chain"
	"github.com/spells-dev/spells/chain/gethtest"
	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/protocol/client"
	"github.com/spells-dev/spells/vault/rules"
)

// pingEmitter is the runtime code of a contract that, called with a
// uint256 n, emits Ping(uint256 indexed i) for i = 0..n-1 in a loop:
//
//	 0 PUSH1 0 CALLDATALOAD PUSH1 0          stack: n i
//	 5 JUMPDEST DUP2 DUP2 LT ISZERO PUSH1 58 JUMPI   if !(i < n) goto 58
//	13 DUP1 PUSH32 keccak("Ping(uint256)") PUSH1 0 PUSH1 0 LOG2
//	52 PUSH1 1 ADD PUSH1 5 JUMP              i++
//	58 JUMPDEST STOP
//
// and its creation code copies it (60 bytes, from offset 11) and returns it.
func pingEmitter() []byte {
	topic := crypto.Keccak256([]byte("Ping(uint256)"))
	runtime := append(append(hexutil.MustDecode("0x6000356000"+"5b81811015603a57"+"807f"), topic...), hexutil.MustDecode("0x60006000a2"+"600101600556"+"5b00")...)
	create := hexutil.MustDecode(fmt.Sprintf("0x60%02x80600b6000396000f3", len(runtime)))
	return append(create, runtime...)
}

// devSender sends transactions from geth --dev's funded account.
type devSender struct {
	t  *testing.T
	cl *chain.Client
}

// send sends a transaction to to (nil: a creation) with data, waits for
// its receipt and returns it.
func (d devSender) send(to *common.Address, data []byte) *types.Receipt {
	d.t.Helper()
	ctx := context.Background()
	from := crypto.PubkeyToAddress(gethtest.DevKey.PublicKey)
	nonce, err := d.cl.PendingNonceAt(ctx, from)
	if err != nil {
		d.t.Fatal(err)
	}
	head, err := d.cl.HeaderByNumber(ctx, nil)
	if err != nil {
		d.t.Fatal(err)
	}
	tip := big.NewInt(1e9)
	fee := new(big.Int).Add(tip, new(big.Int).Mul(head.BaseFee, big.NewInt(2)))
	signer := types.LatestSignerForChainID(big.NewInt(gethtest.ChainID))
	tx, err := types.SignTx(types.NewTx(&types.DynamicFeeTx{ChainID: big.NewInt(gethtest.ChainID), Nonce: nonce, GasTipCap: tip, GasFeeCap: fee,
		Gas: 8_000_000, To: to, Data: data}), signer, gethtest.DevKey)
	if err != nil {
		d.t.Fatal(err)
	}
	if err := d.cl.SendTransaction(ctx, tx); err != nil {
		d.t.Fatal(err)
	}
	var r *types.Receipt
	waitFor(d.t, "the transaction mined", func() bool {
		r, err = d.cl.TransactionReceipt(ctx, tx.Hash())
		return err == nil
	})
	if r.Status != types.ReceiptStatusSuccessful {
		d.t.Fatalf("transaction %s reverted", tx.Hash())
	}
	return r
}

// ping calls the emitter to emit n Pings in one block, and returns the
// block.
func (d devSender) ping(emitter common.Address, n int) uint64 {
	d.t.Helper()
	return d.send(&emitter, common.LeftPadBytes(big.NewInt(int64(n)).Bytes(), 32)).BlockNumber.Uint64()
}

// gethWithEmitter starts geth --dev with the node's contracts (their
// deployment file) and a Ping emitter.
func gethWithEmitter(t *testing.T) (g *gethtest.Node, deployment string, dev devSender, emitter common.Address) {
	g = gethtest.Start(t)
	info := deployOnGeth(t, g)
	deployment = filepath.Join(t.TempDir(), "deployment.json")
	b, _ := json.Marshal(info)
	if err := os.WriteFile(deployment, b, 0o600); err != nil {
		t.Fatal(err)
	}
	cl, err := chain.Dial(context.Background(), g.URL, gethtest.ChainID, 5e9)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cl.Close)
	dev = devSender{t, cl}
	return g, deployment, dev, dev.send(nil, pingEmitter()).ContractAddress
}

// rpcGate is a TCP proxy in front of geth that can be cut: while down it
// closes every connection, open or new, as an endpoint in an outage does.
type rpcGate struct {
	url   string
	mu    sync.Mutex
	down  bool
	conns map[net.Conn]bool
}

func newRPCGate(t *testing.T, target string) *rpcGate {
	u, _ := url.Parse(target)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g := &rpcGate{url: "http://" + l.Addr().String(), conns: map[net.Conn]bool{}}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		l.Close()
		g.setDown(true)
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", u.Host)
			if err != nil || !g.track(c, up) {
				c.Close()
				if up != nil {
					up.Close()
				}
				continue
			}
			wg.Add(2)
			go func() { defer wg.Done(); io.Copy(up, c); up.Close() }()
			go func() { defer wg.Done(); io.Copy(c, up); c.Close() }()
		}
	}()
	return g
}

// track keeps a connection pair to cut when the gate goes down; false
// while it is down.
func (g *rpcGate) track(c, up net.Conn) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.down {
		return false
	}
	g.conns[c], g.conns[up] = true, true
	return true
}

func (g *rpcGate) setDown(down bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.down = down
	if down {
		for c := range g.conns {
			c.Close()
		}
		clear(g.conns)
	}
}

// fired is how many times trigger id fired, as the owner's mirror shows.
func (s *session) fired(id string) int64 { return s.mirror.Triggers[id].Fires }

// firedAt waits until trigger id fires for log prefix (an event and its
// block, "Ping(0) in block 12 ") and returns how many times it had fired
// then: the firing and its count arrive in one diff, and the vault takes
// logs in chain order, so a count above the logs up to there is a log
// taken twice.
func (s *session) firedAt(t *testing.T, id, prefix string) int64 {
	t.Helper()
	var n int64
	s.mirrorUntil(t, "the firing for "+prefix, func() bool {
		for _, e := range s.mirror.Evaluations {
			if e.TriggerID == id && e.Outcome == protocol.OutcomeFired && strings.HasPrefix(e.Detail, prefix) {
				n = s.fired(id)
				return true
			}
		}
		return false
	})
	return n
}

func pingIn(block uint64) string { return fmt.Sprintf("Ping(0) in block %d ", block) }

// TestEventConditionsAcrossDowntime: a trigger on a contract's event,
// filtered on an indexed argument, fires once per matching log: for the
// logs while the node runs, for the 50 blocks of logs emitted while it was
// stopped (it reads them back from the trigger's cursor when it starts),
// and for those emitted while its RPC endpoint was down; never twice,
// never for a log the filter does not match. A block with thousands of
// matching logs is bounded: a block's first logs are taken, the rest are
// counted, logged and told to the owner.
func TestEventConditionsAcrossDowntime(t *testing.T) {
	g, file, dev, emitter := gethWithEmitter(t)
	gate := newRPCGate(t, g.URL)
	o := testOptions(t)
	o.ChainRPC, o.ChainID, o.ChainDeployment, o.Confirmations, o.ChainPoll = gate.url, 0, file, 1, 100*time.Millisecond
	tn := startNode(t, o, nil)
	s := tn.signIn(t, nil)
	s.alertsTo(t, newWebhook(t).url)
	notify := protocol.Action{Kind: "notify"}
	ping0 := protocol.Condition{Event: &protocol.ChainEvent{Contract: emitter.Hex(), Signature: "Ping(uint256 indexed i)", Topics: []string{"0"}}}
	waitFor(t, "the node's log watcher sees the head", func() bool { return tn.n.logs.Head() > 0 })
	id, _ := s.create(t, protocol.TriggerSpec{Name: "ping 0", Action: notify, Condition: ping0})
	s.mirrorUntil(t, "the trigger", func() bool { _, ok := s.mirror.Triggers[id]; return ok })
	got := s.mirror.Triggers[id].Condition.Event
	if got == nil || got.FromBlock == 0 || got.Key == "" || !strings.HasPrefix(s.mirror.Triggers[id].Condition.Signal, protocol.EventPrefix) {
		t.Fatalf("the stored condition: %+v", s.mirror.Triggers[id].Condition)
	}

	// While the node runs: each call emits Ping(0) and Ping(1); the
	// trigger takes Ping(0) only.
	var blocks []uint64
	for range 5 {
		blocks = append(blocks, dev.ping(emitter, 2))
	}
	if n := s.firedAt(t, id, pingIn(blocks[4])); n != 5 {
		t.Fatalf("fired %d times for 5 logs", n)
	}
	s.alertWith(t, "the alert naming the log", func(a protocol.Alert) bool {
		return a.TriggerID == id && strings.HasPrefix(a.Detail, pingIn(blocks[0])) && a.Status == protocol.AlertDelivered
	})

	// The node stops; 50 blocks of Pings; it starts again and fires for
	// each, once.
	if err := tn.shutdown(); err != nil {
		t.Fatal(err)
	}
	for range 50 {
		blocks = append(blocks, dev.ping(emitter, 2))
	}
	o.Listen = tn.addr
	tn = startNode(t, o, nil)
	s = tn.signIn(t, s.w)
	if n := s.firedAt(t, id, pingIn(blocks[54])); n != 55 {
		t.Fatalf("fired %d times for 55 logs", n)
	}

	// The RPC endpoint goes down for 10 blocks; when it answers again the
	// node reads them.
	gate.setDown(true)
	for range 10 {
		blocks = append(blocks, dev.ping(emitter, 2))
	}
	gate.setDown(false)
	if n := s.firedAt(t, id, pingIn(blocks[64])); n != 65 {
		t.Fatalf("fired %d times for 65 logs", n)
	}

	// Thousands of matching logs in one block: a trigger on every Ping
	// takes the block's first 100 and its owner is told of the rest.
	every := protocol.Condition{Event: &protocol.ChainEvent{Contract: emitter.Hex(), Signature: "Ping(uint256 indexed)"}}
	all, _ := s.create(t, protocol.TriggerSpec{Name: "every ping", Action: notify, Condition: every})
	heavy := dev.ping(emitter, 3000)
	told := fmt.Sprintf("block %d: 2900 more logs matched than the %d a block the node takes", heavy, maxLogsPerBlock)
	s.mirrorUntil(t, "the owner told of the logs past the bound", func() bool {
		for _, e := range s.mirror.Evaluations {
			if e.TriggerID == all && e.Outcome == protocol.OutcomeSkipped && strings.HasPrefix(e.Detail, told) {
				return true
			}
		}
		return false
	})
	if n := s.fired(all); n != maxLogsPerBlock {
		t.Fatalf("the bounded block fired the trigger %d times, want %d", n, maxLogsPerBlock)
	}
	if n := testutil.ToFloat64(tn.n.logs.m.WithLabelValues("skipped")); n != 2900 {
		t.Fatalf("skipped logs counted %v, want 2900", n)
	}
	if n := s.firedAt(t, id, pingIn(heavy)); n != int64(len(blocks))+1 {
		t.Fatalf("fired %d times for %d logs", n, len(blocks)+1)
	}
}

// TestEventsSurviveSIGKILL: the node is killed while a vault takes 600
// logs, each in a savepoint with its cursor; started again, it takes the
// rest: each log fires the trigger once, none twice, none missed.
func TestEventsSurviveSIGKILL(t *testing.T) {
	g, file, dev, emitter := gethWithEmitter(t)
	data := t.TempDir()
	args := []string{"-alerts-allow-private", "-chain-rpc", g.URL, "-chain-id", "0", "-chain-deployment", file, "-confirmations", "1", "-chain-poll", "100ms"}
	p := startProc(t, data, args...)
	w, _ := client.NewWallet()
	s := p.signIn(t, w)
	s.alertsTo(t, newWebhook(t).url)
	every := protocol.Condition{Event: &protocol.ChainEvent{Contract: emitter.Hex(), Signature: "Ping(uint256 indexed i)"}}
	id, _ := s.create(t, protocol.TriggerSpec{Name: "every ping", Action: protocol.Action{Kind: "notify"}, Condition: every})
	s.mirrorUntil(t, "the trigger", func() bool { _, ok := s.mirror.Triggers[id]; return ok })
	var last uint64
	const blocks = 6
	for range blocks {
		last = dev.ping(emitter, maxLogsPerBlock)
	}
	s.mirrorWithin(t, "a few hundred firings", time.Minute, func() bool { return s.fired(id) >= 150 })
	p.kill()

	p = startProc(t, data, args...)
	s = p.signIn(t, w)
	prefix := fmt.Sprintf("Ping(%d) in block %d ", maxLogsPerBlock-1, last)
	var n int64
	// (A minute: under the race detector a vault takes a few dozen logs
	// a second, each with its notify and its alert.)
	s.mirrorWithin(t, "the last log's firing", time.Minute, func() bool {
		for _, e := range s.mirror.Evaluations {
			if e.TriggerID == id && e.Outcome == protocol.OutcomeFired && strings.HasPrefix(e.Detail, prefix) {
				n = s.fired(id)
				return true
			}
		}
		return false
	})
	if n != blocks*maxLogsPerBlock {
		t.Fatalf("fired %d times for %d logs", n, blocks*maxLogsPerBlock)
	}
	// Each firing's notify ends done, those the kill left pending too
	// (they have nothing to execute).
	s.mirrorWithin(t, "every notify done", time.Minute, func() bool {
		for _, in := range s.mirror.Intents {
			if in.TriggerID == id && in.Status != "done" {
				return false
			}
		}
		return true
	})
	for _, in := range s.mirror.Intents {
		if in.Status == "failed" {
			t.Fatalf("a notify intent failed: %+v", in)
		}
	}
	if err := p.stop(syscall.SIGTERM, 20*time.Second); err != nil {
		t.Fatal(err)
	}
}

// fakeLogChain is a chain of logs for the watcher's unit tests: every
// block from 1 to head holds perBlock logs of each contract it names; a
// query matching more than limit logs is refused, as providers do.
type fakeLogChain struct {
	head      uint64
	perBlock  map[common.Address]int
	limit     int
	mu        sync.Mutex
	queried   map[common.Address]int
	refused   int
	failUntil atomic.Bool
	hold      map[common.Address]chan struct{} // a read of one of these waits until it closes
}

func (f *fakeLogChain) HeaderByNumber(context.Context, *big.Int) (*types.Header, error) {
	return &types.Header{Number: new(big.Int).SetUint64(f.head)}, nil
}

func (f *fakeLogChain) FilterLogs(ctx context.Context, q ethereum.FilterQuery) ([]types.Log, error) {
	if f.failUntil.Load() {
		return nil, errors.New("connection refused")
	}
	f.mu.Lock()
	h := f.hold[q.Addresses[0]]
	f.mu.Unlock()
	if h != nil {
		select {
		case <-h:
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	a := q.Addresses[0]
	f.queried[a]++
	n := f.perBlock[a]
	from, to := q.FromBlock.Uint64(), q.ToBlock.Uint64()
	if int(to-from+1)*n > f.limit {
		f.refused++
		return nil, errors.New("query returned more than 10000 results")
	}
	var out []types.Log
	for b := from; b <= to; b++ {
		for i := 0; i < n; i++ {
			out = append(out, types.Log{Address: a, Topics: []common.Hash{q.Topics[0][0]}, BlockNumber: b, Index: uint(i), TxHash: common.Hash{byte(b)}})
		}
	}
	return out, nil
}

// fakeLogVaults records what the watcher tells and hands the vaults.
type fakeLogVaults struct {
	mu      sync.Mutex
	events  map[string]string
	nudged  map[string]uint64
	cursors map[string]uint64 // the least cursor of each filter's vaults (none: not known)
	batches chan *rules.LogBatch
}

func (f *fakeLogVaults) Events() map[string]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.events)
}

func (f *fakeLogVaults) EventsFrom(name string) (uint64, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	c, ok := f.cursors[name]
	return c, ok
}

func (f *fakeLogVaults) NudgeEvents(name string, pos uint64) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nudged[name] = pos
	return 1
}

func (f *fakeLogVaults) PostLogs(id, name string, b *rules.LogBatch) { f.batches <- b }

func pingKey(contract common.Address) string {
	return rules.EventKey(contract.Hex(), "Ping(uint256 indexed)", [3]string{})
}

// TestSlowFilterHoldsNoOne: while one filter's backfill read hangs (a
// provider slow on a huge range), an ask the cache answers is answered at
// once.
func TestSlowFilterHoldsNoOne(t *testing.T) {
	slow, quick := common.HexToAddress("0x51"), common.HexToAddress("0x52")
	ch := &fakeLogChain{head: 1, perBlock: map[common.Address]int{slow: 1, quick: 1}, limit: 1000, queried: map[common.Address]int{}}
	vs := &fakeLogVaults{events: map[string]string{rules.EventSignal(pingKey(slow)): pingKey(slow), rules.EventSignal(pingKey(quick)): pingKey(quick)},
		nudged: map[string]uint64{}, batches: make(chan *rules.LogBatch, 4)}
	w := startLogs(ch, vs, 1, time.Hour, logMetrics(nil), zerolog.Nop())
	defer w.stop()
	waitFor(t, "both filters seen", func() bool {
		w.mu.Lock()
		defer w.mu.Unlock()
		return len(w.live) == 2
	})
	gate := make(chan struct{})
	ch.mu.Lock()
	ch.hold = map[common.Address]chan struct{}{slow: gate}
	ch.mu.Unlock()
	defer close(gate)
	// The slow filter's vault asks from before the cache: a read that hangs.
	w.Fetch("v1", rules.EventSignal(pingKey(slow)), pingKey(slow), rules.BlockEnd(0)-1)
	// The quick one's vault asks from the cache's own block.
	w.Fetch("v2", rules.EventSignal(pingKey(quick)), pingKey(quick), rules.BlockEnd(1))
	select {
	case b := <-vs.batches:
		if b.After != rules.BlockEnd(1) {
			t.Fatalf("the first answer is to the ask from %d, not the quick one's", b.After)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("an ask the cache covers waited behind a hanging read")
	}
}

// TestLogWatcherBounds: past maxFiltersPerPoll filters, each poll reads
// the next ones in turn; a range the chain refuses as too large is read
// in halves; a block's logs past the bound are skipped and counted; the
// cache keeps its newest logs, and an ask from before them is read from
// the chain and handed over in batches, each saying where the next
// starts, so a vault asking again and again takes every log once.
func TestLogWatcherBounds(t *testing.T) {
	ch := &fakeLogChain{head: 1, perBlock: map[common.Address]int{}, limit: 1500, queried: map[common.Address]int{}}
	vs := &fakeLogVaults{events: map[string]string{}, nudged: map[string]uint64{}, batches: make(chan *rules.LogBatch, 1)}
	for i := range maxFiltersPerPoll + 50 {
		a := common.BigToAddress(big.NewInt(int64(i + 1)))
		ch.perBlock[a] = 1
		vs.events[rules.EventSignal(pingKey(a))] = pingKey(a)
	}
	heavy := common.BigToAddress(big.NewInt(1_000_000))
	ch.perBlock[heavy] = 150
	heavyName := rules.EventSignal(pingKey(heavy))
	vs.events[heavyName] = pingKey(heavy)
	w := newLogWatcher(ch, vs, 1, time.Second, logMetrics(nil), zerolog.Nop())
	ctx := context.Background()

	w.extend(ctx, 1) // every filter seen first: nothing to read yet
	ch.head = 2
	w.extend(ctx, 2)
	read := func() int {
		ch.mu.Lock()
		defer ch.mu.Unlock()
		n := 0
		for _, q := range ch.queried {
			n += min(q, 1)
		}
		return n
	}
	if n := read(); n != maxFiltersPerPoll {
		t.Fatalf("the first poll read %d filters, want %d", n, maxFiltersPerPoll)
	}
	w.extend(ctx, 2)
	if n := read(); n != maxFiltersPerPoll+51 {
		t.Fatalf("two polls read %d filters, want all %d", n, maxFiltersPerPoll+51)
	}

	// 100 blocks of the heavy filter at once: refused whole (15,000
	// logs), read in halves; each block keeps 100 logs and skips 50.
	clear(ch.queried)
	ch.head = 102
	for range 2 {
		w.extend(ctx, 102)
	}
	lc := w.live[heavyName]
	if lc.hi != 102 || ch.refused == 0 {
		t.Fatalf("the heavy filter read to %d after %d refusals", lc.hi, ch.refused)
	}
	if n := testutil.ToFloat64(w.m.WithLabelValues("skipped")); n != 101*50 {
		t.Fatalf("skipped %v logs, want %d", n, 101*50)
	}
	// 251 filters share the node's bound on cached logs: 256 each at
	// least, whole blocks.
	if len(lc.logs) != 2*maxLogsPerBlock || lc.lo != 101 {
		t.Fatalf("the cache holds %d logs from block %d, want %d from block 101", len(lc.logs), lc.lo, 2*maxLogsPerBlock)
	}

	// A vault whose cursor is at the end of block 1 asks, and asks again
	// from each batch's end, until it has every log.
	after, taken, skipped := rules.BlockEnd(1), 0, 0
	for asks := 0; ; asks++ {
		if asks > 200 {
			t.Fatal("the asks never ended")
		}
		b := w.batch(ctx, logAsk{id: "v", name: heavyName, key: pingKey(heavy), after: after})
		for _, l := range b.Logs {
			if l.Pos <= after {
				t.Fatalf("a batch handed back log %d at or before the cursor %d", l.Pos, after)
			}
			after = l.Pos
			taken++
		}
		skipped += len(b.Skipped)
		if b.Through < after {
			t.Fatalf("a batch ends at %d, before its last log %d", b.Through, after)
		}
		after = b.Through
		if !b.More {
			break
		}
	}
	if taken != 101*maxLogsPerBlock || skipped != 101 || after != rules.BlockEnd(102) {
		t.Fatalf("took %d logs and %d skipped blocks up to %d; want %d, 101, up to the end of block 102", taken, skipped, after, 101*maxLogsPerBlock)
	}

	// The chain down: the blocks wait, and are read when it answers.
	ch.failUntil.Store(true)
	ch.head = 110
	for range 2 { // two polls: every filter's turn
		w.extend(ctx, 110)
	}
	if lc.hi != 102 {
		t.Fatalf("read to %d while the chain was down", lc.hi)
	}
	ch.failUntil.Store(false)
	for range 2 {
		w.extend(ctx, 110)
	}
	if lc = w.live[heavyName]; lc.hi != 110 || vs.nudged[heavyName] != rules.LogPos(110, maxLogsPerBlock-1) {
		t.Fatalf("after the outage: read to %d, told up to %d", lc.hi, vs.nudged[heavyName])
	}

	// Every so often the vaults still behind a filter's newest log (or its
	// first block) are told again: a lost ask or batch is not lost for
	// good.
	clear(vs.nudged)
	w.swept = time.Time{}
	w.extend(ctx, 110)
	if len(vs.nudged) != maxFiltersPerPoll+51 || vs.nudged[heavyName] != rules.LogPos(110, maxLogsPerBlock-1) {
		t.Fatalf("told %d filters again, the heavy one up to %d", len(vs.nudged), vs.nudged[heavyName])
	}
}

// TestCatchUpWakesOnlyThoseBehindALog: a node starting reads each filter
// from its vaults' least cursor before telling any: the vaults of a filter
// that matched nothing meanwhile are not woken; those of one that did are,
// and their asks are answered from what the catch-up read.
func TestCatchUpWakesOnlyThoseBehindALog(t *testing.T) {
	quiet, busy := common.HexToAddress("0x61"), common.HexToAddress("0x62")
	qn, bn := rules.EventSignal(pingKey(quiet)), rules.EventSignal(pingKey(busy))
	ch := &fakeLogChain{head: 50, perBlock: map[common.Address]int{quiet: 0, busy: 1}, limit: 1000, queried: map[common.Address]int{}}
	vs := &fakeLogVaults{events: map[string]string{qn: pingKey(quiet), bn: pingKey(busy)}, nudged: map[string]uint64{},
		cursors: map[string]uint64{qn: rules.BlockEnd(10), bn: rules.BlockEnd(10)}, batches: make(chan *rules.LogBatch, 1)}
	w := newLogWatcher(ch, vs, 1, time.Second, logMetrics(nil), zerolog.Nop())
	w.swept = time.Now() // no sweep in this poll
	w.extend(context.Background(), 50)
	if _, told := vs.nudged[qn]; told {
		t.Fatalf("the quiet filter's vaults were told (up to %d)", vs.nudged[qn])
	}
	if vs.nudged[bn] != rules.LogPos(50, 0) {
		t.Fatalf("the busy filter's vaults were told up to %d, want its newest log, block 50", vs.nudged[bn])
	}
	ch.mu.Lock()
	reads := ch.queried[busy]
	ch.mu.Unlock()
	b := w.batch(context.Background(), logAsk{id: "v", name: bn, key: pingKey(busy), after: rules.BlockEnd(10)})
	if len(b.Logs) != 40 || b.Logs[0].Pos != rules.LogPos(11, 0) || b.Through != rules.BlockEnd(50) || b.More {
		t.Fatalf("the ask got %d logs from %d through %d (more %v)", len(b.Logs), b.Logs[0].Pos, b.Through, b.More)
	}
	ch.mu.Lock()
	defer ch.mu.Unlock()
	if ch.queried[busy] != reads {
		t.Fatal("the ask read the chain again instead of the catch-up's span")
	}
}

// batch is the answer to ask a, as the answerer and a backfill reader
// give it between them.
func (w *logWatcher) batch(ctx context.Context, a logAsk) *rules.LogBatch {
	if b, ok := w.cached(a); ok {
		return b
	}
	return w.read1(ctx, a)
}
