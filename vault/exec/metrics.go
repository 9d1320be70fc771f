package exec

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the collectors of intents' lives.
type Metrics struct {
	// IllegalMoves counts steps the intent table does not allow (a bug if
	// not 0): the step is refused and the intent keeps its status.
	IllegalMoves prometheus.Counter
	// Moves counts intents' moves, by the status they moved to.
	Moves *prometheus.CounterVec
}

// NewMetrics creates the collectors and registers them with reg (nil: not
// registered, for tests).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		IllegalMoves: prometheus.NewCounter(prometheus.CounterOpts{Name: "spells_intent_illegal_moves_total",
			Help: "Intent steps the intent's transition table does not allow (refused; a bug if not 0)."}),
		Moves: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "spells_intent_moves_total",
			Help: "Intents' moves, by the status they moved to."}, []string{"to"}),
	}
	if reg != nil {
		reg.MustRegister(m.IllegalMoves, m.Moves)
	}
	return m
}
