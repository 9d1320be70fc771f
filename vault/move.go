package vault

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"zombiezen.com/go/sqlite"

	"github.com/spells-dev/spells/internal/atomicfile"
	"github.com/spells-dev/spells/vault/actor"
	"github.com/spells-dev/spells/vault/store"
)

// Moving a vault to another node (a drain). The vault's file is shipped
// whole, its keys still sealed (every node of a cluster holds the same
// key-encryption key), and the directory switched by the cluster package;
// this file holds the node's side of it, each step a move of the vault's
// place (place.go):
//
//   - MoveOut, on the node the vault leaves (held → leaving): no new
//     request reaches it, a move mark (the node it goes to, the epoch it
//     has there) is written into its file, its dashboards are told to
//     reconnect and resume, its instance ends and its file is closed
//     clean; the bytes and their checksum are returned. From the mark on,
//     the vault refuses every write: a copy being shipped never changes.
//   - Receive, on the node it goes to (→ arriving): the bytes are written
//     beside the vault's place as <id>.db.incoming, synced, and their
//     checksum checked. Install puts the file in place at its new epoch
//     and opens it (→ held), which carries on its intents.
//   - MoveDone, once the directory names the new node, leaves the old
//     file as a tombstone (→ moved): this node never serves it again, and
//     any write to it fails inside the vault. MoveAbort, when the
//     directory was not switched, clears the mark and the vault serves
//     here again (→ held).
//
// A node that stops at any step finds the mark (left) or the incoming
// file (arriving) at its next start: PendingMoves and Incoming list them,
// and the cluster package settles each against the directory (see
// cluster/handoff.go).

// incomingSuffix names a moved vault's file while it is received.
const incomingSuffix = ".incoming"

// Outgoing is a vault on its way out of this node: its file's bytes,
// closed clean, and their SHA-256.
type Outgoing struct {
	Vault common.Address
	Epoch uint64 // its epoch here; it has Epoch+1 at the node it goes to
	To    string
	Data  []byte
	Sum   [32]byte
}

// MoveOut quiesces the vault at addr for a move to node to and returns its
// file. From now on it is not served here; MoveDone or MoveAbort ends the
// move.
func (m *Manager) MoveOut(ctx context.Context, addr common.Address, to string) (*Outgoing, error) {
	id := actor.ID(addr)
	// An instance first: opening the file recovers a WAL a crash left,
	// and closing it leaves the file whole, with an empty WAL.
	v, err := m.Vault(ctx, addr)
	if err != nil {
		return nil, err
	}
	m.mu.Lock()
	s := m.placeOf(id)
	if s.place != held {
		m.mu.Unlock()
		return nil, fmt.Errorf("vault %s is %s here (to %s), not held", addr.Hex(), s.place, s.node)
	}
	m.setPlaceLocked(id, spot{place: leaving, epoch: s.epoch, node: to})
	m.mu.Unlock()
	epoch, err := v.MoveOut(ctx, to)
	if err == nil {
		select {
		case <-v.Done():
		case <-ctx.Done():
			err = ctx.Err()
		}
	}
	if err == nil {
		err = m.waitGone(ctx, id)
	}
	var data []byte
	if err == nil {
		data, err = readClean(actor.Path(m.cfg.Dir, id))
	}
	if err != nil {
		m.MoveAbort(addr)
		return nil, fmt.Errorf("move %s out: %w", addr.Hex(), err)
	}
	return &Outgoing{Vault: addr, Epoch: epoch, To: to, Data: data, Sum: sha256.Sum256(data)}, nil
}

// waitGone waits until no instance of the vault runs (acquire refuses new
// ones while it moves).
func (m *Manager) waitGone(ctx context.Context, id string) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	for m.vaults[id] != nil || m.leaving[id] != nil {
		if err := m.waitLeavingLocked(ctx); err != nil {
			return err
		}
	}
	return nil
}

// readClean reads a closed vault file whose WAL is empty.
func readClean(p string) ([]byte, error) {
	if fi, err := os.Stat(p + "-wal"); err == nil && fi.Size() > 0 {
		return nil, fmt.Errorf("%s has a write-ahead log of %d bytes after closing", p, fi.Size())
	}
	return os.ReadFile(p)
}

// setMark writes a vault file's move columns (and its epoch) on a
// connection of its own; the vault has no instance.
func (m *Manager) setMark(id string, write func(conn *sqlite.Conn) error) error {
	conn, err := store.Open(actor.Path(m.cfg.Dir, id))
	if err != nil {
		return err
	}
	err = write(conn)
	if cerr := conn.Close(); err == nil {
		err = cerr
	}
	return err
}

