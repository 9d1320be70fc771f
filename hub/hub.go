package hub

import (
	"context"
	"net"
	"net/http"
	"net/url"
	"path"
	"strings"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/spells-dev/spells/internal/clock"
	"github.com/spells-dev/spells/protocol"
)

// Config configures a Hub. Vaults, Nonces and Bus are required; every
// other zero value gets a working default.
type Config struct {
	Vaults  Vaults
	Nonces  *protocol.NonceIssuer
	Bus     Bus
	History *History // default: a new History

	Domains []string // SIWE domains, told to clients in the challenge
	ChainID uint64   // told to clients in the challenge (default 1)
	Node    string   // this node's name, told in the challenge

	// OriginPatterns lists extra hosts (path.Match patterns, matched
	// against the Origin's host, or scheme://host when the pattern has
	// "://") that browsers may connect from. The request's own host is
	// always allowed; a missing Origin (non-browser client) is allowed;
	// "null" and anything else is refused with 403.
	OriginPatterns []string

	ReadLimit     int64         // bytes per frame (default 64 KiB)
	SendQueue     int           // vault frames queued per connection at most (default 1024; memory is taken only while queued)
	WriteTimeout  time.Duration // per frame (default 10s)
	PingInterval  time.Duration // heartbeat (default 20s)
	SignInTimeout time.Duration // to sign in after connecting (default 2m)
	CommandRate   float64       // frames per second per connection (default 50)
	CommandBurst  int           // (default 100)

	// MaxConnections refuses new WebSockets (HTTP 503, a log line and
	// spells_ws_refused_total) once this many are open; 0 means no limit.
	// The server derives it from the process's descriptor limit.
	MaxConnections int

	// Limits per source address (IPv4 address, IPv6 /64) on what costs
	// the node before a socket signs in. MaxPendingPerAddress bounds its
	// sockets not yet signed in (more are refused with HTTP 429; default
	// 64, negative: no limit). SignInRate and SignInBurst bound its
	// sign-in and resume attempts (more get rate_limited; default 10 per
	// second, burst 20; negative: no limit).
	MaxPendingPerAddress int
	SignInRate           float64
	SignInBurst          int

	// Router, in a cluster, says which vaults live on other nodes:
	// their sign-ins, resumes and revokes are forwarded there
	// (forward.go). nil: every vault is served here.
	Router Router

	Clock   clock.Clock
	Logger  zerolog.Logger
	Metrics *Metrics
}

func (c *Config) setDefaults() {
	if c.History == nil {
		c.History = NewHistory(0)
	}
	if c.ChainID == 0 {
		c.ChainID = 1
	}
	if c.ReadLimit <= 0 {
		c.ReadLimit = 64 << 10
	}
	if c.SendQueue <= 0 {
		c.SendQueue = 1024
	}
	if c.WriteTimeout <= 0 {
		c.WriteTimeout = 10 * time.Second
	}
	if c.PingInterval <= 0 {
		c.PingInterval = 20 * time.Second
	}
	if c.SignInTimeout <= 0 {
		c.SignInTimeout = 2 * time.Minute
	}
	if c.CommandRate <= 0 {
		c.CommandRate = 50
	}
	if c.CommandBurst <= 0 {
		c.CommandBurst = 100
	}
	if c.MaxPendingPerAddress == 0 {
		c.MaxPendingPerAddress = 64
	}
	if c.SignInRate == 0 {
		c.SignInRate = 10
	}
	if c.SignInBurst == 0 {
		c.SignInBurst = 20
	}
	if c.Clock == nil {
		c.Clock = clock.Real{}
	}
	if c.Metrics == nil {
		c.Metrics = NewMetrics(nil)
	}
}

// Hub serves WebSocket sessions and distributes signals. Create it with
// New, mount it as an http.Handler, and call Shutdown to close every
// connection with "going away".
type Hub struct {
	cfg    Config
	log    zerolog.Logger
	unsub  func()
	limits *addrLimits
	fan    *fanout

	mu      sync.Mutex
	conns   map[*conn]struct{}
	closing bool
	wg      sync.WaitGroup
}

