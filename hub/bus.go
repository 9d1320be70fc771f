package hub

import (
	"strings"

	"context"
	"errors"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/spells-dev/spells/protocol"
	"math"
	"regexp"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Signal is one value of a named global signal (a price, a gas level…).
type Signal struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
	At    int64   `json:"at"` // unix ms; set by the publisher
	// Source is the price feed round it was read from (nil: a publisher's
	// value).
	Source *protocol.SignalSource `json:"source,omitempty"`
	// Sig is the publisher's signature of the value (protocol.
	// SignalMessage), checked again by every node that delivers it.
	Sig hexutil.Bytes `json:"sig,omitempty"`
	// Received is when this node received it (set by Publish): the lag
	// to fan-out and evaluation is measured from it.
	Received time.Time `json:"-"`
}

var signalNameRe = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9/_.:\-]{0,63}$`)

// Origin is what this node can tell of where s came from: a feed's round,
// or the publisher whose signature it checked itself (a signature that
// does not recover is no origin).
func (s Signal) Origin() protocol.SignalOrigin {
	o := protocol.SignalOrigin{Feed: s.Source != nil, At: s.At}
	if len(s.Sig) > 0 {
		if a, err := protocol.SignalSigner(s.Name, s.Value, s.At, s.Sig); err == nil {
			o.Publisher = strings.ToLower(a.Hex())
		}
	}
	return o
}

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
// goroutine and never waits for delivery; handlers run on the bus's
// delivery goroutine, in publish order, and must not block for long.
type Bus interface {
	Publish(ctx context.Context, s Signal) error
	Subscribe(fn func(Signal)) (unsubscribe func())
}

// MemoryBus is the single-node Bus: it delivers in process, in order, on
// one goroutine. Every value published is delivered while fewer than
// backlog wait; past that, a new value of a signal that already has one
// waiting replaces it (conflation, counted), so under a load it cannot
// carry the bus hands on the latest values instead of queueing without
// bound, and the lag from ingest to delivery stays bounded. Create with
// NewMemoryBus; Close stops it.
type MemoryBus struct {
	backlog   int
	conflated prometheus.Counter

	mu      sync.Mutex
	queue   []Signal
	head    int            // sequence number of queue[0]
	latest  map[string]int // signal name → sequence number of its newest waiting value
	closed  bool
	wake    chan struct{}
	done    chan struct{}
	wg      sync.WaitGroup
	subsMu  sync.RWMutex
	subs    map[int]func(Signal)
	nextSub int
}

var _ Bus = (*MemoryBus)(nil)

// NewMemoryBus starts a bus that conflates past backlog waiting values
// (default 1024), counting each replaced value in conflated (may be nil).
func NewMemoryBus(backlog int, conflated prometheus.Counter) *MemoryBus {
	if backlog <= 0 {
		backlog = 1024
	}
	b := &MemoryBus{backlog: backlog, conflated: conflated, latest: map[string]int{}, wake: make(chan struct{}, 1),
		done: make(chan struct{}), subs: map[int]func(Signal){}}
	b.wg.Add(1)
	go b.run()
	return b
}

func (b *MemoryBus) run() {
	defer b.wg.Done()
	for {
		select {
		case <-b.wake:
		case <-b.done:
			return
		}
		for {
			s, ok := b.pop()
			if !ok {
				break
			}
			b.subsMu.RLock()
			for _, fn := range b.subs {
				fn(s)
			}
			b.subsMu.RUnlock()
		}
	}
}

func (b *MemoryBus) pop() (Signal, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.queue) == 0 || b.closed {
		return Signal{}, false
	}
	s := b.queue[0]
	b.queue[0] = Signal{}
	b.queue = b.queue[1:]
	if b.latest[s.Name] == b.head {
		delete(b.latest, s.Name)
	}
	b.head++
	if len(b.queue) == 0 {
		b.queue = nil
	}
	return s, true
}

// ErrBusClosed is returned by Publish after Close.
var ErrBusClosed = errors.New("signal bus closed")

// Publish queues s for delivery and returns at once.
func (b *MemoryBus) Publish(_ context.Context, s Signal) error {
	if s.Received.IsZero() {
		s.Received = time.Now()
	}
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return ErrBusClosed
	}
	if seq, ok := b.latest[s.Name]; ok && len(b.queue) >= b.backlog {
		b.queue[seq-b.head] = s
		b.mu.Unlock()
		if b.conflated != nil {
			b.conflated.Inc()
		}
		return nil
	}
	b.latest[s.Name] = b.head + len(b.queue)
	b.queue = append(b.queue, s)
	b.mu.Unlock()
	select {
	case b.wake <- struct{}{}:
	default:
	}
	return nil
}

// Subscribe registers fn for every later signal.
func (b *MemoryBus) Subscribe(fn func(Signal)) func() {
	b.subsMu.Lock()
	id := b.nextSub
	b.nextSub++
	b.subs[id] = fn
	b.subsMu.Unlock()
	return func() {
		b.subsMu.Lock()
		delete(b.subs, id)
		b.subsMu.Unlock()
	}
}

// Close stops delivery. Signals still queued are dropped.
func (b *MemoryBus) Close() {
	b.mu.Lock()
	if !b.closed {
		b.closed = true
		close(b.done)
	}
	b.mu.Unlock()
	b.wg.Wait()
}
