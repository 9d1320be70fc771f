package vault

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/spells-dev/spells/vault/actor"
	"github.com/spells-dev/spells/vault/exec"
	"github.com/spells-dev/spells/vault/notify"
)

// Metrics are the vault layer's Prometheus collectors: the host's own,
// what vaults do (Actor) and their intents' lives (Exec).
type Metrics struct {
	Open           prometheus.Gauge
	VaultsMovedOut prometheus.Counter
	VaultsMovedIn  prometheus.Counter
	Alarms         prometheus.Counter
	SignalDispatch prometheus.Counter
	Activations    prometheus.Counter
	Hibernations   prometheus.Counter
	Evictions      prometheus.Counter
	Dozes          prometheus.Counter
	Dozing         prometheus.Gauge
	FilesOpen      prometheus.Gauge

	LifeErrors  prometheus.Counter // moves the vault life tables do not allow (life.go, place.go); always 0
	Quarantined prometheus.Gauge
	Quarantines prometheus.Counter
	StorageFull prometheus.Gauge
	SignalsShed *prometheus.CounterVec

	// The firing journal (fire.go).
	Journaled      prometheus.Counter
	JournalPending prometheus.Gauge
	JournalSync    prometheus.Histogram
	JournalErrors  prometheus.Counter

	Actor  *actor.Metrics
	Exec   *exec.Metrics
	Notify *notify.Metrics
}

// NewMetrics creates the collectors and registers them with reg (nil: not
// registered, for tests).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Open:           prometheus.NewGauge(prometheus.GaugeOpts{Name: "spells_vaults_open", Help: "Vaults with a running goroutine."}),
		VaultsMovedOut: prometheus.NewCounter(prometheus.CounterOpts{Name: "spells_vaults_moved_out_total", Help: "Vaults handed to another node of the cluster (their files here are tombstones)."}),
		VaultsMovedIn:  prometheus.NewCounter(prometheus.CounterOpts{Name: "spells_vaults_moved_in_total", Help: "Vaults received from another node of the cluster."}),
		Alarms:         prometheus.NewCounter(prometheus.CounterOpts{Name: "spells_alarms_total", Help: "Alarms that woke a vault."}),
		SignalDispatch: prometheus.NewCounter(prometheus.CounterOpts{Name: "spells_signal_dispatch_total", Help: "Signal values delivered to interested vaults."}),
		Activations:    prometheus.NewCounter(prometheus.CounterOpts{Name: "spells_vault_activations_total", Help: "Vault files opened on demand (hibernated vaults woken)."}),
		Hibernations:   prometheus.NewCounter(prometheus.CounterOpts{Name: "spells_vault_hibernations_total", Help: "Vaults closed for being idle or by LRU eviction."}),
		Evictions:      prometheus.NewCounter(prometheus.CounterOpts{Name: "spells_vault_evictions_total", Help: "LRU evictions asked for because MaxOpen was reached."}),
		Dozing: prometheus.NewGauge(prometheus.GaugeOpts{Name: "spells_vaults_dozing",
			Help: "Running vaults (with dashboards) whose file is closed while idle."}),
		FilesOpen: prometheus.NewGauge(prometheus.GaugeOpts{Name: "spells_vault_files_open",
			Help: "Vault files open (or opening, or closing): what --max-open-vaults bounds; each holds 2 descriptors."}),
		Dozes: prometheus.NewCounter(prometheus.CounterOpts{Name: "spells_vault_dozes_total",
			Help: "Vaults with dashboards connected that closed their file while idle (they reopen it on the next use)."}),
		LifeErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "spells_vault_life_errors_total",
			Help: "Vault life transitions (an instance's, or a vault's place on the node) the state machines do not allow (a bug if not 0)."}),
		Quarantined: prometheus.NewGauge(prometheus.GaugeOpts{Name: "spells_vaults_quarantined",
			Help: "Vaults whose file could not be read and was moved to the quarantine folder."}),
		Quarantines: prometheus.NewCounter(prometheus.CounterOpts{Name: "spells_vault_quarantines_total",
			Help: "Vault files quarantined since the node started."}),
		StorageFull: prometheus.NewGauge(prometheus.GaugeOpts{Name: "spells_storage_full",
			Help: "1 while the data directory's disk was last found full (writes refused with storage_full)."}),
		SignalsShed: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "spells_signal_values_shed_total",
			Help: "Signal values and alarms dropped before a vault evaluated them, by reason (vault_behind: its inbox was full)."}, []string{"reason"}),
		Journaled: prometheus.NewCounter(prometheus.CounterOpts{Name: "spells_firing_journal_records_total",
			Help: "Firings of hibernated vaults evaluated without opening them and written to the node's firing journal."}),
		JournalPending: prometheus.NewGauge(prometheus.GaugeOpts{Name: "spells_firing_journal_pending",
			Help: "Records of the firing journal that their vault has not applied to its file yet."}),
		JournalSync: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "spells_firing_journal_write_seconds",
			Help: "Time to write and sync one batch of the firing journal.", Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5}}),
		JournalErrors: prometheus.NewCounter(prometheus.CounterOpts{Name: "spells_firing_journal_write_errors_total",
			Help: "Batches the firing journal could not write (their vaults apply them to their own files instead)."}),
		Actor:  actor.NewMetrics(reg),
		Exec:   exec.NewMetrics(reg),
		Notify: notify.NewMetrics(reg),
	}
	if reg != nil {
		reg.MustRegister(m.Open, m.VaultsMovedOut, m.VaultsMovedIn, m.Alarms, m.SignalDispatch, m.Activations, m.Hibernations,
			m.Evictions, m.Dozes, m.Dozing, m.FilesOpen, m.LifeErrors, m.Quarantined, m.Quarantines, m.StorageFull, m.SignalsShed,
			m.Journaled, m.JournalPending, m.JournalSync, m.JournalErrors)
	}
	return m
}