// MoveAbort ends a move the directory did not follow: the mark is
// cleared, and the vault serves here again. If the mark cannot be
// cleared, the move stays pending (PendingMoves): the vault is not served
// until it is settled.
func (m *Manager) MoveAbort(addr common.Address) error {
	id := actor.ID(addr)
	err := m.setMark(id, store.ClearMoveMark)
	m.mu.Lock()
	s := m.placeOf(id)
	if s.place == leaving || s.place == left {
		if err == nil {
			m.setPlaceLocked(id, spot{place: held, epoch: s.epoch})
		} else {
			m.setPlaceLocked(id, spot{place: left, epoch: s.epoch, node: s.node})
		}
	}
	m.mu.Unlock()
	if err != nil {
		m.cfg.Logger.Error().Err(err).Str("vault", addr.Hex()).Msg("move aborted, but its mark could not be cleared; the vault stays unavailable here until its move is settled")
		return err
	}
	m.cfg.Logger.Warn().Str("vault", addr.Hex()).Msg("move aborted: the vault serves here again")
	return nil
}

// MoveDone ends a move the directory followed: the file stays as a
// tombstone (moved = 1), and this node forgets the vault.
func (m *Manager) MoveDone(addr common.Address) error {
	id := actor.ID(addr)
	if err := m.setMark(id, store.SetMoved); err != nil {
		// The mark alone keeps the vault from being served here; the
		// next start settles it against the directory again.
		m.cfg.Logger.Error().Err(err).Str("vault", addr.Hex()).Msg("moved vault: tombstone not written")
	}
	m.mu.Lock()
	to := m.placeOf(id).node
	m.setPlaceLocked(id, spot{place: moved, node: to})
	delete(m.waiting, id)
	m.mu.Unlock()
	m.forget(id)
	m.metrics.VaultsMovedOut.Inc()
	m.cfg.Logger.Info().Str("vault", addr.Hex()).Str("to", to).Msg("vault moved out; its file here is a tombstone")
	return nil
}

// Receive writes a moving vault's file as <id>.db.incoming, synced, after
// checking its checksum; Install puts it in place. A vault this node holds
// (not a tombstone) is never overwritten.
func (m *Manager) Receive(addr common.Address, epoch uint64, data []byte, sum [32]byte) error {
	id := actor.ID(addr)
	if sha256.Sum256(data) != sum {
		return errors.New("the file does not match its checksum")
	}
	m.mu.Lock()
	busy := m.placeOf(id).holds() || m.vaults[id] != nil
	m.mu.Unlock()
	if busy {
		return fmt.Errorf("vault %s is held on this node", addr.Hex())
	}
	p := actor.Path(m.cfg.Dir, id) + incomingSuffix
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return err
	}
	// The file first, then its epoch: scanIncoming removes a received
	// file whose epoch is missing (Receive had not finished). Both are
	// synced before the sender is told it may switch the directory.
	if err := atomicfile.Write(p, data); err != nil {
		return err
	}
	if err := atomicfile.Write(p+".epoch", []byte(strconv.FormatUint(epoch, 10))); err != nil {
		os.Remove(p)
		return err
	}
	m.arrive(id, epoch)
	return nil
}

// arrive records a received file of vault id at epoch (keeping what a
// tombstone here says of where it had gone).
func (m *Manager) arrive(id string, epoch uint64) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.setPlaceLocked(id, spot{place: arriving, epoch: epoch, node: m.placeOf(id).node})
}

// Install puts a received vault's file in place at epoch (replacing a
// tombstone this node kept of it), clears its move mark and opens it:
// its intents carry on, and the signal values it missed are offered.
func (m *Manager) Install(ctx context.Context, addr common.Address, epoch uint64) error {
	id := actor.ID(addr)
	p := actor.Path(m.cfg.Dir, id)
	m.mu.Lock()
	holds := m.placeOf(id).holds()
	m.mu.Unlock()
	if holds {
		return fmt.Errorf("vault %s is held on this node", addr.Hex())
	}
	if err := os.Rename(p+incomingSuffix, p); err != nil {
		return fmt.Errorf("install %s: %w", addr.Hex(), err)
	}
	if m.cfg.Backup != nil {
		// Another node's file: what this node shipped of it before no
		// longer leads to it.
		m.cfg.Backup.Forget(id)
	}
	os.Remove(p + "-wal") // a tombstone's, empty
	if err := atomicfile.SyncDir(filepath.Dir(p)); err != nil {
		return fmt.Errorf("install %s: %w", addr.Hex(), err)
	}
	os.Remove(p + incomingSuffix + ".epoch")
	if err := m.setMark(id, func(conn *sqlite.Conn) error { return store.SetArrived(conn, epoch) }); err != nil {
		return fmt.Errorf("install %s: %w", addr.Hex(), err)
	}
	m.setPlace(id, spot{place: held, epoch: epoch})
	m.metrics.VaultsMovedIn.Inc()
	m.cfg.Logger.Info().Str("vault", addr.Hex()).Uint64("epoch", epoch).Msg("vault moved in")
	if _, err := m.Vault(ctx, addr); err != nil {
		return fmt.Errorf("open %s after its move: %w", addr.Hex(), err)
	}
	return nil
}

