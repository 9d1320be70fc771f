package vault

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/spells-dev/spells/vault/exec"
)

// Metrics are the vault layer's Prometheus collectors.
type Metrics struct {
	Open            prometheus.Gauge
	VaultsCreated   prometheus.Counter
	VaultsMovedOut  prometheus.Counter
	VaultsMovedIn   prometheus.Counter
	Versions        prometheus.Counter
	Commands        prometheus.Counter
	CommandsRefused *prometheus.CounterVec
	AuthFailures    *prometheus.CounterVec
	Evaluations     *prometheus.CounterVec
	// EvaluationFailures counts trigger outcomes that could not be written
	// (recorded as failed evaluations; the other triggers' outcomes commit).
	EvaluationFailures prometheus.Counter
	Intents            prometheus.Counter
	Alarms             prometheus.Counter
	SignalDispatch     prometheus.Counter
	SlowSubscribers    prometheus.Counter
	Activations        prometheus.Counter
	Hibernations       prometheus.Counter
	Evictions          prometheus.Counter
	GroupCommits       prometheus.Histogram
	Dozes              prometheus.Counter
	Dozing             prometheus.Gauge
	FilesOpen          prometheus.Gauge

	LifeErrors  prometheus.Counter // transitions the vault life machine does not allow (life.go); always 0
	Quarantined prometheus.Gauge
	Quarantines prometheus.Counter
	StorageFull prometheus.Gauge
	Rollbacks   prometheus.Counter
	SignalsShed *prometheus.CounterVec
	SignalLag   prometheus.Histogram

	Exec *exec.Metrics // intents' lives
}

