package cluster

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/ethereum/go-ethereum/common"
)

// A move between two nodes on their link: the sender's calls and their
// replies, and the receiver's side (the offered file, the commit).

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
			h.serveMove(lk, id, recMoveOffer, in.hdr, nil)
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
			h.serveMove(lk, id, recMoveOffer, in.hdr, in.data)
		}
	case recMoveCommit:
		if h != nil {
			h.serveMove(lk, id, recMoveCommit, append([]byte(nil), payload...), nil)
		}
	default:
		return false
	}
	return true
}

// serveMove answers a move record from a peer (on a goroutine of its own:
// it writes and syncs files).
// serveMove serves a peer's move record (an offer with its file, or a
// commit) on a goroutine the handoff owns.
func (h *Handoff) serveMove(lk *link, id uint32, kind byte, hdr []byte, data []byte) {
	if !h.spawn(func(ctx context.Context) { h.serveMoveNow(ctx, lk, id, kind, hdr, data) }) {
		lk.reply(id, errors.New("node shutting down"))
	}
}

func (h *Handoff) serveMoveNow(ctx context.Context, lk *link, id uint32, kind byte, hdr []byte, data []byte) {
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
		home, ok, err := h.dir.Lookup(ctx, addr)
		if err != nil || !ok || home != (Home{Node: h.dir.Node(), Epoch: c.Epoch}) {
			reply(fmt.Errorf("the directory does not name this node for %s at epoch %d", c.Vault, c.Epoch))
			return
		}
		err = h.v.Install(ctx, addr, c.Epoch)
		if err == nil {
			h.forgetReceived(idOf(addr))
		}
		reply(err)
	}
}
