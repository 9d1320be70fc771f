package clock

import (
	"container/heap"
	"context"
	"sync"
	"time"
)

// Schedule holds named deadlines (unix milliseconds) and calls fire for
// each one as it comes due, on the goroutine of Run: one timer for any
// number of them. Setting a name again moves its deadline. It is safe for
// concurrent use.
type Schedule struct {
	clock Clock
	mu    sync.Mutex
	h     entries
	idx   map[string]*entry
	wake  chan struct{}
}

type entry struct {
	id  string
	at  int64 // unix ms
	pos int
}

type entries []*entry

func (h entries) Len() int           { return len(h) }
func (h entries) Less(i, j int) bool { return h[i].at < h[j].at }
func (h entries) Swap(i, j int)      { h[i], h[j] = h[j], h[i]; h[i].pos = i; h[j].pos = j }
func (h *entries) Push(x any)        { e := x.(*entry); e.pos = len(*h); *h = append(*h, e) }
func (h *entries) Pop() any {
	old := *h
	e := old[len(old)-1]
	*h = old[:len(old)-1]
	return e
}

// NewSchedule returns an empty schedule on c.
func NewSchedule(c Clock) *Schedule {
	return &Schedule{clock: c, idx: map[string]*entry{}, wake: make(chan struct{}, 1)}
}

// Set makes id due at unix ms at; 0 removes it. Run's timer is re-armed
// only when id became the earliest deadline: one that moved later or went
// away at worst lets the timer ring early, and Run re-arms it then.
func (s *Schedule) Set(id string, at int64) {
	s.mu.Lock()
	e, ok := s.idx[id]
	switch {
	case ok && e.at == at, !ok && at == 0:
		s.mu.Unlock()
		return
	case at == 0:
		heap.Remove(&s.h, e.pos)
		delete(s.idx, id)
	case ok:
		e.at = at
		heap.Fix(&s.h, e.pos)
	default:
		e = &entry{id: id, at: at}
		heap.Push(&s.h, e)
		s.idx[id] = e
	}
	sooner := at != 0 && s.h[0] == e
	s.mu.Unlock()
	if sooner {
		select {
		case s.wake <- struct{}{}:
		default:
		}
	}
}

// Len returns how many deadlines are set.
func (s *Schedule) Len() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.h)
}

// popDue removes and returns the ids due at or before now.
func (s *Schedule) popDue(now int64) []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []string
	for len(s.h) > 0 && s.h[0].at <= now {
		e := heap.Pop(&s.h).(*entry)
		delete(s.idx, e.id)
		out = append(out, e.id)
	}
	return out
}

// next returns the earliest deadline.
func (s *Schedule) next() (int64, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.h) == 0 {
		return 0, false
	}
	return s.h[0].at, true
}

// arm sets timer to the earliest deadline (or an hour from now). A timer
// that can take an absolute deadline (Fake's) gets one, so a clock that
// moves between reading it and arming cannot make a deadline late.
func (s *Schedule) arm(timer Timer) {
	at, ok := s.next()
	if abs, can := timer.(interface{ ResetAt(time.Time) }); can {
		if !ok {
			abs.ResetAt(s.clock.Now().Add(time.Hour))
			return
		}
		abs.ResetAt(time.UnixMilli(at))
		return
	}
	d := time.Hour
	if ok {
		d = time.UnixMilli(at).Sub(s.clock.Now())
	}
	timer.Reset(d)
}

// Run calls fire for each deadline as it comes due, until ctx ends. fire
// must not block for long.
func (s *Schedule) Run(ctx context.Context, fire func(id string)) {
	timer := s.clock.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		for _, id := range s.popDue(s.clock.Now().UnixMilli()) {
			fire(id)
		}
		s.arm(timer)
		select {
		case <-ctx.Done():
			return
		case <-timer.C():
		case <-s.wake:
		}
	}
}
