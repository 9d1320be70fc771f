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

// Job is one alert to deliver to one vault's channel (Alert.Channel).
type Job struct {
	Vault    string                 // the vault's id (its address, lower-case hex): where the outcome is posted
	Settings protocol.AlertSettings // the vault's channels
	Alert    protocol.Alert         // as its outbox holds it (Attempts: the tries made)
	Code     string                 // an e-mail address's confirmation code, for the mail that asks it
}

// Result is what a try came to, for the vault to record: the alert is
// delivered, pending (another try is scheduled) or failed (given up).
type Result struct {
	Alert    string
	Status   string
	Attempts int
	Err      string
	At       int64 // when the try ended (unix ms)
	// Gone: the channel itself ended (a push subscription its service
	// dropped); the vault removes it.
	Gone bool
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
	MaxAttempts int            // tries before an alert is given up (default 8)
	RetryBase   time.Duration  // the first pause before a retry, doubled each time up to 5m (default 2s)
	Timeout     time.Duration  // one try's bound, the answer included (default 10s)
	PerMinute   int            // a vault's alerts delivered alone in a minute; past it they are coalesced (default 10)
	Telegram    TelegramConfig // the node's bot (no token: no chat alerts)
	SMTP        SMTPConfig     // the node's mail server (none: no mail alerts)
	VAPID       *VAPID         // the node's push identity (nil: no Web Push)
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
	client *http.Client // webhooks', guarded
	api    *http.Client // the Telegram API's (the operator's address)
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
	if cfg.Telegram.API == "" {
		cfg.Telegram.API = "https://api.telegram.org"
	}
	return &Notifier{cfg: cfg, client: newClient(cfg.AllowPrivate, cfg.Timeout), api: newClient(true, cfg.Timeout), jobs: make(chan Job, maxQueue),
		waiting: map[string]Job{}, busy: map[string]bool{}, held: map[string][]Job{}, storms: map[string]*storm{}, retries: clock.NewSchedule(cfg.Clock)}
}

// AllowPrivate reports whether webhooks may reach private addresses.
func (n *Notifier) AllowPrivate() bool { return n.cfg.AllowPrivate }

// HasTelegram reports whether the node has a bot for chat alerts.
func (n *Notifier) HasTelegram() bool { return n.cfg.Telegram.Token != "" }

// HasMail reports whether the node has a mail server for mail alerts.
func (n *Notifier) HasMail() bool { return n.cfg.SMTP.Server != "" }

// HasPush reports whether the node has a push identity for Web Push.
func (n *Notifier) HasPush() bool { return n.cfg.VAPID != nil }

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
	n.api.CloseIdleConnections()
}

// storm counts a vault's new alerts in one window and gathers those past
// its limit for the digest.
type storm struct {
	vault, channel string
	start          time.Time
	sent           int
	settings       protocol.AlertSettings
	titles         []string
	more           int // coalesced beyond the titles kept
}

// Send queues a vault's alert for delivery; it never waits. Past the
// vault's limit in a minute, the alert is coalesced into that minute's
// digest instead (the vault hears so at once). With the queue full the
// delivery is put off, not lost.
func (n *Notifier) Send(j Job) {
	if j.Alert.Attempts == 0 && j.Code == "" && !n.admit(j) {
		n.cfg.Metrics.Tries.WithLabelValues("coalesced").Inc()
		n.cfg.Post(j.Vault, &Result{Alert: j.Alert.ID, Status: protocol.AlertCoalesced, Attempts: j.Alert.Attempts,
			Err: "too many alerts at once: sent in a digest at the minute's end", At: n.cfg.Clock.Now().UnixMilli()})
		return
	}
	n.enqueue(j)
}

// admit counts j's alert in its vault's window on its channel, or
// gathers it for the digest when the window is full.
func (n *Notifier) admit(j Job) bool {
	now := n.cfg.Clock.Now()
	key := j.Vault + "/" + j.Alert.Channel
	n.mu.Lock()
	defer n.mu.Unlock()
	s := n.storms[key]
	if s == nil || now.Sub(s.start) >= stormWindow && len(s.titles) == 0 {
		s = &storm{vault: j.Vault, channel: j.Alert.Channel, start: now}
		n.storms[key] = s
	}
	if s.sent < n.cfg.PerMinute {
		s.sent++
		return true
	}
	if len(s.titles) == 0 && s.more == 0 {
		n.retries.Set("digest/"+key, s.start.Add(stormWindow).UnixMilli())
	}
	s.settings = j.Settings
	if len(s.titles) < digestTitles {
		s.titles = append(s.titles, j.Alert.Title)
	} else {
		s.more++
	}
	return false
}