// NewMetrics creates the collectors and registers them with reg (nil: not
// registered, for tests).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Open:            prometheus.NewGauge(prometheus.GaugeOpts{Name: "spells_vaults_open", Help: "Vaults with a running goroutine."}),
		VaultsCreated:   prometheus.NewCounter(prometheus.CounterOpts{Name: "spells_vaults_created_total", Help: "Vaults created by a first sign-in."}),
		VaultsMovedOut:  prometheus.NewCounter(prometheus.CounterOpts{Name: "spells_vaults_moved_out_total", Help: "Vaults handed to another node of the cluster (their files here are tombstones)."}),
		VaultsMovedIn:   prometheus.NewCounter(prometheus.CounterOpts{Name: "spells_vaults_moved_in_total", Help: "Vaults received from another node of the cluster."}),
		Versions:        prometheus.NewCounter(prometheus.CounterOpts{Name: "spells_vault_versions_total", Help: "Committed vault versions (state changes)."}),
		Commands:        prometheus.NewCounter(prometheus.CounterOpts{Name: "spells_commands_total", Help: "Commands accepted and applied."}),
		CommandsRefused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "spells_commands_refused_total", Help: "Commands refused, by error code."}, []string{"code"}),
		AuthFailures:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: "spells_auth_failures_total", Help: "Refused sign-ins and resumes, by error code."}, []string{"code"}),
		Evaluations:     prometheus.NewCounterVec(prometheus.CounterOpts{Name: "spells_evaluations_total", Help: "Recorded trigger evaluations, by outcome."}, []string{"outcome"}),
		EvaluationFailures: prometheus.NewCounter(prometheus.CounterOpts{Name: "spells_evaluation_failures_total",
			Help: "Trigger outcomes that could not be recorded (each shown to the owner as a failed evaluation)."}),
		Intents:         prometheus.NewCounter(prometheus.CounterOpts{Name: "spells_intents_total", Help: "Intents recorded by firings."}),
		Alarms:          prometheus.NewCounter(prometheus.CounterOpts{Name: "spells_alarms_total", Help: "Alarms that woke a vault."}),
		SignalDispatch:  prometheus.NewCounter(prometheus.CounterOpts{Name: "spells_signal_dispatch_total", Help: "Signal values delivered to interested vaults."}),
		SlowSubscribers: prometheus.NewCounter(prometheus.CounterOpts{Name: "spells_slow_subscribers_total", Help: "Subscribers dropped because their queue was full."}),
		Activations:     prometheus.NewCounter(prometheus.CounterOpts{Name: "spells_vault_activations_total", Help: "Vault files opened on demand (hibernated vaults woken)."}),
		Hibernations:    prometheus.NewCounter(prometheus.CounterOpts{Name: "spells_vault_hibernations_total", Help: "Vaults closed for being idle or by LRU eviction."}),
		Evictions:       prometheus.NewCounter(prometheus.CounterOpts{Name: "spells_vault_evictions_total", Help: "LRU evictions asked for because MaxOpen was reached."}),
		Dozing: prometheus.NewGauge(prometheus.GaugeOpts{Name: "spells_vaults_dozing",
			Help: "Running vaults (with dashboards) whose file is closed while idle."}),
		FilesOpen: prometheus.NewGauge(prometheus.GaugeOpts{Name: "spells_vault_files_open",
			Help: "Vault files open (or opening, or closing): what --max-open-vaults bounds; each holds 2 descriptors."}),
		Dozes: prometheus.NewCounter(prometheus.CounterOpts{Name: "spells_vault_dozes_total",
			Help: "Vaults with dashboards connected that closed their file while idle (they reopen it on the next use)."}),
		GroupCommits: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "spells_vault_group_commit_commands",
			Help: "Commands made durable by one group commit (one fsync).", Buckets: []float64{2, 4, 8, 16, 32, 64, 128}}),
	}
	m.LifeErrors = prometheus.NewCounter(prometheus.CounterOpts{Name: "spells_vault_life_errors_total",
		Help: "Vault life transitions the state machine does not allow (a bug if not 0)."})
	m.Quarantined = prometheus.NewGauge(prometheus.GaugeOpts{Name: "spells_vaults_quarantined",
		Help: "Vaults whose file could not be read and was moved to the quarantine folder."})
	m.Quarantines = prometheus.NewCounter(prometheus.CounterOpts{Name: "spells_vault_quarantines_total",
		Help: "Vault files quarantined since the node started."})
	m.StorageFull = prometheus.NewGauge(prometheus.GaugeOpts{Name: "spells_storage_full",
		Help: "1 while the data directory's disk was last found full (writes refused with storage_full)."})
	m.Rollbacks = prometheus.NewCounter(prometheus.CounterOpts{Name: "spells_vault_rollbacks_detected_total",
		Help: "Clients that held a version above their vault's: the vault lost acknowledged changes."})
	m.SignalsShed = prometheus.NewCounterVec(prometheus.CounterOpts{Name: "spells_signal_values_shed_total",
		Help: "Signal values and alarms dropped before a vault evaluated them, by reason (vault_behind: its inbox was full)."}, []string{"reason"})
	m.SignalLag = prometheus.NewHistogram(prometheus.HistogramOpts{Name: "spells_signal_evaluation_lag_seconds",
		Help:    "Time from the node receiving a signal value to a vault evaluating it.",
		Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}})
	m.Exec = exec.NewMetrics(reg)
	if reg != nil {
		reg.MustRegister(m.VaultsMovedOut, m.VaultsMovedIn)
		reg.MustRegister(m.Open, m.VaultsCreated, m.Versions, m.Commands, m.CommandsRefused, m.AuthFailures,
			m.Evaluations, m.EvaluationFailures, m.Intents, m.Alarms, m.SignalDispatch, m.SlowSubscribers, m.Activations, m.Hibernations, m.Evictions, m.GroupCommits, m.Dozes, m.Dozing, m.FilesOpen,
			m.LifeErrors, m.Quarantined, m.Quarantines, m.StorageFull, m.Rollbacks, m.SignalsShed, m.SignalLag)
	}
	return m
}
