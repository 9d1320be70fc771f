package cluster

import (
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/ethereum/go-ethereum/common"
)

// Draining: every vault of this node handed to the others, and the moves a
// stop interrupted settled against the directory.

// Start settles moves a stop interrupted, now and every few seconds while
// any is left (Redis may be down).
func (h *Handoff) Start() {
	h.spawn(func(ctx context.Context) {
		t := time.NewTicker(2 * time.Second)
		defer t.Stop()
		for {
			h.settle(ctx)
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	})
}

// Close stops settling and waits for the moves this node serves for its
// peers to end (their files written, or refused).
func (h *Handoff) Close() {
	h.mu.Lock()
	h.closed = true
	h.mu.Unlock()
	h.cancel()
	h.wg.Wait()
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