// Discard removes a received file the directory never named this node
// for.
func (m *Manager) Discard(addr common.Address) {
	id := actor.ID(addr)
	p := actor.Path(m.cfg.Dir, id) + incomingSuffix
	os.Remove(p)
	os.Remove(p + ".epoch")
	m.mu.Lock()
	if s := m.placeOf(id); s.place == arriving {
		if s.node != "" {
			m.setPlaceLocked(id, spot{place: moved, node: s.node}) // its tombstone stays
		} else {
			m.setPlaceLocked(id, spot{place: nowhere})
		}
	}
	m.mu.Unlock()
	m.cfg.Logger.Warn().Str("vault", addr.Hex()).Msg("a received vault file was discarded: the directory did not name this node")
}

// Move is a move this node's files record: a vault that was leaving
// (PendingMoves) or arriving (Incoming).
type Move struct {
	Vault common.Address
	To    string // the node it goes to (pending moves)
	Epoch uint64 // the epoch it has there
}

// PendingMoves lists the vaults whose move out of this node did not end
// (the node stopped during it): each is unavailable here until settled
// with MoveDone or MoveAbort.
func (m *Manager) PendingMoves() []Move {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Move
	for id, s := range m.places {
		if s.place == left {
			out = append(out, Move{Vault: common.HexToAddress(id), To: s.node, Epoch: s.epoch + 1})
		}
	}
	return out
}

// Incoming lists the received vault files not installed yet.
func (m *Manager) Incoming() []Move {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Move
	for id, s := range m.places {
		if s.place == arriving {
			out = append(out, Move{Vault: common.HexToAddress(id), Epoch: s.epoch})
		}
	}
	return out
}

// scanIncoming finds the received files a stop left behind.
func (m *Manager) scanIncoming() {
	files, _ := filepath.Glob(filepath.Join(m.cfg.Dir, "vaults", "*", "0x*.db"+incomingSuffix))
	for _, f := range files {
		id := strings.TrimSuffix(filepath.Base(f), ".db"+incomingSuffix)
		b, err := os.ReadFile(f + ".epoch")
		e, perr := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64)
		if err != nil || perr != nil || !common.IsHexAddress(id) {
			if errors.Is(err, fs.ErrNotExist) || perr != nil {
				// Its epoch was never written: Receive had not finished.
				os.Remove(f)
				os.Remove(f + ".epoch")
			}
			continue
		}
		m.arrive(id, e)
	}
}

// StandDown is Supersede for a vault no instance runs (between Scan and
// Run): its file becomes a tombstone naming node, at once.
func (m *Manager) StandDown(addr common.Address, node string, epoch uint64) error {
	id := actor.ID(addr)
	m.mu.Lock()
	s := m.placeOf(id)
	running := m.vaults[id] != nil
	m.mu.Unlock()
	if !s.holds() || s.epoch >= epoch {
		return nil
	}
	if running {
		m.Supersede(addr, node, epoch)
		return nil
	}
	// As a move out would: leaving, then moved once its tombstone is
	// written (a file left with only its mark is settled against the
	// directory at the next start).
	if !m.setPlace(id, spot{place: leaving, epoch: s.epoch, node: node}) {
		return fmt.Errorf("stand vault %s down: it is %s here", addr.Hex(), s.place)
	}
	err := m.setMark(id, func(conn *sqlite.Conn) error {
		if err := store.SetMoveMark(conn, node, epoch); err != nil {
			return err
		}
		return store.SetMoved(conn)
	})
	if err != nil {
		return fmt.Errorf("stand vault %s down: %w", addr.Hex(), err)
	}
	m.mu.Lock()
	m.setPlaceLocked(id, spot{place: moved, node: node})
	delete(m.waiting, id)
	m.mu.Unlock()
	m.forget(id)
	m.cfg.Logger.Warn().Str("vault", id).Str("home", node).Uint64("epoch", epoch).Uint64("here", s.epoch).
		Msg("this node's copy of a vault is superseded by one restored on another node: it is kept as a tombstone and never run here")
	return nil
}

// Supersede stands this node's copy of the vault at addr down because the
// directory gives the vault to node at a higher epoch (it was restored
// there while this node was gone): the copy is closed and kept as a
// tombstone, never served or run here again. It returns at once; the
// work runs on a goroutine Close waits for.
func (m *Manager) Supersede(addr common.Address, node string, epoch uint64) {
	id := actor.ID(addr)
	m.mu.Lock()
	s := m.placeOf(id)
	m.mu.Unlock()
	if !s.holds() || s.epoch >= epoch {
		return
	}
	m.wg.Add(1)
	go func() { // stopped by m.ctx, waited for by Close
		defer m.wg.Done()
		ctx, cancel := context.WithTimeout(m.ctx, time.Minute)
		defer cancel()
		if _, err := m.MoveOut(ctx, addr, node); err != nil {
			m.cfg.Logger.Error().Err(err).Str("vault", id).Str("home", node).Msg("a vault superseded by a copy restored elsewhere could not be stood down; it is tried again")
			return
		}
		m.MoveDone(addr)
		m.cfg.Logger.Warn().Str("vault", id).Str("home", node).Uint64("epoch", epoch).Uint64("here", s.epoch).
			Msg("this node's copy of a vault is superseded by one restored on another node: it is kept as a tombstone and never run here")
	}()
}
