package backup

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the backup's.
type Metrics struct {
	Backlog  prometheus.Gauge       // bytes waiting to be shipped
	Lag      prometheus.Gauge       // seconds the oldest waiting change has waited
	Uploads  *prometheus.CounterVec // objects shipped, by kind (log, base) and result (ok, error)
	Bytes    prometheus.Counter     // bytes shipped (sealed)
	Dropped  prometheus.Counter     // changes dropped past the backlog's bound (their vaults send a base next)
	Restored prometheus.Counter     // vault files restored
	Wiped    prometheus.Counter     // times the bucket was found to have lost this node's objects
}

// NewMetrics registers the backup's metrics with reg (nil: unregistered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Backlog:  prometheus.NewGauge(prometheus.GaugeOpts{Name: "spells_backup_backlog_bytes", Help: "Bytes of vault changes waiting to be shipped to the object store."}),
		Lag:      prometheus.NewGauge(prometheus.GaugeOpts{Name: "spells_backup_lag_seconds", Help: "How long the oldest change waiting to be shipped has waited."}),
		Uploads:  prometheus.NewCounterVec(prometheus.CounterOpts{Name: "spells_backup_uploads_total", Help: "Objects shipped to the object store, by kind and result."}, []string{"kind", "result"}),
		Bytes:    prometheus.NewCounter(prometheus.CounterOpts{Name: "spells_backup_bytes_total", Help: "Bytes shipped to the object store (sealed)."}),
		Dropped:  prometheus.NewCounter(prometheus.CounterOpts{Name: "spells_backup_dropped_total", Help: "Vault changes dropped past the backlog's bound; their vaults ship a whole file at their next change."}),
		Restored: prometheus.NewCounter(prometheus.CounterOpts{Name: "spells_backup_restores_total", Help: "Vault files restored from the backup."}),
		Wiped:    prometheus.NewCounter(prometheus.CounterOpts{Name: "spells_backup_wiped_total", Help: "Times the bucket was found to have lost this node's objects; every vault then ships its whole file again."}),
	}
	if reg != nil {
		reg.MustRegister(m.Backlog, m.Lag, m.Uploads, m.Bytes, m.Dropped, m.Restored, m.Wiped)
	}
	return m
}
