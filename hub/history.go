package hub

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"sync"

	"github.com/spells-dev/spells/internal/atomicfile"
	"github.com/spells-dev/spells/protocol"
)

// History keeps the last values of every signal, so a dashboard can draw a
// chart at once and a new trigger starts from the current value. Signals
// are market data, not user data, so they live here and not in vaults.
// It is safe for concurrent use.
type History struct {
	mu     sync.RWMutex
	n      int
	series map[string][]protocol.Point
	gen    uint64 // values added so far, for savers to see a change
}

// MaxSignals bounds the signals a History keeps: past it, a new signal
// replaces the one whose newest value is the oldest, so a publisher
// inventing names cannot grow the node's memory, its file or the frames
// built from it.
const MaxSignals = 256

// MaxSeriesBytes bounds the encoded series a frame or response carries
// (Recent): each signal keeps its newest points that fit.
const MaxSeriesBytes = 1 << 20

// NewHistory keeps up to n points per signal (default 300).
func NewHistory(n int) *History {
	if n <= 0 {
		n = 300
	}
	return &History{n: n, series: map[string][]protocol.Point{}}
}

// Recent is Snapshot within MaxSeriesBytes: the newest points of every
// signal, as many for each as fit.
func (h *History) Recent() map[string][]protocol.Point {
	out := h.Snapshot()
	total := 0
	for _, pts := range out {
		total += len(pts)
	}
	// A point is at most about 60 bytes of JSON ({"value":…,"at":…},).
	const perPoint = 60
	if total*perPoint <= MaxSeriesBytes || len(out) == 0 {
		return out
	}
	keep := max(1, MaxSeriesBytes/perPoint/len(out))
	for k, pts := range out {
		if len(pts) > keep {
			out[k] = pts[len(pts)-keep:]
		}
	}
	return out
}

// Add records a value.
func (h *History) Add(s Signal) {
	h.mu.Lock()
	defer h.mu.Unlock()
	old, known := h.series[s.Name]
	if n := len(old); n > 0 && old[n-1].At == s.At && old[n-1].Value == s.Value {
		return // the same value again (a replay from the journal)
	}
	if !known && len(h.series) >= MaxSignals {
		h.evictOldestLocked()
	}
	pts := append(old, protocol.Point{Value: s.Value, At: s.At})
	if len(pts) > h.n {
		pts = append(pts[:0:0], pts[len(pts)-h.n:]...)
	}
	h.series[s.Name] = pts
	h.gen++
}

// evictOldestLocked forgets the signal whose newest value is the oldest.
func (h *History) evictOldestLocked() {
	oldest, at := "", int64(math.MaxInt64)
	for k, pts := range h.series {
		if len(pts) == 0 || pts[len(pts)-1].At < at {
			oldest, at = k, 0
			if len(pts) > 0 {
				at = pts[len(pts)-1].At
			}
		}
	}
	delete(h.series, oldest)
}

// Gen counts the values added so far.
func (h *History) Gen() uint64 {
	h.mu.RLock()
	defer h.mu.RUnlock()
	return h.gen
}

// historyFile is the file WriteFile writes and ReadFile reads.
type historyFile struct {
	Series map[string][]protocol.Point `json:"series"`
}

// WriteFile saves every series to path, whole or not at all (a temporary
// file synced, then renamed), so the node's charts survive a restart.
// Signals are market data: they live in a file of their own, never in a
// vault.
func (h *History) WriteFile(path string) error {
	b, err := json.Marshal(historyFile{Series: h.Snapshot()})
	if err != nil {
		return fmt.Errorf("save signal history: %w", err)
	}
	if err := atomicfile.Write(path, b); err != nil {
		return fmt.Errorf("save signal history: %w", err)
	}
	return nil
}

// ReadFile loads what WriteFile saved, keeping the valid points (a name no
// trigger could use, or a value that is not finite, is left out) and at
// most n per signal. A missing file is no error: nothing was saved yet.
func (h *History) ReadFile(path string) error {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read signal history: %w", err)
	}
	var f historyFile
	if err := json.Unmarshal(b, &f); err != nil {
		return fmt.Errorf("read signal history %s: %s", path, protocol.DescribeJSONError(err))
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	for name, pts := range f.Series {
		if !signalNameRe.MatchString(name) {
			continue
		}
		kept := make([]protocol.Point, 0, min(len(pts), h.n))
		for _, p := range pts {
			if !math.IsNaN(p.Value) && !math.IsInf(p.Value, 0) && p.At > 0 {
				kept = append(kept, p)
			}
		}
		if len(kept) > h.n {
			kept = kept[len(kept)-h.n:]
		}
		if len(kept) > 0 {
			h.series[name] = kept
		}
	}
	for len(h.series) > MaxSignals {
		h.evictOldestLocked()
	}
	return nil
}

// Latest returns the newest value of name.
func (h *History) Latest(name string) (float64, bool) {
	h.mu.RLock()
	defer h.mu.RUnlock()
	pts := h.series[name]
	if len(pts) == 0 {
		return 0, false
	}
	return pts[len(pts)-1].Value, true
}

// Snapshot copies every series.
func (h *History) Snapshot() map[string][]protocol.Point {
	h.mu.RLock()
	defer h.mu.RUnlock()
	out := make(map[string][]protocol.Point, len(h.series))
	for k, v := range h.series {
		out[k] = append([]protocol.Point(nil), v...)
	}
	return out
}
