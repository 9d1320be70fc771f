package vault

import (
	"container/heap"
	"context"
	"sync"
	"time"
)

// alarmQueue holds, for every vault with something due, the time it must
// be woken: one timer structure for the whole node. It is safe for
// concurrent use.
type alarmQueue struct {
	mu   sync.Mutex
	h    alarmHeap
	idx  map[string]*alarmItem
	wake chan struct{}
}

type alarmItem struct {
	id  string
	at  int64 // unix ms
	pos int
}

type alarmHeap []*alarmItem

func (h alarmHeap) Len() int           { return len(h) }
func (h alarmHeap) Less(i, j int) bool { return h[i].at < h[j].at }
func (h alarmHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i]; h[i].pos = i; h[j].pos = j }
func (h *alarmHeap) Push(x any)        { it := x.(*alarmItem); it.pos = len(*h); *h = append(*h, it) }
func (h *alarmHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	*h = old[:len(old)-1]
	return it
}

func newAlarmQueue() *alarmQueue {
	return &alarmQueue{idx: map[string]*alarmItem{}, wake: make(chan struct{}, 1)}
}

// set schedules id at unix ms at; 0 removes its alarm. Every vault
// reports its next alarm after each change and activation, so set wakes
// run only when the timer must ring sooner: when this alarm became the
// earliest. An alarm that moved later or went away at worst lets the timer
// ring early, and run re-arms it then.
func (q *alarmQueue) set(id string, at int64) {
	q.mu.Lock()
	it, ok := q.idx[id]
	switch {
	case ok && it.at == at, !ok && at == 0:
		q.mu.Unlock()
		return
	case at == 0:
		heap.Remove(&q.h, it.pos)
		delete(q.idx, id)
	case ok:
		it.at = at
		heap.Fix(&q.h, it.pos)
	default:
		it = &alarmItem{id: id, at: at}
		heap.Push(&q.h, it)
		q.idx[id] = it
	}
	sooner := at != 0 && q.h[0] == it
	q.mu.Unlock()
	if sooner {
		select {
		case q.wake <- struct{}{}:
		default:
		}
	}
}

// popDue removes and returns the ids due at or before now.
func (q *alarmQueue) popDue(now int64) []string {
	q.mu.Lock()
	defer q.mu.Unlock()
	var out []string
	for len(q.h) > 0 && q.h[0].at <= now {
		it := heap.Pop(&q.h).(*alarmItem)
		delete(q.idx, it.id)
		out = append(out, it.id)
	}
	return out
}

// next returns the earliest alarm.
func (q *alarmQueue) next() (int64, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	if len(q.h) == 0 {
		return 0, false
	}
	return q.h[0].at, true
}

// armTimer sets timer to the earliest alarm (or an hour from now). A timer
// that can take an absolute deadline (FakeClock's) gets one, so a clock
// that moves between reading it and arming cannot make the alarm late.
func armTimer(clock Clock, timer Timer, q *alarmQueue) {
	at, ok := q.next()
	if abs, can := timer.(interface{ ResetAt(time.Time) }); can {
		if !ok {
			abs.ResetAt(clock.Now().Add(time.Hour))
			return
		}
		abs.ResetAt(time.UnixMilli(at))
		return
	}
	d := time.Hour
	if ok {
		d = time.UnixMilli(at).Sub(clock.Now())
	}
	timer.Reset(d)
}

// run wakes vaults when their alarms come due, until ctx ends. fire is
// called for each due vault id and must not block for long.
func (q *alarmQueue) run(ctx context.Context, clock Clock, fire func(id string)) {
	timer := clock.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		now := clock.Now()
		for _, id := range q.popDue(now.UnixMilli()) {
			fire(id)
		}
		armTimer(clock, timer, q)
		select {
		case <-ctx.Done():
			return
		case <-timer.C():
		case <-q.wake:
		}
	}
}
