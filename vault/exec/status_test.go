package exec

import (
	"slices"
	"testing"

	"github.com/spells-dev/spells/protocol"
)

// The table: an ended intent never moves; every status that has not ended
// can reach an end; the protocol's names round-trip.
func TestIntentTable(t *testing.T) {
	for s := Status(0); s < numStatuses; s++ {
		back, ok := ParseStatus(s.String())
		if !ok || back != s {
			t.Fatalf("%s does not round-trip", s)
		}
		for step := Step(0); step < numSteps; step++ {
			to, ok := Move(s, step)
			if s.Ended() && ok {
				t.Errorf("ended %s moves by %s to %s", s, step, to)
			}
		}
		if !s.Ended() && !reachesEnd(s, map[Status]bool{}) {
			t.Errorf("%s can never end", s)
		}
	}
	if _, ok := ParseStatus("lost"); ok {
		t.Fatal("an unknown status parsed")
	}
	if _, ok := Move(numStatuses, Sign); ok {
		t.Fatal("an unknown status moved")
	}
	want := []string{protocol.IntentPending, protocol.IntentSigned, protocol.IntentSubmitted, protocol.IntentIncluded, protocol.IntentConfirmed}
	if got := OpenStatuses(); !slices.Equal(got, want) {
		t.Fatalf("open statuses %v, want %v", got, want)
	}
}

func reachesEnd(s Status, seen map[Status]bool) bool {
	if s.Ended() {
		return true
	}
	seen[s] = true
	for step := Step(0); step < numSteps; step++ {
		if to, ok := Move(s, step); ok && !seen[to] && reachesEnd(to, seen) {
			return true
		}
	}
	return false
}
