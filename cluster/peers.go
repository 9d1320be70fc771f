package cluster

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spells-dev/spells/internal/atomicfile"
)

// The peers a node has seen, kept on its disk: after Redis lost the
// directory, a vault may be created only once every node that holds
// vaults has written its homes back, and the nodes down at that moment
// are known only from here. A node that drained and left is forgotten by
// every node (the left set); one gone for good without a drain is
// forgotten by an operator (Directory.Forget).

// peerBook is <data>/cluster.json.
type peerBook struct {
	path       string
	Generation string           `json:"generation"`      // the directory's, when this node last saw it
	Seen       map[string]int64 `json:"seen"`            // node id → when last seen alive (unix ms)
	Gone       map[string]int64 `json:"gone,omitempty"`  // node id → when it left or was forgotten (unix ms): another node's wait for it is not this node's
	Proof      string           `json:"proof,omitempty"` // the cluster's proof this node joined under (proof.go)
	written    time.Time
}

func loadPeers(path string) (*peerBook, error) {
	b := &peerBook{path: path, Seen: map[string]int64{}, Gone: map[string]int64{}}
	if path == "" {
		return b, nil
	}
	raw, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return b, nil
	}
	if err != nil {
		return nil, fmt.Errorf("cluster peers: %w", err)
	}
	if err := json.Unmarshal(raw, b); err != nil {
		return nil, fmt.Errorf("cluster peers %s: %w", path, err)
	}
	if b.Seen == nil {
		b.Seen = map[string]int64{}
	}
	if b.Gone == nil {
		b.Gone = map[string]int64{}
	}
	return b, nil
}

// save writes the book atomically (a temporary file renamed over it).
func (b *peerBook) save() error {
	b.written = time.Now()
	if b.path == "" {
		return nil
	}
	raw, _ := json.MarshalIndent(b, "", "  ")
	return atomicfile.Write(b.path, raw)
}

// AwaitingError refuses to create a vault while nodes this node has seen
// have not written their homes back since Redis lost the directory. It is
// one way the directory is being rebuilt: errors.Is(err, ErrRebuilding).
type AwaitingError struct{ Nodes []string }

// Is makes an AwaitingError an ErrRebuilding, with the nodes it waits for.
func (e *AwaitingError) Is(target error) bool { return target == ErrRebuilding }

func (e *AwaitingError) Error() string {
	return "the cluster's directory was lost and is being rebuilt: waiting for node " + strings.Join(e.Nodes, ", ") +
		" to rejoin (its vaults' homes); a node gone for good is forgotten with POST /v1/admin/forget-node?node=ID on every node"
}

// awaitingLocked is the sorted list of nodes awaited; d.mu is held.
func (d *Directory) awaitingLocked() []string {
	out := make([]string, 0, len(d.awaiting))
	for id := range d.awaiting {
		out = append(out, id)
	}
	slices.Sort(out)
	return out
}

// seeLocked records the live members and the nodes that left, and stops
// awaiting those present; d.mu is held. It writes the book when its set
// of nodes changed, or a minute after it was last written.
func (d *Directory) seeLocked(members []Member, left []string, now time.Time) {
	changed := false
	for _, m := range members {
		if _, ok := d.book.Seen[m.ID]; !ok {
			changed = true
		}
		d.book.Seen[m.ID] = now.UnixMilli()
		delete(d.book.Gone, m.ID)
		delete(d.awaiting, m.ID)
	}
	for _, id := range left {
		if id == d.cfg.Node {
			continue
		}
		if _, ok := d.book.Seen[id]; ok {
			changed = true
			d.log.Info().Str("peer", id).Msg("a node drained and left the cluster; it is no longer awaited after a directory loss")
		}
		delete(d.book.Seen, id)
		delete(d.awaiting, id)
		d.book.Gone[id] = now.UnixMilli()
	}
	if changed || now.Sub(d.book.written) > time.Minute {
		if err := d.book.save(); err != nil {
			d.log.Warn().Err(err).Msg("could not write the cluster's peers to disk")
		}
	}
}

// Forget stops remembering a node that is gone for good (its data
// directory is lost): after a directory loss it is not awaited. Its
// vaults, if any, are gone with it.
func (d *Directory) Forget(id string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	_, known := d.book.Seen[id]
	delete(d.book.Seen, id)
	delete(d.awaiting, id)
	d.book.Gone[id] = time.Now().UnixMilli()
	if err := d.book.save(); err != nil {
		d.log.Warn().Err(err).Msg("could not write the cluster's peers to disk")
	}
	d.log.Warn().Str("peer", id).Bool("known", known).Msg("node forgotten: it is no longer awaited after a directory loss")
	return known
}