// digest sends the alerts a vault's window on a channel coalesced as one
// alert, and starts the next window.
func (n *Notifier) digest(key string) {
	now := n.cfg.Clock.Now()
	n.mu.Lock()
	s := n.storms[key]
	delete(n.storms, key)
	n.mu.Unlock()
	if s == nil || len(s.titles) == 0 {
		return
	}
	count := len(s.titles) + s.more
	detail := strings.Join(s.titles, "; ")
	if s.more > 0 {
		detail += "; and " + strconv.Itoa(s.more) + " more"
	}
	event := "digest-" + strconv.FormatInt(s.start.UnixMilli(), 10)
	a := protocol.Alert{ID: event + ":" + s.channel, Event: event, Kind: protocol.AlertDigest,
		Title: strconv.Itoa(count) + " more alerts within a minute", Detail: detail, At: now.UnixMilli(), Channel: s.channel, Status: protocol.AlertPending}
	n.enqueue(Job{Vault: s.vault, Settings: s.settings, Alert: a})
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
	if storm, ok := strings.CutPrefix(key, "digest/"); ok {
		n.digest(storm)
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

// destination is what a job reaches: a webhook's host (lower-cased), a
// chat, a mail address.
func destination(j Job) string {
	s := j.Settings
	switch {
	case j.Alert.Channel == protocol.ChannelTelegram && s.Telegram != nil:
		return "telegram/" + s.Telegram.ChatID
	case j.Alert.Channel == protocol.ChannelEmail && s.Email != nil:
		return "mail/" + strings.ToLower(s.Email.To)
	case strings.HasPrefix(j.Alert.Channel, protocol.ChannelPush+":"):
		return j.Alert.Channel
	case s.Webhook != nil:
		if u, err := url.Parse(s.Webhook.URL); err == nil {
			return strings.ToLower(u.Host)
		}
	}
	return ""
}

// deliver makes one try on the job's channel.
func (n *Notifier) deliver(ctx context.Context, j Job) outcome {
	vault, s, now := common.HexToAddress(j.Vault).Hex(), j.Settings, n.cfg.Clock.Now()
	switch j.Alert.Channel {
	case protocol.ChannelWebhook:
		if s.Webhook == nil {
			return outcome{why: "the vault has no webhook set up any more"}
		}
		return postWebhook(ctx, n.client, vault, *s.Webhook, j.Alert, now)
	case protocol.ChannelTelegram:
		switch {
		case s.Telegram == nil:
			return outcome{why: "the vault has no Telegram chat set up any more"}
		case !n.HasTelegram():
			return outcome{why: "this node has no Telegram bot any more (SPELLS_TELEGRAM_BOT_TOKEN)"}
		}
		return sendTelegram(ctx, n.api, n.cfg.Telegram, vault, *s.Telegram, j.Alert)
	case protocol.ChannelEmail:
		switch {
		case s.Email == nil:
			return outcome{why: "the vault has no mail address set up any more"}
		case !n.HasMail():
			return outcome{why: "this node has no mail server any more (--smtp)"}
		}
		msg := mailMessage(n.cfg.SMTP.From, s.Email.To, vault, j.Alert, j.Code, now)
		return sendMail(ctx, n.cfg.SMTP, n.cfg.Timeout, s.Email.To, msg)
	}
	if sub, ok := s.PushTo(j.Alert.Channel); ok {
		if !n.HasPush() {
			return outcome{why: "this node has no push key any more"}
		}
		return sendPush(ctx, n.client, n.cfg.VAPID, vault, sub, j.Alert, now)
	}
	if strings.HasPrefix(j.Alert.Channel, protocol.ChannelPush+":") {
		return outcome{why: "the vault has no such push subscription any more"}
	}
	return outcome{why: "no such channel: " + j.Alert.Channel}
}

// try makes one delivery and says what it came to; a retry is scheduled
// here, so the vault only records it.
func (n *Notifier) try(ctx context.Context, j Job) *Result {
	start := time.Now()
	o := n.deliver(ctx, j)
	n.cfg.Metrics.Duration.Observe(time.Since(start).Seconds())
	r := &Result{Alert: j.Alert.ID, Attempts: j.Alert.Attempts + 1, Err: o.why, At: n.cfg.Clock.Now().UnixMilli(), Gone: o.gone}
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
