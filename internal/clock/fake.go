package clock

import (
	"sync"
	"time"
)

// Fake is a Clock that moves only when told to. Timers fire, in deadline
// order, when Advance or Set moves the time past their deadline. It is
// safe for concurrent use.
type Fake struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

// NewFake returns a Fake set to t.
func NewFake(t time.Time) *Fake { return &Fake{now: t} }

// Now returns the fake time.
func (c *Fake) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the time forward by d and fires every timer now due.
func (c *Fake) Advance(d time.Duration) { c.Set(c.Now().Add(d)) }

// Set moves the time to t and fires every timer now due.
func (c *Fake) Set(t time.Time) {
	c.mu.Lock()
	c.now = t
	var due []*fakeTimer
	keep := c.timers[:0]
	for _, ft := range c.timers {
		if !ft.deadline.After(t) {
			due = append(due, ft)
		} else {
			keep = append(keep, ft)
		}
	}
	c.timers = keep
	c.mu.Unlock()
	for _, ft := range due {
		select {
		case ft.ch <- t:
		default:
		}
	}
}

// Timers returns how many timers are armed: a test waits for the part it
// drives to arm its next one before it moves the time.
func (c *Fake) Timers() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.timers)
}

// NewTimer returns a timer that fires when the fake time reaches now+d.
func (c *Fake) NewTimer(d time.Duration) Timer {
	ft := &fakeTimer{clock: c, ch: make(chan time.Time, 1)}
	ft.Reset(d)
	return ft
}

type fakeTimer struct {
	clock    *Fake
	ch       chan time.Time
	deadline time.Time
}

func (t *fakeTimer) C() <-chan time.Time { return t.ch }

func (t *fakeTimer) Stop() bool {
	c := t.clock
	c.mu.Lock()
	defer c.mu.Unlock()
	for i, ft := range c.timers {
		if ft == t {
			c.timers = append(c.timers[:i], c.timers[i+1:]...)
			return true
		}
	}
	return false
}

func (t *fakeTimer) Reset(d time.Duration) {
	t.clock.mu.Lock()
	deadline := t.clock.now.Add(d)
	t.clock.mu.Unlock()
	t.ResetAt(deadline)
}

// ResetAt arms the timer for an absolute fake time; it fires at once if
// that time has passed.
func (t *fakeTimer) ResetAt(deadline time.Time) {
	t.Stop()
	c := t.clock
	c.mu.Lock()
	t.deadline = deadline
	fire := !deadline.After(c.now)
	if !fire {
		c.timers = append(c.timers, t)
	}
	now := c.now
	c.mu.Unlock()
	if fire {
		select {
		case t.ch <- now:
		default:
		}
	}
}
