package rendezvous

import (
	"fmt"
	"testing"
)

// Pick spreads keys evenly, does not depend on the members' order, and a
// member leaving moves only the keys it held.
func TestPick(t *testing.T) {
	ids := []string{"node-1", "node-2", "node-3"}
	reversed := []string{"node-3", "node-2", "node-1"}
	without2 := []string{"node-1", "node-3"}
	count := map[string]int{}
	const n = 30000
	for i := 0; i < n; i++ {
		key := fmt.Sprintf("0x%040x", i)
		got := ids[Pick(key, ids)]
		count[got]++
		if r := reversed[Pick(key, reversed)]; r != got {
			t.Fatalf("%s: %s, or %s with the members reversed", key, got, r)
		}
		if w := without2[Pick(key, without2)]; got != "node-2" && w != got {
			t.Fatalf("%s moved from %s to %s when node-2 left", key, got, w)
		}
	}
	for _, id := range ids {
		if c := count[id]; c < n/3*95/100 || c > n/3*105/100 {
			t.Errorf("%s got %d of %d keys; want within 5%% of a third", id, c, n)
		}
	}
	if Pick("x", nil) != -1 {
		t.Fatal("a key placed on no member")
	}
}
