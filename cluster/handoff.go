package cluster

import (
	"context"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/prometheus/client_golang/prometheus"
)

// Handoff: a node that drains hands each of its vaults to another live
// node (the one rendezvous hashing picks among the others), one move at a
// time per vault and a few at once:
//
//  1. the vault is quiesced here and its file read, closed clean
//     (Vaults.MoveOut: a move mark in the file fences every write);
//  2. the file goes to the receiver over the node link, with its SHA-256;
//     the receiver writes it beside the vault's place, synced, and checks
//     it (Receive);
//  3. the directory's home is switched from (this node, epoch) to (the
//     receiver, epoch+1) by a compare-and-set that also refuses a switch
//     past its deadline;
//  4. the file here becomes a tombstone (MoveDone);
//  5. the receiver puts the file in place and opens it (Install): its
//     intents in flight are watched there, and signals it missed are
//     offered.
//
// The directory's switch is the move's single point of decision. A stop
// at any step leaves marks that settle gives the same outcome: before the
// switch, the vault stays here and the received copy is discarded; after
// it, it is the receiver's, and the copy here a tombstone.

// Vaults is what a handoff needs of the node's vaults (the server gives it
// the vault manager).
type Vaults interface {
	// KEKID names the key-encryption key that seals the node's vaults.
	KEKID() string
	// Held lists the vaults this node holds, with their epochs.
	Held() map[string]uint64
	// MoveOut quiesces a vault for a move to node to and returns its file;
	// MoveDone or MoveAbort ends the move.
	MoveOut(ctx context.Context, addr common.Address, to string) (*Outgoing, error)
	MoveDone(addr common.Address) error
	MoveAbort(addr common.Address) error
	// Receive writes a moving vault's file beside its place, checked
	// against sum; Install puts it in place at epoch and opens it, Discard
	// removes it.
	Receive(addr common.Address, epoch uint64, data []byte, sum [32]byte) error
	Install(ctx context.Context, addr common.Address, epoch uint64) error
	Discard(addr common.Address)
	// PendingMoves lists the moves out a stop interrupted, Incoming the
	// received files not installed yet.
	PendingMoves() []Move
	Incoming() []Move
}

// Outgoing is a vault on its way out of this node: its file's bytes,
// closed clean, and their SHA-256.
type Outgoing struct {
	Vault common.Address
	Epoch uint64 // its epoch here; it has Epoch+1 at the node it goes to
	To    string
	Data  []byte
	Sum   [32]byte
}

// Move is a move this node's files record: a vault that was leaving
// (PendingMoves) or arriving (Incoming).
type Move struct {
	Vault common.Address
	To    string // the node it goes to (pending moves)
	Epoch uint64 // the epoch it has there
}

// HandoffMetrics count moves.
type HandoffMetrics struct {
	Moves    *prometheus.CounterVec // by result: moved, aborted, pending
	Settled  *prometheus.CounterVec // interrupted moves settled, by outcome
	Duration prometheus.Histogram
}

// NewHandoffMetrics registers the handoff metrics on reg (may be nil).
func NewHandoffMetrics(reg prometheus.Registerer) *HandoffMetrics {
	m := &HandoffMetrics{
		Moves: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "spells_handoffs_total",
			Help: "Vault moves this node began, by result: moved, aborted (the vault stayed here), pending (settled later)."}, []string{"result"}),
		Settled: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "spells_handoffs_settled_total",
			Help: "Moves a stop interrupted, settled against the directory, by outcome: done, aborted, installed, discarded."}, []string{"outcome"}),
		Duration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "spells_handoff_seconds",
			Help: "Time to move one vault, from quiescing it to its directory switch.", Buckets: prometheus.ExponentialBuckets(0.005, 2, 12)}),
	}
	if reg != nil {
		reg.MustRegister(m.Moves, m.Settled, m.Duration)
	}
	return m
}

// Handoff moves vaults between this node and others.
type Handoff struct {
	links *Links
	dir   *Directory
	v     Vaults
	m     *HandoffMetrics

	// crashAt and crash inject a crash at one step of a move (tests of a
	// stop at each step, see CrashAt).
	crashAt string
	crash   func()

	mu       sync.Mutex
	active   map[string]bool      // vaults in a move this process runs
	received map[string]time.Time // received files awaiting their commit, and since when
	closed   bool
	// ctx ends when Close begins; wg counts the goroutines serving a
	// peer's move here and the settling loop: Close waits for them, so
	// none writes a vault file once the node's vaults are closing.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// NewHandoff wires moves to the node links; Start settles what a stop left.
func NewHandoff(links *Links, v Vaults, m *HandoffMetrics) *Handoff {
	if m == nil {
		m = NewHandoffMetrics(nil)
	}
	h := &Handoff{links: links, dir: links.cfg.Dir, v: v, m: m, active: map[string]bool{}, received: map[string]time.Time{}}
	h.ctx, h.cancel = context.WithCancel(context.Background())
	links.handoff = h
	return h
}

// CrashAt makes crash run at one step of every move: "quiesced" (the
// file read here), "offered" (the receiver has it), "switched" (the
// directory names the receiver), "tombstoned" (the file here is a
// tombstone), or "received" (on the receiver, its copy written). Tests
// use it to stop a node at each step; crash is expected not to return.
func (h *Handoff) CrashAt(step string, crash func()) { h.crashAt, h.crash = step, crash }

func (h *Handoff) step(name string) {
	if h.crashAt == name && h.crash != nil {
		h.links.log.Warn().Str("step", name).Msg("fault injected: the node stops at this step of a move")
		h.crash()
	}
}

// spawn runs fn on a goroutine Close waits for; false (and fn not run)
// once Close has begun. fn's ctx ends when Close begins.
func (h *Handoff) spawn(fn func(ctx context.Context)) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closed {
		return false
	}
	h.wg.Add(1)
	go func() {
		defer h.wg.Done()
		fn(h.ctx)
	}()
	return true
}

func (h *Handoff) isActive(addr common.Address) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.active[idOf(addr)]
}

func (h *Handoff) forgetReceived(id string) {
	h.mu.Lock()
	delete(h.received, id)
	h.mu.Unlock()
}

// fileTime is when a received file was written (its age decides when an
// orphan is discarded); now when it cannot be read.
func fileTime(dataDir, id string) time.Time {
	if dataDir == "" {
		return time.Now()
	}
	fi, err := os.Stat(filepath.Join(dataDir, "vaults", id[2:4], id+".db.incoming"))
	if err != nil {
		return time.Now()
	}
	return fi.ModTime()
}
