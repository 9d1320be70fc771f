package hub

import (
	"context"
	"errors"
	"math"
	"regexp"
	"sync"
)

// Signal is one value of a named global signal (a price, a gas level…).
type Signal struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
	At    int64   `json:"at"` // unix ms; set by the publisher
}

var signalNameRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9/_.:\-]{0,63}$`)

// Validate refuses a signal no trigger could use.
func (s Signal) Validate() error {
	if !signalNameRe.MatchString(s.Name) {
		return errors.New("name must be 1 to 64 letters, digits or / _ . : - (starting with a letter or digit)")
	}
	if math.IsNaN(s.Value) || math.IsInf(s.Value, 0) {
		return errors.New("value must be a finite number")
	}
	if s.At <= 0 {
		return errors.New("at must be a positive unix time in milliseconds")
	}
	return nil
}

// Bus carries signals to every node. Publish may be called from any
// goroutine; handlers run on the bus's delivery goroutine, in publish order,
// and must not block for long.
type Bus interface {
	Publish(ctx context.Context, s Signal) error
	Subscribe(fn func(Signal)) (unsubscribe func())
}

// MemoryBus is the single-node Bus: it delivers in process, in order, on
// one goroutine. Create with NewMemoryBus; Close stops it.
type MemoryBus struct {
	ch   chan Signal
	done chan struct{}
	wg   sync.WaitGroup

	mu   sync.RWMutex
	subs map[int]func(Signal)
	next int
}

var _ Bus = (*MemoryBus)(nil)

// NewMemoryBus starts a bus with a queue of size buffered signals.
func NewMemoryBus(size int) *MemoryBus {
	if size <= 0 {
		size = 1024
	}
	b := &MemoryBus{ch: make(chan Signal, size), done: make(chan struct{}), subs: map[int]func(Signal){}}
	b.wg.Add(1)
	go b.run()
	return b
}

func (b *MemoryBus) run() {
	defer b.wg.Done()
	for {
		select {
		case s := <-b.ch:
			b.mu.RLock()
			for _, fn := range b.subs {
				fn(s)
			}
			b.mu.RUnlock()
		case <-b.done:
			return
		}
	}
}

// ErrBusClosed is returned by Publish after Close.
var ErrBusClosed = errors.New("signal bus closed")

// Publish queues s for delivery; it blocks while the queue is full.
func (b *MemoryBus) Publish(ctx context.Context, s Signal) error {
	select {
	case <-b.done:
		return ErrBusClosed
	default:
	}
	select {
	case b.ch <- s:
		return nil
	case <-b.done:
		return ErrBusClosed
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Subscribe registers fn for every later signal.
func (b *MemoryBus) Subscribe(fn func(Signal)) func() {
	b.mu.Lock()
	id := b.next
	b.next++
	b.subs[id] = fn
	b.mu.Unlock()
	return func() {
		b.mu.Lock()
		delete(b.subs, id)
		b.mu.Unlock()
	}
}

// Close stops delivery. Signals still queued are dropped.
func (b *MemoryBus) Close() {
	select {
	case <-b.done:
	default:
		close(b.done)
	}
	b.wg.Wait()
}
