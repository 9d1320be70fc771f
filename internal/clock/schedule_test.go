package clock

import (
	"context"
	"sync"
	"testing"
	"time"

	"go.uber.org/goleak"
)

func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }

var t0 = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

// Set wakes Run only when a deadline became the earliest: every vault
// reports its alarm after each change, and waking the loop for nothing
// cost a goroutine switch on every activation.
func TestSetWakesRunOnlyWhenSooner(t *testing.T) {
	s := NewSchedule(NewFake(t0))
	woken := func() bool {
		select {
		case <-s.wake:
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
		{"the first deadline", "a", 100, true},
		{"a later one", "b", 200, false},
		{"the same time again", "a", 100, false},
		{"none for a name without one", "c", 0, false},
		{"one before the earliest", "b", 50, true},
		{"the earliest moved later", "b", 300, false},
		{"the earliest removed", "a", 0, false},
		{"a new earliest", "c", 10, true},
	} {
		s.Set(step.id, step.at)
		if got := woken(); got != step.wake {
			t.Errorf("%s: woke the loop %v, want %v", step.what, got, step.wake)
		}
	}
	if at, ok := s.next(); !ok || at != 10 {
		t.Fatalf("next deadline %d %v, want 10", at, ok)
	}
	if due := s.popDue(300); len(due) != 2 || due[0] != "c" || due[1] != "b" {
		t.Fatalf("due at 300: %v, want [c b]", due)
	}
}

// Run fires each deadline once, in order, when the fake clock passes it,
// and a deadline set in the past fires at once.
func TestRunFiresAsTheClockMoves(t *testing.T) {
	c := NewFake(t0)
	s := NewSchedule(c)
	fired := make(chan string, 10)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); s.Run(ctx, func(id string) { fired <- id }) }()
	defer func() { cancel(); wg.Wait() }()

	ms := t0.UnixMilli()
	s.Set("late", ms+2000)
	s.Set("soon", ms+1000)
	s.Set("gone", ms+1500)
	s.Set("gone", 0)
	expect := func(want ...string) {
		t.Helper()
		for _, w := range want {
			select {
			case got := <-fired:
				if got != w {
					t.Fatalf("fired %q, want %q", got, w)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("%q did not fire", w)
			}
		}
		select {
		case got := <-fired:
			t.Fatalf("%q fired too", got)
		default:
		}
	}
	waitArmed := func() {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for c.Timers() == 0 {
			if time.Now().After(deadline) {
				t.Fatal("Run armed no timer")
			}
			time.Sleep(time.Millisecond)
		}
	}
	waitArmed()
	c.Advance(999 * time.Millisecond)
	expect()
	c.Advance(time.Millisecond)
	expect("soon")
	waitArmed()
	c.Advance(time.Second)
	expect("late")
	s.Set("past", ms)
	expect("past")
	if s.Len() != 0 {
		t.Fatalf("%d deadlines left", s.Len())
	}
}
