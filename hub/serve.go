package hub

import (
	"context"
	"net"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/spells-dev/spells/protocol"
)

// Serving: the hub's WebSockets and the sessions other nodes forward here,
// from the upgrade to the end, and the hub's own start and shutdown.

// New creates a Hub and subscribes it to the bus.
func New(cfg Config) *Hub {
	cfg.setDefaults()
	h := &Hub{cfg: cfg, log: cfg.Logger, conns: map[*conn]struct{}{},
		limits: newAddrLimits(max(0, cfg.MaxPendingPerAddress), max(0, cfg.SignInRate), max(0, cfg.SignInBurst))}
	h.fan = startFanout(h)
	h.watchStop, h.watchDone = make(chan struct{}), make(chan struct{})
	go h.watchWrites(h.watchStop, h.watchDone)
	h.unsub = cfg.Bus.Subscribe(h.onSignal)
	return h
}

// History returns the hub's signal history.
func (h *Hub) History() *History { return h.cfg.History }

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
	wr := &wire{}
	ws, err := websocket.Accept(smallBuffers{w, &nc, wr}, r, &websocket.AcceptOptions{
		Subprotocols:       []string{protocol.Subprotocol},
		InsecureSkipVerify: true, // the Origin was checked above
		// The hub frames its messages itself (wire.go): uncompressed.
		CompressionMode: websocket.CompressionDisabled,
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
	c := newConn(h, ws, nc, wr, r.RemoteAddr, key)
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

func (c *conn) serve() {
	c.signInTimer = time.AfterFunc(c.h.cfg.SignInTimeout, func() {
		if !c.signedIn.Load() {
			c.kill(protocol.CloseSignInTimeout, "no sign-in in time", "signin_timeout")
		}
	})
	c.pinger = time.AfterFunc(c.h.cfg.PingInterval, c.ping)
	c.Send(mustJSON(protocol.Challenge{Type: protocol.TypeChallenge, Nonce: c.nonce, Domains: c.h.cfg.Domains,
		ChainID: c.h.cfg.ChainID, Node: c.h.cfg.Node}))
	c.readLoop()
	c.workers.Wait() // every frame read gets its answer (or is dropped by a kill)
	if c.signInTimer != nil {
		c.signInTimer.Stop()
	}
	c.pinger.Stop()
	c.kill(websocket.StatusNormalClosure, "", "client")
	c.tasks.Wait()
	c.authenticated()
	if c.bound != nil {
		c.bound.Detach(c)
	}
	if c.stream != nil {
		c.stream.Close()
	}
}

// Forwarded is the hub's side of a session another node forwards here.
type Forwarded struct{ c *conn }

// ServeForwarded serves a session the node at the client's end forwards
// here: nonce is the one that node issued on the client's socket (the
// vault checks it as its own: the cluster shares the nonce key), remote
// the client's address, for logs. The link hands the client's frames to
// Frame, and calls Close when the client leaves or the link falls.
func (h *Hub) ServeForwarded(up Upstream, nonce, remote string) (*Forwarded, error) {
	h.mu.Lock()
	if h.closing {
		h.mu.Unlock()
		return nil, protocol.Errorf(protocol.CodeUnavailable, "node shutting down")
	}
	h.wg.Add(1)
	h.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	c := &conn{h: h, up: up, ctx: ctx, cancel: cancel, remote: remote, nonce: nonce, ended: make(chan struct{})}
	c.sock = upSocket{c}
	if !h.add(c) {
		h.wg.Done()
		cancel()
		return nil, protocol.Errorf(protocol.CodeUnavailable, "node shutting down")
	}
	h.cfg.Metrics.Forwarded.Inc()
	go func() {
		defer h.wg.Done()
		defer h.remove(c)
		<-c.ended
		c.workers.Wait()
		c.kill(websocket.StatusNormalClosure, "", "client")
		c.tasks.Wait()
		if c.bound != nil {
			c.bound.Detach(c)
		}
	}()
	return &Forwarded{c}, nil
}

// Frame queues one client frame for the session's worker; it never
// blocks.
func (f *Forwarded) Frame(data []byte, binary bool) {
	c := f.c
	c.inMu.Lock()
	if len(c.in) >= maxForwardedIn {
		c.inMu.Unlock()
		c.kill(websocket.StatusTryAgainLater, "too many frames waiting for the vault: reconnect and resume", "forwarded_backlog")
		return
	}
	c.pushInLocked(frameIn{data: data, binary: binary})
	c.inMu.Unlock()
}

// Close ends the session: its client left, or the link to its node fell.
func (f *Forwarded) Close() {
	f.c.cancel()
	f.c.endStream()
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
	// The write watch runs on until every connection has ended: a writer
	// stuck on a client that stopped reading is still cut short.
	defer h.stopWatch()
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

// stopWatch stops the write watch and waits for it (again: no-op).
func (h *Hub) stopWatch() {
	select {
	case <-h.watchStop:
	default:
		close(h.watchStop)
	}
	<-h.watchDone
}
