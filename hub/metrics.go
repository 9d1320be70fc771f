package hub

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the hub's Prometheus collectors.
type Metrics struct {
	Connections   prometheus.Gauge
	Accepted      prometheus.Counter
	OriginRefused prometheus.Counter
	Refused       prometheus.Counter
	FrameErrors   *prometheus.CounterVec
	Disconnects   *prometheus.CounterVec
	RateLimited   prometheus.Counter
	SignalsIn     prometheus.Counter
	SignalsPushed prometheus.Counter
	FramesSent    prometheus.Counter
}

// NewMetrics creates the collectors and registers them with reg (nil: not
// registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Connections:   prometheus.NewGauge(prometheus.GaugeOpts{Name: "spells_ws_connections", Help: "Open WebSocket connections."}),
		Accepted:      prometheus.NewCounter(prometheus.CounterOpts{Name: "spells_ws_accepted_total", Help: "WebSocket upgrades accepted."}),
		Refused:       prometheus.NewCounter(prometheus.CounterOpts{Name: "spells_ws_refused_total", Help: "WebSocket upgrades refused because the connection limit was reached."}),
		OriginRefused: prometheus.NewCounter(prometheus.CounterOpts{Name: "spells_ws_origin_refused_total", Help: "WebSocket upgrades refused for their Origin."}),
		FrameErrors:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: "spells_ws_frame_errors_total", Help: "Error frames sent, by code."}, []string{"code"}),
		Disconnects:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: "spells_ws_disconnects_total", Help: "Connections closed, by reason."}, []string{"reason"}),
		RateLimited:   prometheus.NewCounter(prometheus.CounterOpts{Name: "spells_ws_rate_limited_total", Help: "Frames refused by the per-connection rate limit."}),
		SignalsIn:     prometheus.NewCounter(prometheus.CounterOpts{Name: "spells_signals_total", Help: "Signal values received from the bus."}),
		SignalsPushed: prometheus.NewCounter(prometheus.CounterOpts{Name: "spells_signal_frames_total", Help: "Signal frames queued to connections."}),
		FramesSent:    prometheus.NewCounter(prometheus.CounterOpts{Name: "spells_ws_frames_sent_total", Help: "Frames written to WebSockets."}),
	}
	if reg != nil {
		reg.MustRegister(m.Connections, m.Accepted, m.Refused, m.OriginRefused, m.FrameErrors, m.Disconnects, m.RateLimited,
			m.SignalsIn, m.SignalsPushed, m.FramesSent)
	}
	return m
}
