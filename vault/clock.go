package vault

import (
	"sync"
	"time"
)

// Clock is the source of time for vaults and the alarm scheduler. Tests use
// a FakeClock and move it; production uses RealClock.
type Clock interface {
	Now() time.Time
	NewTimer(d time.Duration) Timer
}

// Timer is the part of *time.Timer the scheduler uses.
type Timer interface {
	C() <-chan time.Time
	Stop() bool
	Reset(d time.Duration)
}

// RealClock is the wall clock.
type RealClock struct{}

// Now returns time.Now().
func (RealClock) Now() time.Time { return time.Now() }

// NewTimer returns a real timer.
func (RealClock) NewTimer(d time.Duration) Timer { return realTimer{time.NewTimer(d)} }

type realTimer struct{ t *time.Timer }

func (r realTimer) C() <-chan time.Time   { return r.t.C }
func (r realTimer) Stop() bool            { return r.t.Stop() }
func (r realTimer) Reset(d time.Duration) { r.t.Reset(d) }

// FakeClock is a Clock that moves only when told to. Timers fire, in
// deadline order, when Advance or Set moves the time past their deadline.
// It is safe for concurrent use.
type FakeClock struct {
	mu     sync.Mutex
	now    time.Time
	timers []*fakeTimer
}

// NewFakeClock returns a FakeClock set to t.
func NewFakeClock(t time.Time) *FakeClock { return &FakeClock{now: t} }

// Now returns the fake time.
func (c *FakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

// Advance moves the time forward by d and fires every timer now due.
func (c *FakeClock) Advance(d time.Duration) { c.Set(c.Now().Add(d)) }

// Set moves the time to t and fires every timer now due.
func (c *FakeClock) Set(t time.Time) {
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

// NewTimer returns a timer that fires when the fake time reaches now+d.
func (c *FakeClock) NewTimer(d time.Duration) Timer {
	ft := &fakeTimer{clock: c, ch: make(chan time.Time, 1)}
	ft.Reset(d)
	return ft
}

type fakeTimer struct {
	clock    *FakeClock
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
