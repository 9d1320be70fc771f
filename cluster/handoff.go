package cluster

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
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

// Records of a move on the node link (beside the session records).
const (
	recMoveOffer  byte = 6 // {"vault","epoch","sum","size"}, then recMoveData up to size
	recMoveData   byte = 7
	recMoveCommit byte = 8 // {"vault","epoch","abort"}
	recReply      byte = 9 // {"error"}: "" is success
)

const (
	moveChunk      = 1 << 20
	maxMoveSize    = 256 << 20
	switchDeadline = 20 * time.Second // from the receiver's ready to the directory's switch
	orphanAfter    = time.Minute      // a received file the directory never names is discarded after this
	moveParallel   = 4
)

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
	stop     chan struct{}
	done     chan struct{}
}

// NewHandoff wires moves to the node links; Start settles what a stop left.
func NewHandoff(links *Links, v Vaults, m *HandoffMetrics) *Handoff {
	if m == nil {
		m = NewHandoffMetrics(nil)
	}
	h := &Handoff{links: links, dir: links.cfg.Dir, v: v, m: m, active: map[string]bool{}, received: map[string]time.Time{},
		stop: make(chan struct{}), done: make(chan struct{})}
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

// Start settles moves a stop interrupted, now and every few seconds while
// any is left (Redis may be down).
func (h *Handoff) Start() {
	go func() {
		defer close(h.done)
		t := time.NewTicker(2 * time.Second)
		defer t.Stop()
		for {
			h.settle(context.Background())
			select {
			case <-h.stop:
				return
			case <-t.C:
			}
		}
	}()
}

// Close stops settling.
func (h *Handoff) Close() {
	close(h.stop)
	<-h.done
}

// DrainResult says what a drain did.
type DrainResult struct {
	Moved   int      `json:"moved"`
	Failed  int      `json:"failed"`
	Left    int      `json:"left"` // held here still (failed, or created during the drain)
	Errors  []string `json:"errors,omitempty"`
	Elapsed string   `json:"elapsed"`
}

// Drain hands every vault held here to the other live nodes: from now on
// no new vault is placed here, and each held one moves to the node
// rendezvous hashing picks among the others.
func (h *Handoff) Drain(ctx context.Context) (DrainResult, error) {
	began := time.Now()
	h.dir.SetDraining(ctx, true)
	var others []Member
	for _, m := range h.dir.Members() {
		if m.ID != h.dir.Node() && !m.Draining {
			others = append(others, m)
		}
	}
	if len(others) == 0 {
		return DrainResult{}, errors.New("no other live node to hand the vaults to")
	}
	held := h.v.Held()
	ids := make([]string, 0, len(held))
	for id, epoch := range held {
		if epoch > 0 { // quarantined or unread files stay (they have no file to ship)
			ids = append(ids, id)
		}
	}
	log := h.links.log
	log.Info().Int("vaults", len(ids)).Int("nodes", len(others)).Msg("draining: handing every vault to the other nodes")
	var mu sync.Mutex
	var res DrainResult
	work := make(chan string)
	var wg sync.WaitGroup
	for i := 0; i < moveParallel; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for id := range work {
				addr := common.HexToAddress(id)
				err := h.Move(ctx, addr, Rendezvous(id, others).ID)
				mu.Lock()
				if err != nil {
					res.Failed++
					if len(res.Errors) < 20 {
						res.Errors = append(res.Errors, addr.Hex()+": "+err.Error())
					}
				} else {
					res.Moved++
				}
				done := res.Moved + res.Failed
				mu.Unlock()
				if done%100 == 0 {
					log.Info().Int("done", done).Int("of", len(ids)).Msg("draining")
				}
			}
		}()
	}
	for _, id := range ids {
		select {
		case work <- id:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
	}
	close(work)
	wg.Wait()
	for _, e := range h.v.Held() {
		if e > 0 {
			res.Left++
		}
	}
	res.Elapsed = time.Since(began).Round(time.Millisecond).String()
	log.Info().Int("moved", res.Moved).Int("failed", res.Failed).Int("left", res.Left).Str("took", res.Elapsed).Msg("drain finished")
	return res, ctx.Err()
}

