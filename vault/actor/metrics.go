package actor

import "github.com/prometheus/client_golang/prometheus"

// Metrics are the collectors of what vaults do.
type Metrics struct {
	VaultsCreated   prometheus.Counter
	Versions        prometheus.Counter
	Commands        prometheus.Counter
	CommandsRefused *prometheus.CounterVec
	AuthFailures    *prometheus.CounterVec
	Evaluations     *prometheus.CounterVec
	// EvaluationFailures counts trigger outcomes that could not be written
	// (recorded as failed evaluations; the other triggers' outcomes commit).
	EvaluationFailures prometheus.Counter
	Intents            prometheus.Counter
	// JournalApplied counts records of the node's firing journal a vault
	// applied to its file.
	JournalApplied  prometheus.Counter
	SlowSubscribers prometheus.Counter
	GroupCommits    prometheus.Histogram
	Rollbacks       prometheus.Counter
	SignalLag       prometheus.Histogram
}

// NewMetrics creates the collectors and registers them with reg (nil: not
// registered, for tests).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		VaultsCreated:   prometheus.NewCounter(prometheus.CounterOpts{Name: "spells_vaults_created_total", Help: "Vaults created by a first sign-in."}),
		Versions:        prometheus.NewCounter(prometheus.CounterOpts{Name: "spells_vault_versions_total", Help: "Committed vault versions (state changes)."}),
		Commands:        prometheus.NewCounter(prometheus.CounterOpts{Name: "spells_commands_total", Help: "Commands accepted and applied."}),
		CommandsRefused: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "spells_commands_refused_total", Help: "Commands refused, by error code."}, []string{"code"}),
		AuthFailures:    prometheus.NewCounterVec(prometheus.CounterOpts{Name: "spells_auth_failures_total", Help: "Refused sign-ins and resumes, by error code."}, []string{"code"}),
		Evaluations:     prometheus.NewCounterVec(prometheus.CounterOpts{Name: "spells_evaluations_total", Help: "Recorded trigger evaluations, by outcome."}, []string{"outcome"}),
		EvaluationFailures: prometheus.NewCounter(prometheus.CounterOpts{Name: "spells_evaluation_failures_total",
			Help: "Trigger outcomes that could not be recorded (each shown to the owner as a failed evaluation)."}),
		Intents: prometheus.NewCounter(prometheus.CounterOpts{Name: "spells_intents_total", Help: "Intents recorded by firings."}),
		JournalApplied: prometheus.NewCounter(prometheus.CounterOpts{Name: "spells_firing_journal_applied_total",
			Help: "Firings of hibernated vaults, made durable in the node's firing journal, that their vault applied to its file."}),
		SlowSubscribers: prometheus.NewCounter(prometheus.CounterOpts{Name: "spells_slow_subscribers_total", Help: "Subscribers dropped because their queue was full."}),
		GroupCommits: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "spells_vault_group_commit_commands",
			Help: "Commands made durable by one group commit (one fsync).", Buckets: []float64{2, 4, 8, 16, 32, 64, 128}}),
		Rollbacks: prometheus.NewCounter(prometheus.CounterOpts{Name: "spells_vault_rollbacks_detected_total",
			Help: "Clients that held a version above their vault's: the vault lost acknowledged changes."}),
		SignalLag: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "spells_signal_evaluation_lag_seconds",
			Help:    "Time from the node receiving a signal value to a vault evaluating it.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10}}),
	}
	if reg != nil {
		reg.MustRegister(m.VaultsCreated, m.Versions, m.Commands, m.CommandsRefused, m.AuthFailures, m.Evaluations,
			m.EvaluationFailures, m.Intents, m.JournalApplied, m.SlowSubscribers, m.GroupCommits, m.Rollbacks, m.SignalLag)
	}
	return m
}
