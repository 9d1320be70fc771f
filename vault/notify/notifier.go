package notify

import (
	"context"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/spells-dev/spells/internal/clock"
	"github.com/spells-dev/spells/protocol"
)

// The Notifier: a bounded queue of deliveries, a few workers that make
// them, and the schedule of retries. A vault queues (Send never waits) and
// hears of each try's outcome in its inbox (Config.Post), which wakes a
// hibernated vault, as a chain result does.

const (
	workers  = 16
	maxQueue = 4096
	maxHeld  = 1024 // deliveries waiting for one busy destination
	// A vault's alerts beyond defaultPerMinute in a minute are coalesced:
	// each is recorded as such, and one digest names them at the
	// minute's end.
	defaultPerMinute = 10
	stormWindow      = time.Minute
	digestTitles     = 10 // titles a digest names; the rest are counted
	// defaults of Config
	defaultAttempts  = 8
	defaultRetryBase = 2 * time.Second
	retryMax         = 5 * time.Minute
)

// Job is one alert to deliver to one vault's channel.
type Job struct {
	Vault   string // the vault's id (its address, lower-case hex): where the outcome is posted
	Webhook protocol.WebhookChannel
	Alert   protocol.Alert // as its outbox holds it (Attempts: the tries made)
}

// Result is what a try came to, for the vault to record: the alert is
// delivered, pending (another try is scheduled) or failed (given up).
type Result struct {
	Alert    string
	Status   string
	Attempts int
	Err      string
	At       int64 // when the try ended (unix ms)
	// Resume asks the vault to queue again every alert its outbox holds
	// pending (after the node started); the other fields are unset.
	Resume bool
}

// Config configures a Notifier.
type Config struct {
	// AllowPrivate lets webhooks reach loopback and private addresses
	// (--alerts-allow-private: a receiver on the node's own network).
	AllowPrivate bool
	// Post hands a result to the vault's inbox; it must not block.
	Post        func(vault string, r *Result)
	MaxAttempts int           // tries before an alert is given up (default 8)
	RetryBase   time.Duration // the first pause before a retry, doubled each time up to 5m (default 2s)
	Timeout     time.Duration // one try's bound, the answer included (default 10s)
	PerMinute   int           // a vault's alerts delivered alone in a minute; past it they are coalesced (default 10)
	Clock       clock.Clock
	Logger      zerolog.Logger
	Metrics     *Metrics
}

// Metrics are the collectors of deliveries.
type Metrics struct {
	Tries    *prometheus.CounterVec // by outcome: delivered, retry, failed
	Duration prometheus.Histogram
	Dropped  prometheus.Counter // deliveries put off because the queue was full
}

// NewMetrics creates the collectors and registers them with reg (nil: not
// registered).
func NewMetrics(reg prometheus.Registerer) *Metrics {
	m := &Metrics{
		Tries: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "spells_alert_tries_total",
			Help: "Tries at delivering an alert, by outcome (delivered, retry: tried again later, failed: given up)."}, []string{"outcome"}),
		Duration: prometheus.NewHistogram(prometheus.HistogramOpts{Name: "spells_alert_try_seconds",
			Help: "How long one try at delivering an alert took.", Buckets: prometheus.ExponentialBuckets(0.005, 4, 7)}),
		Dropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "spells_alert_queue_full_total",
			Help: "Deliveries put off (tried again later) because the delivery queue was full."}),
	}
	if reg != nil {
		reg.MustRegister(m.Tries, m.Duration, m.Dropped)
	}
	return m
}