// Move hands one vault held here to node to.
func (h *Handoff) Move(ctx context.Context, addr common.Address, to string) error {
	id := idOf(addr)
	h.mu.Lock()
	if h.active[id] {
		h.mu.Unlock()
		return errors.New("already moving")
	}
	h.active[id] = true
	h.mu.Unlock()
	defer func() {
		h.mu.Lock()
		delete(h.active, id)
		h.mu.Unlock()
	}()
	began := time.Now()
	lk, err := h.links.link(ctx, to)
	if err != nil {
		return err
	}
	out, err := h.v.MoveOut(ctx, addr, to)
	if err != nil {
		return err
	}
	h.step("quiesced")
	me := Home{Node: h.dir.Node(), Epoch: out.Epoch}
	next := Home{Node: to, Epoch: out.Epoch + 1}
	abort := func(err error) error {
		_, _ = lk.call(ctx, recMoveCommit, moveCommit{Vault: addr.Hex(), Epoch: next.Epoch, Abort: true}, nil)
		h.v.MoveAbort(addr)
		h.m.Moves.WithLabelValues("aborted").Inc()
		return err
	}
	offer := moveOffer{KEK: h.v.KEKID(), Vault: addr.Hex(), Epoch: next.Epoch, Sum: hex.EncodeToString(out.Sum[:]), Size: len(out.Data)}
	if _, err := lk.call(ctx, recMoveOffer, offer, out.Data); err != nil {
		return abort(fmt.Errorf("node %s did not take the vault: %w", to, err))
	}
	h.step("offered")
	switch err := h.dir.Move(ctx, addr, me, next, time.Now().Add(switchDeadline)); {
	case err == nil:
	case errors.Is(err, errMoveRefused):
		return abort(err)
	default:
		// The switch's outcome is unknown (Redis did not answer): the
		// mark stays, and settle decides once Redis answers.
		h.m.Moves.WithLabelValues("pending").Inc()
		return fmt.Errorf("the directory did not answer the switch; the move is settled when it does: %w", err)
	}
	h.step("switched")
	h.m.Duration.Observe(time.Since(began).Seconds())
	h.v.MoveDone(addr)
	h.step("tombstoned")
	h.m.Moves.WithLabelValues("moved").Inc()
	if _, err := lk.call(ctx, recMoveCommit, moveCommit{Vault: addr.Hex(), Epoch: next.Epoch}, nil); err != nil {
		// The receiver installs it when it finds the directory names it.
		h.links.log.Warn().Err(err).Str("vault", addr.Hex()).Str("to", to).Msg("moved, but the receiver did not confirm; it installs the vault from the directory")
	}
	return nil
}

type moveOffer struct {
	KEK   string `json:"kek"` // the sender's key-encryption key's id: the receiver must hold the same
	Vault string `json:"vault"`
	Epoch uint64 `json:"epoch"`
	Sum   string `json:"sum"`
	Size  int    `json:"size"`
}

type moveCommit struct {
	Vault string `json:"vault"`
	Epoch uint64 `json:"epoch"`
	Abort bool   `json:"abort,omitempty"`
}

