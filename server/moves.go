package main

import (
	"context"
	"math"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/spells-dev/spells/hub"
	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/vault/rules"
)

// mover makes the move signals the node's vaults wait on: for each value
// of a signal, the percent it stands from the highest (a fall) or lowest
// (a rise) of that signal's values within each window a move names,
// published as the move's signal. Each window is kept as a monotonic
// queue (its extreme at the front), filled from the node's history of the
// signal when a move is first asked for; after a restart it fills again
// from that history. Values reach it from the bus's goroutine through a
// bounded queue it never blocks (a value shed is counted).
type mover struct {
	in     chan observed
	moves  func() map[string]string
	hist   func() map[string][]protocol.Point
	bus    hub.Bus
	log    zerolog.Logger
	shed   prometheus.Counter
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

type observed struct {
	name  string
	value float64
	at    time.Time
}

// window is one move's queue: values at or above (a fall's) or at or
// below (a rise's) every later one, oldest first.
type window struct {
	name string // the move's signal
	drop bool
	span time.Duration
	q    []protocol.Point
	last float64
	sent bool
}

const moverQueue = 4096

func startMover(bus hub.Bus, moves func() map[string]string, hist func() map[string][]protocol.Point, reg prometheus.Registerer, log zerolog.Logger) *mover {
	ctx, cancel := context.WithCancel(context.Background())
	mv := &mover{in: make(chan observed, moverQueue), moves: moves, hist: hist, bus: bus, log: log, cancel: cancel,
		shed: prometheus.NewCounter(prometheus.CounterOpts{Name: "spells_moves_shed_total",
			Help: "Signal values the move maker could not take in time (its queue was full): the moves of that tick were not computed."})}
	if reg != nil {
		reg.MustRegister(mv.shed)
	}
	mv.wg.Add(1)
	go func() {
		defer mv.wg.Done()
		mv.run(ctx)
	}()
	return mv
}

// observe hands the mover a signal's value; it never waits.
func (mv *mover) observe(name string, value float64, at time.Time) {
	if strings.HasPrefix(name, protocol.MovePrefix) || strings.HasPrefix(name, protocol.ReadPrefix) {
		return
	}
	select {
	case mv.in <- observed{name, value, at}:
	default:
		mv.shed.Inc()
	}
}

func (mv *mover) stop() {
	mv.cancel()
	mv.wg.Wait()
}

func (mv *mover) run(ctx context.Context) {
	byKey := map[string]*window{}      // by rules.MoveKey
	bySignal := map[string][]*window{} // by the signal that moves
	refresh := time.NewTicker(500 * time.Millisecond)
	defer refresh.Stop()
	refreshMoves := func() {
		want := mv.moves()
		keys := map[string]string{} // key → move signal
		for name, key := range want {
			keys[key] = name
		}
		changed := false
		for key := range byKey {
			if _, ok := keys[key]; !ok {
				delete(byKey, key)
				changed = true
			}
		}
		var hist map[string][]protocol.Point
		for key, name := range keys {
			if byKey[key] != nil {
				continue
			}
			drop, span, of, parsed := rules.ParseMoveKey(key)
			if !parsed {
				continue
			}
			w := &window{name: name, drop: drop, span: span}
			if hist == nil {
				hist = mv.hist()
			}
			var v float64
			var ok bool
			var at int64
			for _, p := range hist[of] {
				v, ok = w.push(p)
				at = p.At
			}
			byKey[key] = w
			changed = true
			if ok {
				// A new move starts from where its signal stands now.
				mv.publish(ctx, w, v, at)
			}
		}
		if changed {
			bySignal = map[string][]*window{}
			for key, w := range byKey {
				_, _, of, _ := rules.ParseMoveKey(key)
				bySignal[of] = append(bySignal[of], w)
			}
		}
	}
	refreshMoves()
	for {
		select {
		case <-ctx.Done():
			return
		case <-refresh.C:
			refreshMoves()
		case o := <-mv.in:
			for _, w := range bySignal[o.name] {
				if v, ok := w.push(protocol.Point{Value: o.value, At: o.at.UnixMilli()}); ok {
					mv.publish(ctx, w, v, o.at.UnixMilli())
				}
			}
		}
	}
}

// publish sends a move's value as its signal, unless it is the one sent
// last.
func (mv *mover) publish(ctx context.Context, w *window, v float64, at int64) {
	if w.sent && v == w.last {
		return
	}
	w.last, w.sent = v, true
	if err := mv.bus.Publish(ctx, hub.Signal{Name: w.name, Value: v, At: at}); err != nil && ctx.Err() == nil {
		mv.log.Warn().Err(err).Str("signal", w.name).Msg("move: publish")
	}
}

// push adds a value and returns the percent it stands from the window's
// extreme (rounded to a millionth of a percent); ok is false while the
// extreme is not a positive number.
func (w *window) push(p protocol.Point) (float64, bool) {
	for len(w.q) > 0 {
		back := w.q[len(w.q)-1]
		if (w.drop && back.Value <= p.Value) || (!w.drop && back.Value >= p.Value) {
			w.q = w.q[:len(w.q)-1]
			continue
		}
		break
	}
	w.q = append(w.q, p)
	cut := p.At - w.span.Milliseconds()
	i := 0
	for i < len(w.q)-1 && w.q[i].At < cut {
		i++
	}
	w.q = w.q[i:]
	ext := w.q[0].Value
	if !(ext > 0) {
		return 0, false
	}
	return math.Round((p.Value-ext)/ext*100*1e6) / 1e6, true
}
