package vault

import "testing"

// set wakes the alarm loop only when an alarm became the earliest: every
// vault reports its alarm after each change, and waking the loop for
// nothing cost a goroutine switch on every activation.
func TestAlarmQueueWakesRunOnlyWhenSooner(t *testing.T) {
	q := newAlarmQueue()
	woken := func() bool {
		select {
		case <-q.wake:
			return true
		default:
			return false
		}
	}
	for _, step := range []struct {
		what string
		id   string
		at   int64
		wake bool
	}{
		{"the first alarm", "a", 100, true},
		{"a later one", "b", 200, false},
		{"the same time again", "a", 100, false},
		{"no alarm for a vault without one", "c", 0, false},
		{"one before the earliest", "b", 50, true},
		{"the earliest moved later", "b", 300, false},
		{"the earliest removed", "a", 0, false},
		{"a new earliest", "c", 10, true},
	} {
		q.set(step.id, step.at)
		if got := woken(); got != step.wake {
			t.Errorf("%s: woke the loop %v, want %v", step.what, got, step.wake)
		}
	}
	if at, ok := q.next(); !ok || at != 10 {
		t.Fatalf("next alarm %d %v, want 10", at, ok)
	}
	if due := q.popDue(300); len(due) != 2 || due[0] != "c" || due[1] != "b" {
		t.Fatalf("due at 300: %v, want [c b]", due)
	}
}