// New creates a Hub and subscribes it to the bus.
func New(cfg Config) *Hub {
	cfg.setDefaults()
	h := &Hub{cfg: cfg, log: cfg.Logger, conns: map[*conn]struct{}{},
		limits: newAddrLimits(max(0, cfg.MaxPendingPerAddress), max(0, cfg.SignInRate), max(0, cfg.SignInBurst))}
	h.fan = startFanout(h)
	h.unsub = cfg.Bus.Subscribe(h.onSignal)
	return h
}

// History returns the hub's signal history.
func (h *Hub) History() *History { return h.cfg.History }

// onSignal runs on the bus goroutine for every signal. It never waits:
// the crossed vaults get the value in their inbox, and the dashboards'
// frames go to the fan-out goroutine, so the next signal's evaluation
// never waits behind this one's fan-out.
func (h *Hub) onSignal(s Signal) {
	h.cfg.Metrics.SignalsIn.Inc()
	h.cfg.History.Add(s)
	h.cfg.Vaults.SignalReceived(s.Name, s.Value, s.Received)
	h.fan.put(s)
}

// fanout hands live signal frames to every signed-in connection, on a
// goroutine of its own. A signal whose previous value has not been handed
// out yet is conflated to its latest value (counted): a dashboard wants
// the newest price, never a queue of old ones.
type fanout struct {
	h       *Hub
	mu      sync.Mutex
	pending map[string]Signal
	order   []string
	wake    chan struct{}
	stop    chan struct{}
	done    chan struct{}
}

func startFanout(h *Hub) *fanout {
	f := &fanout{h: h, pending: map[string]Signal{}, wake: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}
	go f.run()
	return f
}

func (f *fanout) put(s Signal) {
	f.mu.Lock()
	if _, ok := f.pending[s.Name]; ok {
		f.h.cfg.Metrics.FanoutConflated.Inc()
	} else {
		f.order = append(f.order, s.Name)
	}
	f.pending[s.Name] = s
	f.mu.Unlock()
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

func (f *fanout) take() []Signal {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := make([]Signal, 0, len(f.order))
	for _, name := range f.order {
		out = append(out, f.pending[name])
		delete(f.pending, name)
	}
	f.order = f.order[:0]
	return out
}

func (f *fanout) run() {
	defer close(f.done)
	for {
		select {
		case <-f.wake:
		case <-f.stop:
			return
		}
		for _, s := range f.take() {
			f.h.pushSignal(s)
		}
	}
}

// close stops the fan-out goroutine and waits for it.
func (f *fanout) close() {
	select {
	case <-f.stop:
	default:
		close(f.stop)
	}
	<-f.done
}

// fanoutHook, when set by a test, runs before each signal's fan-out.
var fanoutHook func()

// pushSignal queues one signal frame to every signed-in connection (each
// conflates it with an unwritten one of the same signal).
func (h *Hub) pushSignal(s Signal) {
	if fanoutHook != nil {
		fanoutHook()
	}
	frame := mustJSON(protocol.SignalFrame{Type: protocol.TypeSignal, Name: s.Name, Value: s.Value, At: s.At})
	h.mu.Lock()
	conns := make([]*conn, 0, len(h.conns))
	for c := range h.conns {
		conns = append(conns, c)
	}
	h.mu.Unlock()
	for _, c := range conns {
		// A forwarded session gets its signals from the node its client
		// is on, which has them all too.
		if c.signedIn.Load() && c.up == nil {
			c.SendSignal(s.Name, frame)
			h.cfg.Metrics.SignalsPushed.Inc()
		}
	}
	if !s.Received.IsZero() {
		h.cfg.Metrics.FanoutLag.Observe(time.Since(s.Received).Seconds())
	}
}

// ServeHTTP upgrades GET /v1/ws to a WebSocket session.
func (h *Hub) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if origin := r.Header.Get("Origin"); origin != "" && !h.originAllowed(r.Host, origin) {
		h.cfg.Metrics.OriginRefused.Inc()
		h.log.Warn().Str("origin", origin).Str("remote", r.RemoteAddr).Msg("websocket refused: origin not allowed")
		http.Error(w, "origin not allowed", http.StatusForbidden)
		return
	}
	h.mu.Lock()
	closing := h.closing
	full := h.cfg.MaxConnections > 0 && len(h.conns) >= h.cfg.MaxConnections
	if !closing && !full {
		h.wg.Add(1)
	}
	h.mu.Unlock()
	if closing {
		http.Error(w, "shutting down", http.StatusServiceUnavailable)
		return
	}
	if full {
		h.cfg.Metrics.Refused.WithLabelValues("connection_limit").Inc()
		h.log.Warn().Int("limit", h.cfg.MaxConnections).Str("remote", r.RemoteAddr).Msg("websocket refused: connection limit reached")
		http.Error(w, "connection limit reached; retry later", http.StatusServiceUnavailable)
		return
	}
	served := false
	defer func() {
		if !served {
			h.wg.Done()
		}
	}()
	key := addrKey(r.RemoteAddr)
	if !h.limits.admit(key) {
		h.cfg.Metrics.Refused.WithLabelValues("per_address").Inc()
		h.log.Warn().Int("limit", h.cfg.MaxPendingPerAddress).Str("remote", r.RemoteAddr).Msg("websocket refused: too many sockets from this address have not signed in")
		w.Header().Set("Retry-After", "5")
		http.Error(w, "too many connections from your address have not signed in yet; sign in on them or retry later", http.StatusTooManyRequests)
		return
	}
	counted := true
	defer func() {
		if counted {
			h.limits.authenticated(key)
		}
	}()
	var nc net.Conn
	ws, err := websocket.Accept(smallBuffers{w, &nc}, r, &websocket.AcceptOptions{
		Subprotocols:       []string{protocol.Subprotocol},
		InsecureSkipVerify: true, // the Origin was checked above
	})
	if err != nil {
		h.log.Info().Err(err).Str("remote", r.RemoteAddr).Msg("websocket upgrade failed")
		return
	}
	if ws.Subprotocol() != protocol.Subprotocol {
		h.log.Info().Str("remote", r.RemoteAddr).Msg("websocket refused: subprotocol " + protocol.Subprotocol + " not offered")
		ws.Close(websocket.StatusPolicyViolation, "subprotocol "+protocol.Subprotocol+" required")
		return
	}
	h.cfg.Metrics.Accepted.Inc()
	c := newConn(h, ws, nc, r.RemoteAddr, key)
	if !h.add(c) {
		ws.Close(websocket.StatusGoingAway, "server shutting down")
		return
	}
	counted = false // the connection stops counting it (conn.authenticated)
	// The connection outlives this handler. Returning lets net/http free
	// the upgrade request and its response (headers, a 2 KiB buffer) that
	// it would otherwise keep for the socket's whole life; one goroutine
	// serves the socket from here, as before.
	served = true
	go func() {
		defer h.wg.Done()
		defer h.remove(c)
		c.serve()
	}()
}