// settle decides the moves a stop interrupted, against the directory.
func (h *Handoff) settle(ctx context.Context) {
	for _, mv := range h.v.PendingMoves() {
		if h.isActive(mv.Vault) {
			continue
		}
		home, ok, err := h.dir.Lookup(ctx, mv.Vault)
		if err != nil {
			return // Redis down: next time
		}
		if ok && home == (Home{Node: mv.To, Epoch: mv.Epoch}) {
			h.v.MoveDone(mv.Vault)
			h.m.Settled.WithLabelValues("done").Inc()
		} else {
			h.v.MoveAbort(mv.Vault)
			h.m.Settled.WithLabelValues("aborted").Inc()
		}
	}
	for _, mv := range h.v.Incoming() {
		id := idOf(mv.Vault)
		h.mu.Lock()
		since, waiting := h.received[id]
		h.mu.Unlock()
		home, ok, err := h.dir.Lookup(ctx, mv.Vault)
		if err != nil {
			return
		}
		if ok && home == (Home{Node: h.dir.Node(), Epoch: mv.Epoch}) {
			if err := h.v.Install(ctx, mv.Vault, mv.Epoch); err != nil {
				h.links.log.Error().Err(err).Str("vault", mv.Vault.Hex()).Msg("install a moved vault")
				continue
			}
			h.forgetReceived(id)
			h.m.Settled.WithLabelValues("installed").Inc()
			continue
		}
		if !waiting {
			since = fileTime(h.links.cfg.DataDir, id)
		}
		if time.Since(since) > orphanAfter {
			h.v.Discard(mv.Vault)
			h.forgetReceived(id)
			h.m.Settled.WithLabelValues("discarded").Inc()
		}
	}
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

// serveMove answers a move record from a peer (on a goroutine of its own:
// it writes and syncs files).
func (h *Handoff) serveMove(lk *link, id uint32, kind byte, hdr []byte, data []byte) {
	reply := func(err error) { lk.reply(id, err) }
	switch kind {
	case recMoveOffer:
		var o moveOffer
		if json.Unmarshal(hdr, &o) != nil || !common.IsHexAddress(o.Vault) {
			reply(errors.New("malformed move offer"))
			return
		}
		if o.KEK != h.v.KEKID() {
			reply(fmt.Errorf("node %s holds key-encryption key %s, not the sender's %s: the vault's keys could not be unsealed there", h.dir.Node(), h.v.KEKID(), o.KEK))
			return
		}
		sum, err := hex.DecodeString(o.Sum)
		if err != nil || len(sum) != 32 {
			reply(errors.New("malformed checksum"))
			return
		}
		addr := common.HexToAddress(o.Vault)
		if err := h.v.Receive(addr, o.Epoch, data, [32]byte(sum)); err != nil {
			h.links.log.Warn().Err(err).Str("vault", o.Vault).Str("from", lk.peer).Msg("refused a moving vault")
			reply(err)
			return
		}
		h.mu.Lock()
		h.received[idOf(addr)] = time.Now()
		h.mu.Unlock()
		h.step("received")
		reply(nil)
	case recMoveCommit:
		var c moveCommit
		if json.Unmarshal(hdr, &c) != nil || !common.IsHexAddress(c.Vault) {
			reply(errors.New("malformed move commit"))
			return
		}
		addr := common.HexToAddress(c.Vault)
		if c.Abort {
			h.v.Discard(addr)
			h.forgetReceived(idOf(addr))
			reply(nil)
			return
		}
		// The directory decides, not the peer: install only what it
		// names this node for.
		home, ok, err := h.dir.Lookup(context.Background(), addr)
		if err != nil || !ok || home != (Home{Node: h.dir.Node(), Epoch: c.Epoch}) {
			reply(fmt.Errorf("the directory does not name this node for %s at epoch %d", c.Vault, c.Epoch))
			return
		}
		err = h.v.Install(context.Background(), addr, c.Epoch)
		if err == nil {
			h.forgetReceived(idOf(addr))
		}
		reply(err)
	}
}

// errMoveRefused: the directory's home is not what the move expected, or
// the switch came past its deadline; nothing was switched.
var errMoveRefused = errors.New("the directory refused the switch")

// moveScript switches a home: KEYS[1] the home, ARGV[1] the home
// expected ("" when Redis lost it), ARGV[2] the new home, ARGV[3] the
// deadline (unix ms, Redis's clock).
var moveScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if now > tonumber(ARGV[3]) then return 'late' end
local cur = redis.call('GET', KEYS[1])
if cur and cur ~= ARGV[1] then return cur end
redis.call('SET', KEYS[1], ARGV[2])
return ''
`)

// Move switches a vault's home from one node and epoch to another, unless
// its home is not from (a lost home counts as from) or deadline passed.
func (d *Directory) Move(ctx context.Context, vault common.Address, from, to Home, deadline time.Time) error {
	res, err := moveScript.Run(ctx, d.rdb, []string{homeKey(idOf(vault))}, from.String(), to.String(), deadline.UnixMilli()).Text()
	if err != nil {
		return fmt.Errorf("directory: %w", err)
	}
	switch res {
	case "":
		return nil
	case "late":
		return fmt.Errorf("%w: past its deadline", errMoveRefused)
	}
	return fmt.Errorf("%w: the home is %q, not %q", errMoveRefused, res, from.String())
}

// call sends a move record (and data, in chunks) and waits for its reply.
func (lk *link) call(ctx context.Context, kind byte, hdr any, data []byte) (string, error) {
	b, _ := json.Marshal(hdr)
	lk.mu.Lock()
	if lk.over {
		lk.mu.Unlock()
		return "", errors.New("link down")
	}
	id := lk.next
	lk.next += 2
	ch := make(chan string, 1)
	lk.calls[id] = ch
	lk.mu.Unlock()
	defer func() {
		lk.mu.Lock()
		delete(lk.calls, id)
		lk.mu.Unlock()
	}()
	if err := lk.send(kind, id, b); err != nil {
		return "", err
	}
	for len(data) > 0 {
		n := min(moveChunk, len(data))
		if err := lk.send(recMoveData, id, data[:n]); err != nil {
			return "", err
		}
		data = data[n:]
	}
	t := time.NewTimer(time.Minute)
	defer t.Stop()
	select {
	case r, ok := <-ch:
		if !ok {
			return "", errors.New("link down")
		}
		var rep struct {
			Error string `json:"error"`
		}
		_ = json.Unmarshal([]byte(r), &rep)
		if rep.Error != "" {
			return "", errors.New(rep.Error)
		}
		return r, nil
	case <-ctx.Done():
		return "", ctx.Err()
	case <-t.C:
		return "", errors.New("no reply within a minute")
	}
}

// reply answers the move record id: err's text, or "" for success.
func (lk *link) reply(id uint32, err error) {
	msg := ""
	if err != nil {
		msg = err.Error()
	}
	b, _ := json.Marshal(map[string]string{"error": msg})
	_ = lk.send(recReply, id, b)
}

// moveIn is a move offer being received.
type moveIn struct {
	hdr  []byte
	size int
	data []byte
}

// readMove handles the move records of read; false for another kind.
func (lk *link) readMove(kind byte, id uint32, payload []byte) bool {
	h := lk.l.handoff
	switch kind {
	case recReply:
		lk.mu.Lock()
		ch := lk.calls[id]
		lk.mu.Unlock()
		if ch != nil {
			select {
			case ch <- string(payload):
			default:
			}
		}
	case recMoveOffer:
		var o moveOffer
		if h == nil || json.Unmarshal(payload, &o) != nil || o.Size < 0 || o.Size > maxMoveSize {
			lk.reply(id, errors.New("move refused: no handoff here, or a malformed or oversized offer"))
			return true
		}
		// Memory grows with the data that arrives, not with what the offer
		// claims.
		in := &moveIn{hdr: append([]byte(nil), payload...), size: o.Size, data: make([]byte, 0, min(o.Size, moveChunk))}
		if o.Size == 0 {
			go h.serveMove(lk, id, recMoveOffer, in.hdr, nil)
			return true
		}
		lk.mu.Lock()
		busy := len(lk.moves) >= 2*moveParallel
		if !busy {
			lk.moves[id] = in
		}
		lk.mu.Unlock()
		if busy {
			lk.reply(id, errors.New("move refused: too many moves in progress on this link; retry"))
		}
	case recMoveData:
		lk.mu.Lock()
		in := lk.moves[id]
		if in != nil && len(in.data)+len(payload) >= in.size {
			delete(lk.moves, id)
		}
		lk.mu.Unlock()
		if in == nil {
			return true
		}
		in.data = append(in.data, payload[:min(len(payload), in.size-len(in.data))]...)
		if len(in.data) == in.size {
			go h.serveMove(lk, id, recMoveOffer, in.hdr, in.data)
		}
	case recMoveCommit:
		if h != nil {
			go h.serveMove(lk, id, recMoveCommit, append([]byte(nil), payload...), nil)
		}
	default:
		return false
	}
	return true
}

// SetDraining marks this node as draining in the directory: placement
// leaves it out, and it creates no vault.
func (d *Directory) SetDraining(ctx context.Context, on bool) {
	d.mu.Lock()
	d.draining = on
	d.mu.Unlock()
	if err := d.renew(ctx); err != nil {
		d.log.Warn().Err(err).Msg("could not tell the directory this node drains")
	}
}