// Notifier delivers alerts. New, then Start; Close stops it.
type Notifier struct {
	cfg    Config
	client *http.Client
	jobs   chan Job

	mu      sync.Mutex
	waiting map[string]Job    // by vault/alert: the retries scheduled
	busy    map[string]bool   // destinations with a try in flight
	held    map[string][]Job  // deliveries waiting for a busy destination
	storms  map[string]*storm // by vault: its alerts in the current minute
	retries *clock.Schedule

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// New prepares a Notifier; it delivers nothing until Start.
func New(cfg Config) *Notifier {
	if cfg.MaxAttempts <= 0 {
		cfg.MaxAttempts = defaultAttempts
	}
	if cfg.RetryBase <= 0 {
		cfg.RetryBase = defaultRetryBase
	}
	if cfg.PerMinute <= 0 {
		cfg.PerMinute = defaultPerMinute
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = defaultTimeout
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewMetrics(nil)
	}
	if cfg.Post == nil {
		cfg.Post = func(string, *Result) {}
	}
	return &Notifier{cfg: cfg, client: newClient(cfg.AllowPrivate, cfg.Timeout), jobs: make(chan Job, maxQueue),
		waiting: map[string]Job{}, busy: map[string]bool{}, held: map[string][]Job{}, storms: map[string]*storm{}, retries: clock.NewSchedule(cfg.Clock)}
}

// AllowPrivate reports whether webhooks may reach private addresses.
func (n *Notifier) AllowPrivate() bool { return n.cfg.AllowPrivate }

// Start runs the workers and the retries.
func (n *Notifier) Start() {
	ctx, cancel := context.WithCancel(context.Background())
	n.cancel = cancel
	for i := 0; i < workers; i++ {
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			n.work(ctx)
		}()
	}
	n.wg.Add(1)
	go func() {
		defer n.wg.Done()
		n.retries.Run(ctx, n.retryDue)
	}()
}

// Close stops the Notifier and waits for its goroutines. A try in flight
// is cancelled and its outcome dropped: the alert stays pending in its
// vault's outbox and is sent again when the vault next opens (with the
// same id, so a receiver that got it drops the repeat).
func (n *Notifier) Close() {
	if n.cancel != nil {
		n.cancel()
	}
	n.wg.Wait()
	n.client.CloseIdleConnections()
}

// storm counts a vault's new alerts in one window and gathers those past
// its limit for the digest.
type storm struct {
	start   time.Time
	sent    int
	webhook protocol.WebhookChannel
	titles  []string
	more    int // coalesced beyond the titles kept
}

// Send queues a vault's alert for delivery; it never waits. Past the
// vault's limit in a minute, the alert is coalesced into that minute's
// digest instead (the vault hears so at once). With the queue full the
// delivery is put off, not lost.
func (n *Notifier) Send(j Job) {
	if j.Alert.Attempts == 0 && !n.admit(j) {
		n.cfg.Metrics.Tries.WithLabelValues("coalesced").Inc()
		n.cfg.Post(j.Vault, &Result{Alert: j.Alert.ID, Status: protocol.AlertCoalesced, Attempts: j.Alert.Attempts,
			Err: "too many alerts at once: sent in a digest at the minute's end", At: n.cfg.Clock.Now().UnixMilli()})
		return
	}
	n.enqueue(j)
}

// admit counts j's alert in its vault's window, or gathers it for the
// digest when the window is full.
func (n *Notifier) admit(j Job) bool {
	now := n.cfg.Clock.Now()
	n.mu.Lock()
	defer n.mu.Unlock()
	s := n.storms[j.Vault]
	if s == nil || now.Sub(s.start) >= stormWindow && len(s.titles) == 0 {
		s = &storm{start: now}
		n.storms[j.Vault] = s
	}
	if s.sent < n.cfg.PerMinute {
		s.sent++
		return true
	}
	if len(s.titles) == 0 && s.more == 0 {
		n.retries.Set("digest/"+j.Vault, s.start.Add(stormWindow).UnixMilli())
	}
	s.webhook = j.Webhook
	if len(s.titles) < digestTitles {
		s.titles = append(s.titles, j.Alert.Title)
	} else {
		s.more++
	}
	return false
}

// digest sends the alerts a vault's window coalesced as one alert, and
// starts the vault's next window.
func (n *Notifier) digest(vault string) {
	now := n.cfg.Clock.Now()
	n.mu.Lock()
	s := n.storms[vault]
	delete(n.storms, vault)
	n.mu.Unlock()
	if s == nil || len(s.titles) == 0 {
		return
	}
	count := len(s.titles) + s.more
	detail := strings.Join(s.titles, "; ")
	if s.more > 0 {
		detail += "; and " + strconv.Itoa(s.more) + " more"
	}
	a := protocol.Alert{ID: "digest-" + strconv.FormatInt(s.start.UnixMilli(), 10), Kind: protocol.AlertDigest,
		Title: strconv.Itoa(count) + " more alerts within a minute", Detail: detail, At: now.UnixMilli(), Channel: "webhook", Status: protocol.AlertPending}
	n.enqueue(Job{Vault: vault, Webhook: s.webhook, Alert: a})
}