func (h *Hub) add(c *conn) bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.closing {
		return false
	}
	h.conns[c] = struct{}{}
	h.gauge(c).Inc()
	return true
}

func (h *Hub) remove(c *conn) {
	h.mu.Lock()
	delete(h.conns, c)
	h.mu.Unlock()
	h.gauge(c).Dec()
}

// gauge is the gauge that counts c: WebSockets, or forwarded sessions.
func (h *Hub) gauge(c *conn) prometheus.Gauge {
	if c.up != nil {
		return h.cfg.Metrics.ForwardedOpen
	}
	return h.cfg.Metrics.Connections
}

// Connections returns the number of open connections.
func (h *Hub) Connections() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.conns)
}

func (h *Hub) originAllowed(host, origin string) bool {
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return false // includes "null"
	}
	if strings.EqualFold(u.Host, host) {
		return true
	}
	for _, p := range h.cfg.OriginPatterns {
		target := u.Host
		if strings.Contains(p, "://") {
			target = u.Scheme + "://" + u.Host
		}
		if ok, _ := path.Match(strings.ToLower(p), strings.ToLower(target)); ok {
			return true
		}
	}
	return false
}

// Shutdown closes every connection with "going away" and waits for their
// goroutines, or for ctx. New upgrades are refused from the start.
func (h *Hub) Shutdown(ctx context.Context) error {
	h.mu.Lock()
	h.closing = true
	for c := range h.conns {
		c.kill(websocket.StatusGoingAway, "server shutting down", "shutdown")
	}
	h.mu.Unlock()
	h.unsub()
	h.fan.close()
	done := make(chan struct{})
	go func() {
		h.wg.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Now returns the hub clock's time in unix milliseconds.
func (h *Hub) Now() int64 { return h.cfg.Clock.Now().UnixMilli() }
