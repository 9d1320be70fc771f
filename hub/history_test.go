package hub

import (
	"encoding/json"
	"fmt"
	"testing"
)

// A history keeps at most MaxSignals signals, forgetting the one whose
// newest value is the oldest, and Recent fits MaxSeriesBytes however many
// points there are.
func TestHistoryIsBounded(t *testing.T) {
	h := NewHistory(0)
	for i := 0; i < MaxSignals+10; i++ {
		for j := 0; j < 300; j++ {
			h.Add(Signal{Name: fmt.Sprintf("S/%d", i), Value: float64(j), At: int64(i*1000 + j + 1)})
		}
	}
	all := h.Snapshot()
	if len(all) != MaxSignals {
		t.Fatalf("%d signals kept, want %d", len(all), MaxSignals)
	}
	if _, ok := all["S/0"]; ok {
		t.Fatal("the signal with the oldest value was kept")
	}
	if _, ok := all[fmt.Sprintf("S/%d", MaxSignals+9)]; !ok {
		t.Fatal("the newest signal was not kept")
	}
	b, _ := json.Marshal(h.Recent())
	if len(b) > MaxSeriesBytes {
		t.Fatalf("Recent encodes to %d bytes, more than %d", len(b), MaxSeriesBytes)
	}
	for k, pts := range h.Recent() {
		if len(pts) == 0 || pts[len(pts)-1] != all[k][len(all[k])-1] {
			t.Fatalf("%s lost its newest point", k)
		}
	}
}
