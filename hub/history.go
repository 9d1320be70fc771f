package hub

import (
	"sync"

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
}

// NewHistory keeps up to n points per signal (default 300).
func NewHistory(n int) *History {
	if n <= 0 {
		n = 300
	}
	return &History{n: n, series: map[string][]protocol.Point{}}
}

// Add records a value.
func (h *History) Add(s Signal) {
	h.mu.Lock()
	defer h.mu.Unlock()
	pts := append(h.series[s.Name], protocol.Point{Value: s.Value, At: s.At})
	if len(pts) > h.n {
		pts = append(pts[:0:0], pts[len(pts)-h.n:]...)
	}
	h.series[s.Name] = pts
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