// enqueue queues a delivery without counting it against the vault's limit.
func (n *Notifier) enqueue(j Job) {
	select {
	case n.jobs <- j:
	default:
		n.cfg.Metrics.Dropped.Inc()
		n.later(j, n.cfg.RetryBase)
	}
}

func (n *Notifier) later(j Job, d time.Duration) {
	key := j.Vault + "/" + j.Alert.ID
	n.mu.Lock()
	n.waiting[key] = j
	n.mu.Unlock()
	n.retries.Set(key, n.cfg.Clock.Now().Add(d).UnixMilli())
}

func (n *Notifier) retryDue(key string) {
	if vault, ok := strings.CutPrefix(key, "digest/"); ok {
		n.digest(vault)
		return
	}
	n.mu.Lock()
	j, ok := n.waiting[key]
	delete(n.waiting, key)
	n.mu.Unlock()
	if ok {
		n.enqueue(j)
	}
}

// work takes deliveries from the queue. A destination has at most one try
// in flight: the deliveries queued for a busy one wait beside it and are
// made, in order, by the worker that frees it, so a webhook that never
// answers holds one worker, never all of them.
func (n *Notifier) work(ctx context.Context) {
	for {
		var j Job
		select {
		case <-ctx.Done():
			return
		case j = <-n.jobs:
		}
		dest := destination(j)
		n.mu.Lock()
		if n.busy[dest] {
			if len(n.held[dest]) >= maxHeld {
				n.mu.Unlock()
				n.cfg.Metrics.Dropped.Inc()
				n.later(j, n.cfg.RetryBase)
				continue
			}
			n.held[dest] = append(n.held[dest], j)
			n.mu.Unlock()
			continue
		}
		n.busy[dest] = true
		n.mu.Unlock()
		for {
			r := n.try(ctx, j)
			if ctx.Err() != nil {
				return
			}
			n.cfg.Post(j.Vault, r)
			n.mu.Lock()
			next := n.held[dest]
			if len(next) == 0 {
				delete(n.held, dest)
				delete(n.busy, dest)
				n.mu.Unlock()
				break
			}
			j, n.held[dest] = next[0], next[1:]
			n.mu.Unlock()
		}
	}
}

// destination is the host a job reaches (its URL's, lower-cased).
func destination(j Job) string {
	u, err := url.Parse(j.Webhook.URL)
	if err != nil {
		return j.Webhook.URL
	}
	return strings.ToLower(u.Host)
}

// try makes one delivery and says what it came to; a retry is scheduled
// here, so the vault only records it.
func (n *Notifier) try(ctx context.Context, j Job) *Result {
	start := time.Now()
	var o outcome
	if j.Webhook.URL == "" {
		o = outcome{why: "the vault has no webhook set up any more"}
	} else {
		o = postWebhook(ctx, n.client, common.HexToAddress(j.Vault).Hex(), j.Webhook, j.Alert, n.cfg.Clock.Now())
	}
	n.cfg.Metrics.Duration.Observe(time.Since(start).Seconds())
	r := &Result{Alert: j.Alert.ID, Attempts: j.Alert.Attempts + 1, Err: o.why, At: n.cfg.Clock.Now().UnixMilli()}
	switch {
	case o.delivered:
		r.Status = protocol.AlertDelivered
		n.cfg.Metrics.Tries.WithLabelValues("delivered").Inc()
	case o.retry && r.Attempts < n.cfg.MaxAttempts:
		r.Status = protocol.AlertPending
		n.cfg.Metrics.Tries.WithLabelValues("retry").Inc()
		next := j
		next.Alert.Attempts = r.Attempts
		n.later(next, min(n.cfg.RetryBase<<min(r.Attempts-1, 16), retryMax))
	default:
		r.Status = protocol.AlertFailed
		n.cfg.Metrics.Tries.WithLabelValues("failed").Inc()
		if o.retry {
			r.Err = strings.TrimSpace(r.Err + "; given up after " + strconv.Itoa(r.Attempts) + " tries")
		}
		n.cfg.Logger.Warn().Str("vault", j.Vault).Str("alert", j.Alert.ID).Str("why", r.Err).Int("tries", r.Attempts).Msg("alert not delivered; given up")
	}
	return r
}
