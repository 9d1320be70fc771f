package hub

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the hub's Prometheus collectors.
type Metrics struct {
	Connections   prometheus.Gauge
	Accepted      prometheus.Counter
	OriginRefused prometheus.Counter
	Refused       *prometheus.CounterVec
	FrameErrors   *prometheus.CounterVec
	Disconnects   *prometheus.CounterVec
	RateLimited   prometheus.Counter
	SignalsIn     prometheus.Counter
	SignalsPushed prometheus.Counter
	FramesSent    prometheus.Counter

	SignInsLimited  prometheus.Counter
	BusConflated    prometheus.Counter
	FanoutConflated prometheus.Counter
	FanoutLag       prometheus.Histogram

	Forwarded     prometheus.Counter // sessions other nodes forwarded here
	ForwardedOpen prometheus.Gauge
	ForwardFailed prometheus.Counter // sign-ins this node could not forward
}

// NewMetrics creates the collectors and registers them with reg (nil: not
// registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Connections: prometheus.NewGauge(prometheus.GaugeOpts{Name: "spells_ws_connections", Help: "Open WebSocket connections."}),
		Accepted:    prometheus.NewCounter(prometheus.CounterOpts{Name: "spells_ws_accepted_total", Help: "WebSocket upgrades accepted."}),
		Refused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "spells_ws_refused_total",
			Help: "WebSocket upgrades refused, by reason: connection_limit (the node's), per_address (too many unauthenticated sockets from one address)."}, []string{"reason"}),
		OriginRefused: prometheus.NewCounter(prometheus.CounterOpts{Name: "spells_ws_origin_refused_total", Help: "WebSocket upgrades refused for their Origin."}),
		FrameErrors:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: "spells_ws_frame_errors_total", Help: "Error frames sent, by code."}, []string{"code"}),
		Disconnects:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: "spells_ws_disconnects_total", Help: "Connections closed, by reason."}, []string{"reason"}),
		RateLimited:   prometheus.NewCounter(prometheus.CounterOpts{Name: "spells_ws_rate_limited_total", Help: "Frames refused by the per-connection rate limit."}),
		SignalsIn:     prometheus.NewCounter(prometheus.CounterOpts{Name: "spells_signals_total", Help: "Signal values received from the bus."}),
		SignalsPushed: prometheus.NewCounter(prometheus.CounterOpts{Name: "spells_signal_frames_total", Help: "Signal frames queued to connections."}),
		FramesSent:    prometheus.NewCounter(prometheus.CounterOpts{Name: "spells_ws_frames_sent_total", Help: "Frames written to WebSockets."}),
	}
	m.SignInsLimited = prometheus.NewCounter(prometheus.CounterOpts{Name: "spells_signin_rate_limited_total",
		Help: "Sign-in and resume attempts refused because their address made too many."})
	m.BusConflated = prometheus.NewCounter(prometheus.CounterOpts{Name: "spells_signals_conflated_total",
		Help: "Signal values replaced by a newer value of the same signal before the bus delivered them (ingest faster than the node evaluates)."})
	m.FanoutConflated = prometheus.NewCounter(prometheus.CounterOpts{Name: "spells_signal_fanout_conflated_total",
		Help: "Live signal frames replaced by a newer value before they were handed to the dashboards."})
	m.FanoutLag = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "spells_signal_fanout_lag_seconds",
		Help:    "Time from the node receiving a signal value to its frame being queued to every dashboard.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}})
	m.Forwarded = prometheus.NewCounter(prometheus.CounterOpts{Name: "spells_forwarded_sessions_total",
		Help: "Sessions other nodes of the cluster forwarded here (their clients are connected there)."})
	m.ForwardedOpen = prometheus.NewGauge(prometheus.GaugeOpts{Name: "spells_forwarded_sessions",
		Help: "Sessions other nodes of the cluster forward here now."})
	m.ForwardFailed = prometheus.NewCounter(prometheus.CounterOpts{Name: "spells_forward_failed_total",
		Help: "Sign-ins, resumes and revokes for a vault on another node that could not be forwarded there."})
	if reg != nil {
		reg.MustRegister(m.Forwarded, m.ForwardedOpen, m.ForwardFailed)
		reg.MustRegister(m.Connections, m.Accepted, m.Refused, m.OriginRefused, m.FrameErrors, m.Disconnects, m.RateLimited,
			m.SignalsIn, m.SignalsPushed, m.FramesSent, m.SignInsLimited, m.BusConflated, m.FanoutConflated, m.FanoutLag)
	}
	return m
}
