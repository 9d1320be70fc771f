package hub

import (
	"strings"
	"time"

	"github.com/spells-dev/spells/protocol"
)

// Live signals: the bus delivers each value to the hub, which hands it to
// the vaults and to its fan-out, a goroutine that queues it to every
// signed-in connection, conflating per signal when it falls behind.

// onSignal runs on the bus goroutine for every signal. It never waits:
// the crossed vaults get the value in their inbox, and the dashboards'
// frames go to the fan-out goroutine, so the next signal's evaluation
// never waits behind this one's fan-out.
func (h *Hub) onSignal(s Signal) {
	h.cfg.Metrics.SignalsIn.Inc()
	h.cfg.History.Add(s)
	h.cfg.Vaults.SignalReceived(s.Name, s.Value, s.Received, s.Origin())
	if !strings.HasPrefix(s.Name, protocol.ReadPrefix) && !strings.HasPrefix(s.Name, protocol.MovePrefix) {
		// A signal the node makes for its vaults (a chain read, a move)
		// is for the vaults that wait on it, not every dashboard's chart.
		h.fan.put(s)
	}
}

func startFanout(h *Hub) *fanout {
	f := &fanout{h: h, pending: map[string]Signal{}, wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	go f.run()
	return f
}

func (f *fanout) put(s Signal) {
	f.mu.Lock()
	if _, ok := f.pending[s.Name]; ok {
		f.h.cfg.Metrics.FanoutConflated.Inc()
	} else {
		f.order = append(f.order, s.Name)
	}
	f.pending[s.Name] = s
	f.mu.Unlock()
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

func (f *fanout) take() []Signal {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]Signal, 0, len(f.order))
	for _, name := range f.order {
		out = append(out, f.pending[name])
		delete(f.pending, name)
	}
	f.order = f.order[:0]
	return out
}

func (f *fanout) run() {
	defer close(f.done)
	for {
		select {
		case <-f.wake:
		case <-f.stop:
			return
		}
		for _, s := range f.take() {
			f.h.pushSignal(s)
		}
	}
}

// close stops the fan-out goroutine and waits for it.
func (f *fanout) close() {
	select {
	case <-f.stop:
	default:
		close(f.stop)
	}
	<-f.done
}

// fanoutHook, when set by a test, runs before each signal's fan-out.
var fanoutHook func()

// pushSignal queues one signal frame to every signed-in connection (each
// conflates it with an unwritten one of the same signal).
func (h *Hub) pushSignal(s Signal) {
	if fanoutHook != nil {
		fanoutHook()
	}
	frame := mustJSON(protocol.SignalFrame{Type: protocol.TypeSignal, Name: s.Name, Value: s.Value, At: s.At, Source: s.Source})
	out := signalOut{frame: frame, framed: appendTextFrame(make([]byte, 0, len(frame)+textHeaderMax), frame)}
	h.mu.Lock()
	conns := make([]*conn, 0, len(h.conns))
	for c := range h.conns {
		conns = append(conns, c)
	}
	h.mu.Unlock()
	for _, c := range conns {
		// A forwarded session gets its signals from the node its client
		// is on, which has them all too.
		if c.signedIn.Load() && c.up == nil {
			c.SendSignal(s.Name, out)
			h.cfg.Metrics.SignalsPushed.Inc()
		}
	}
	if !s.Received.IsZero() {
		h.cfg.Metrics.FanoutLag.Observe(time.Since(s.Received).Seconds())
	}
}
