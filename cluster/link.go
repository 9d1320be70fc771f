package cluster

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/ethereum/go-ethereum/common"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/spells-dev/spells/hub"
	"github.com/spells-dev/spells/protocol"
)

// The node link: one WebSocket per pair of nodes (GET /v1/node-link on
// the node's own listener), authenticated both ways with the cluster
// secret, multiplexing every session one node forwards to the other.
// PROTOCOL.md §10 has the handshake and the records.
//
// A record is one binary message: a kind byte, a 4-byte stream id (big
// endian) and a payload. The node that opens a stream picks its id: odd
// on the node that dialed the link, even on the other, so both may open
// streams at once.
const (
	recOpen   byte = 1  // entry → vault's node: {"nonce", "remote"}
	recText   byte = 2  // a client frame (entry → vault's node), a message of frames (back)
	recBinary byte = 3  // a binary client frame (refused there, as from a socket)
	recBound  byte = 4  // vault's node → entry: the session is bound
	recClose  byte = 5  // either way: 2-byte close code and reason; the stream is over
	recFund   byte = 10 // {"chain","owner","key"}: fund a new session key from the dev faucet
	linkPath       = "/v1/node-link"
	linkProto      = "spells-node-link.v1"
	headerLen      = 5
)

// Link timings.
const (
	handshakeTimeout = 5 * time.Second
	linkWriteTimeout = 10 * time.Second
	linkPing         = 10 * time.Second
	linkReadLimit    = 16 << 20 // a vault's snapshot and a gathered message fit
	linkWait         = 3 * time.Second
)

// Dials to a peer that refused the last one wait between minDialBackoff
// and maxDialBackoff, doubling.
const (
	minDialBackoff = 100 * time.Millisecond
	maxDialBackoff = 5 * time.Second
)

type dialBackoff struct {
	wait  time.Duration
	until time.Time
}

// LinkMetrics count what the node links do.
type LinkMetrics struct {
	Links        prometheus.Gauge
	Dials        *prometheus.CounterVec // by result
	AuthFailed   prometheus.Counter
	StreamsOpen  prometheus.Counter
	RecordsSent  prometheus.Counter
	LinksDropped prometheus.Counter
}

// NewLinkMetrics registers the link metrics on reg (may be nil).
func NewLinkMetrics(reg prometheus.Registerer) *LinkMetrics {
	m := &LinkMetrics{
		Links:        prometheus.NewGauge(prometheus.GaugeOpts{Name: "spells_node_links", Help: "Node links up (one per other node this node talks to)."}),
		Dials:        prometheus.NewCounterVec(prometheus.CounterOpts{Name: "spells_node_link_dials_total", Help: "Node links dialed, by result (ok, failed)."}, []string{"result"}),
		AuthFailed:   prometheus.NewCounter(prometheus.CounterOpts{Name: "spells_node_link_auth_failed_total", Help: "Node link handshakes refused: a wrong cluster secret, or not a node."}),
		StreamsOpen:  prometheus.NewCounter(prometheus.CounterOpts{Name: "spells_node_link_streams_total", Help: "Sessions this node forwarded to other nodes."}),
		RecordsSent:  prometheus.NewCounter(prometheus.CounterOpts{Name: "spells_node_link_records_sent_total", Help: "Records written to node links."}),
		LinksDropped: prometheus.NewCounter(prometheus.CounterOpts{Name: "spells_node_links_dropped_total", Help: "Node links that ended (a peer gone, a failed write or ping)."}),
	}
	if reg != nil {
		reg.MustRegister(m.Links, m.Dials, m.AuthFailed, m.StreamsOpen, m.RecordsSent, m.LinksDropped)
	}
	return m
}

// LinksConfig configures Links.
type LinksConfig struct {
	Dir    *Directory
	Secret []byte // the cluster secret every node shares
	// Holds reports whether this node holds a vault's file: such a vault
	// is served here without asking Redis (so it is served while Redis is
	// down).
	Holds   func(vault common.Address) bool
	DataDir string // the node's data directory (the age of received vault files)
	// Fund, on a node that runs the dev chain's faucet, funds a session
	// key another node made (and its owner, once); FundChain is that
	// chain's id. nil: this node funds nothing for others.
	Fund      func(owner, key common.Address)
	FundChain uint64
	Logger    zerolog.Logger
	Metrics   *LinkMetrics
}

// Links is this node's side of every node link, and the hub's Router.
type Links struct {
	cfg LinksConfig
	me  string
	hub *hub.Hub
	log zerolog.Logger
	m   *LinkMetrics

	mu      sync.Mutex
	links   map[string]*link         // peer id → its link
	dialing map[string]chan struct{} // closed when a dial ends
	backoff map[string]dialBackoff   // peers whose last dial failed: no new dial before until
	changed chan struct{}            // closed (and replaced) when links changes
	handoff *Handoff                 // moves of vaults (NewHandoff); nil: none served
	// handshakes bounds the link handshakes in progress: the endpoint is
	// on the public listener, and a handshake is what anyone can start.
	handshakes chan struct{}
	closed     bool
	wg         sync.WaitGroup
}

var _ hub.Router = (*Links)(nil)

// NewLinks prepares the node links; SetHub must be called before any is
// accepted.
func NewLinks(cfg LinksConfig) *Links {
	if cfg.Metrics == nil {
		cfg.Metrics = NewLinkMetrics(nil)
	}
	if cfg.Holds == nil {
		cfg.Holds = func(common.Address) bool { return false }
	}
	return &Links{cfg: cfg, me: cfg.Dir.Node(), log: cfg.Logger, m: cfg.Metrics,
		links: map[string]*link{}, dialing: map[string]chan struct{}{}, backoff: map[string]dialBackoff{}, changed: make(chan struct{}),
		handshakes: make(chan struct{}, maxHandshakes)}
}

// SetHub sets the hub that serves the sessions other nodes forward here.
func (l *Links) SetHub(h *hub.Hub) { l.hub = h }

// Close ends every link (their streams end: clients reconnect).
func (l *Links) Close() {
	l.mu.Lock()
	l.closed = true
	links := make([]*link, 0, len(l.links))
	for _, lk := range l.links {
		links = append(links, lk)
	}
	l.mu.Unlock()
	for _, lk := range links {
		lk.close(websocket.StatusGoingAway, "node shutting down")
	}
	l.wg.Wait()
}

// unreachable is the error a client gets for a vault on a node it cannot
// reach now.
func unreachable(format string, args ...any) error {
	return protocol.Errorf(protocol.CodeNodeUnreachable, format, args...)
}

// Route implements hub.Router: a vault held here is served here; one with
// a home elsewhere is forwarded to it; one with no home goes where
// placement puts it (created here, or forwarded to the node that will
// create it).
func (l *Links) Route(ctx context.Context, vault common.Address) (hub.Forwarder, error) {
	if l.cfg.Holds(vault) {
		return nil, nil
	}
	home, ok, err := l.cfg.Dir.Lookup(ctx, vault)
	if err != nil {
		return nil, unreachable("the cluster's directory (Redis) does not answer, so a vault on another node cannot be found; retry")
	}
	target := home.Node
	if !ok {
		m, err := l.cfg.Dir.Place(vault)
		if err != nil {
			return nil, unreachable("no node of the cluster is alive in its directory; retry")
		}
		target = m.ID
	}
	if target == l.me {
		return nil, nil
	}
	lk, err := l.link(ctx, target)
	if err != nil {
		return nil, err
	}
	return lk, nil
}

// link returns the link to peer, dialing it if there is none. Of two
// links dialed at once by both ends, both keep the one the lower id
// dialed (register).
func (l *Links) link(ctx context.Context, peer string) (*link, error) {
	deadline := time.Now().Add(linkWait)
	for {
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			return nil, unreachable("node shutting down")
		}
		if lk := l.links[peer]; lk != nil {
			l.mu.Unlock()
			return lk, nil
		}
		if b := l.backoff[peer]; time.Now().Before(b.until) {
			// A peer that just refused a dial is not dialed again at every
			// sign-in: the client hears at once, and retries.
			l.mu.Unlock()
			return nil, unreachable("node %s cannot be reached now; retry", peer)
		}
		wait, busy := l.dialing[peer]
		if !busy {
			wait = make(chan struct{})
			l.dialing[peer] = wait
			l.mu.Unlock()
			err := l.dial(ctx, peer)
			l.mu.Lock()
			if err != nil {
				b := l.backoff[peer]
				b.wait = min(max(2*b.wait, minDialBackoff), maxDialBackoff)
				b.until = time.Now().Add(b.wait)
				l.backoff[peer] = b
			} else {
				delete(l.backoff, peer)
			}
			delete(l.dialing, peer)
			close(wait)
			lk := l.links[peer]
			l.mu.Unlock()
			if lk != nil {
				return lk, nil
			}
			return nil, err
		}
		l.mu.Unlock()
		t := time.NewTimer(time.Until(deadline))
		select {
		case <-wait:
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
		if ctx.Err() != nil || time.Now().After(deadline) {
			return nil, unreachable("no link to node %s yet; retry", peer)
		}
	}
}

// dial opens a link to peer at its address in the directory.
func (l *Links) dial(ctx context.Context, peer string) error {
	m, ok := l.cfg.Dir.Member(peer)
	if !ok {
		l.m.Dials.WithLabelValues("failed").Inc()
		return unreachable("node %s is not alive in the cluster (down or restarting): its vaults are unavailable until it is back; retry", peer)
	}
	dctx, cancel := context.WithTimeout(ctx, handshakeTimeout)
	defer cancel()
	ws, _, err := websocket.Dial(dctx, "http://"+m.Addr+linkPath, &websocket.DialOptions{Subprotocols: []string{linkProto}})
	if err == nil {
		err = l.dialerHandshake(dctx, ws, peer)
		if err != nil {
			ws.Close(websocket.StatusPolicyViolation, "handshake failed")
		}
	}
	if err != nil {
		l.m.Dials.WithLabelValues("failed").Inc()
		l.log.Warn().Err(err).Str("peer", peer).Str("addr", m.Addr).Msg("node link not made")
		return unreachable("node %s cannot be reached now; retry", peer)
	}
	l.m.Dials.WithLabelValues("ok").Inc()
	l.start(ws, peer, true)
	return nil
}

// maxHandshakes is how many node link handshakes may run at once; more
// are refused with 503 before the upgrade.
const maxHandshakes = 16

// ServeHTTP accepts a node link (GET /v1/node-link).
func (l *Links) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	select {
	case l.handshakes <- struct{}{}:
		defer func() { <-l.handshakes }()
	default:
		l.m.AuthFailed.Inc()
		l.log.Warn().Str("remote", r.RemoteAddr).Msg("node link refused: too many handshakes at once")
		http.Error(w, "too many node link handshakes at once; retry", http.StatusServiceUnavailable)
		return
	}
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{Subprotocols: []string{linkProto}})
	if err != nil {
		return
	}
	if ws.Subprotocol() != linkProto {
		ws.Close(websocket.StatusPolicyViolation, "subprotocol "+linkProto+" required")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), handshakeTimeout)
	peer, err := l.listenerHandshake(ctx, ws)
	cancel()
	if err != nil {
		l.m.AuthFailed.Inc()
		l.log.Warn().Err(err).Str("remote", r.RemoteAddr).Msg("node link refused")
		ws.Close(websocket.StatusPolicyViolation, "node link refused")
		return
	}
	l.start(ws, peer, false)
}

type hello struct {
	Node      string `json:"node"`
	Challenge string `json:"challenge,omitempty"`
	Proof     string `json:"proof,omitempty"`
}

// proof is HMAC-SHA256 under the cluster secret over who proves (role),
// the other end's challenge, and both ids.
func (l *Links) proof(role, challenge, dialer, listener string) string {
	m := hmac.New(sha256.New, l.cfg.Secret)
	fmt.Fprintf(m, "spells node link v1\x00%s\x00%s\x00%s\x00%s", role, challenge, dialer, listener)
	return hex.EncodeToString(m.Sum(nil))
}

func challenge() string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

func readHello(ctx context.Context, ws *websocket.Conn) (hello, error) {
	var h hello
	typ, data, err := ws.Read(ctx)
	if err != nil {
		return h, err
	}
	if typ != websocket.MessageText || json.Unmarshal(data, &h) != nil || h.Node == "" && h.Proof == "" {
		return h, errors.New("not a node link handshake")
	}
	return h, nil
}

func writeHello(ctx context.Context, ws *websocket.Conn, h hello) error {
	b, _ := json.Marshal(h)
	return ws.Write(ctx, websocket.MessageText, b)
}

// The handshake: the listener sends its id and a challenge; the dialer
// answers with its id, its own challenge and its proof over the
// listener's; the listener answers with its proof over the dialer's.
// Each end has then shown it holds the secret, on a challenge it could
// not have seen before.
func (l *Links) listenerHandshake(ctx context.Context, ws *websocket.Conn) (string, error) {
	ws.SetReadLimit(1 << 10)
	mine := challenge()
	if err := writeHello(ctx, ws, hello{Node: l.me, Challenge: mine}); err != nil {
		return "", err
	}
	h, err := readHello(ctx, ws)
	if err != nil {
		return "", err
	}
	if h.Node == l.me || len(h.Challenge) != 64 {
		return "", errors.New("not a node link handshake")
	}
	if !hmac.Equal([]byte(h.Proof), []byte(l.proof("dialer", mine, h.Node, l.me))) {
		return "", fmt.Errorf("node %q does not hold the cluster secret", h.Node)
	}
	if err := writeHello(ctx, ws, hello{Node: l.me, Proof: l.proof("listener", h.Challenge, h.Node, l.me)}); err != nil {
		return "", err
	}
	return h.Node, nil
}

func (l *Links) dialerHandshake(ctx context.Context, ws *websocket.Conn, peer string) error {
	ws.SetReadLimit(1 << 10)
	h, err := readHello(ctx, ws)
	if err != nil {
		return err
	}
	if h.Node != peer {
		return fmt.Errorf("dialed node %s, reached %q", peer, h.Node)
	}
	mine := challenge()
	if err := writeHello(ctx, ws, hello{Node: l.me, Challenge: mine, Proof: l.proof("dialer", h.Challenge, l.me, peer)}); err != nil {
		return err
	}
	h, err = readHello(ctx, ws)
	if err != nil {
		return err
	}
	if !hmac.Equal([]byte(h.Proof), []byte(l.proof("listener", mine, l.me, peer))) {
		l.m.AuthFailed.Inc()
		return fmt.Errorf("node %s does not hold the cluster secret", peer)
	}
	return nil
}

// start runs an authenticated link and registers it. Of two links with
// one peer, the one the lower id dialed stays.
func (l *Links) start(ws *websocket.Conn, peer string, dialed bool) {
	ws.SetReadLimit(linkReadLimit)
	lk := &link{l: l, ws: ws, peer: peer, dialed: dialed, streams: map[uint32]*stream{}, calls: map[uint32]chan string{},
		moves: map[uint32]*moveIn{}, done: make(chan struct{})}
	if dialed {
		lk.next = 1
	} else {
		lk.next = 2
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		ws.Close(websocket.StatusGoingAway, "node shutting down")
		return
	}
	if old := l.links[peer]; old != nil {
		lowerDialed := func(k *link) bool { return k.dialed == (l.me < peer) }
		if lowerDialed(old) && !lowerDialed(lk) {
			l.mu.Unlock()
			ws.Close(websocket.StatusNormalClosure, "a link with this node exists")
			return
		}
		go old.close(websocket.StatusNormalClosure, "replaced by a newer link")
	}
	l.links[peer] = lk
	delete(l.backoff, peer)
	close(l.changed)
	l.changed = make(chan struct{})
	l.wg.Add(2)
	l.mu.Unlock()
	l.m.Links.Inc()
	l.log.Info().Str("peer", peer).Bool("dialed", dialed).Msg("node link up")
	go func() {
		defer l.wg.Done()
		lk.read()
	}()
	go func() {
		defer l.wg.Done()
		lk.ping()
	}()
}

func (l *Links) dropped(lk *link) {
	l.mu.Lock()
	if l.links[lk.peer] == lk {
		delete(l.links, lk.peer)
	}
	l.mu.Unlock()
	l.m.Links.Dec()
	l.m.LinksDropped.Inc()
}

// link is one node link.
type link struct {
	l      *Links
	ws     *websocket.Conn
	peer   string
	dialed bool

	mu      sync.Mutex
	streams map[uint32]*stream
	calls   map[uint32]chan string // move calls waiting for their reply (handoff.go)
	moves   map[uint32]*moveIn     // move offers being received
	next    uint32
	over    bool

	closeOnce sync.Once
	done      chan struct{}
}

// stream is one session on a link: opened here (down is the entry's
// conn) or by the peer (fwd is the hub's forwarded session).
type stream struct {
	lk   *link
	id   uint32
	down hub.Downstream
	fwd  *hub.Forwarded

	once sync.Once
}

func (lk *link) send(kind byte, id uint32, payload []byte) error {
	buf := make([]byte, headerLen+len(payload))
	buf[0] = kind
	binary.BigEndian.PutUint32(buf[1:], id)
	copy(buf[headerLen:], payload)
	ctx, cancel := context.WithTimeout(context.Background(), linkWriteTimeout)
	defer cancel()
	if err := lk.ws.Write(ctx, websocket.MessageBinary, buf); err != nil {
		lk.close(websocket.StatusGoingAway, "write failed")
		return unreachable("lost the link to node %s; retry", lk.peer)
	}
	lk.l.m.RecordsSent.Inc()
	return nil
}

func closePayload(code websocket.StatusCode, reason string) []byte {
	if len(reason) > 120 {
		reason = reason[:120]
	}
	b := make([]byte, 2, 2+len(reason))
	binary.BigEndian.PutUint16(b, uint16(code))
	return append(b, reason...)
}

// Open implements hub.Forwarder: a new stream to the peer for a client.
func (lk *link) Open(ctx context.Context, nonce, remote string, down hub.Downstream) (hub.Stream, error) {
	lk.mu.Lock()
	if lk.over {
		lk.mu.Unlock()
		return nil, unreachable("lost the link to node %s; retry", lk.peer)
	}
	s := &stream{lk: lk, id: lk.next, down: down}
	lk.next += 2
	lk.streams[s.id] = s
	lk.mu.Unlock()
	open, _ := json.Marshal(map[string]string{"nonce": nonce, "remote": remote})
	if err := lk.send(recOpen, s.id, open); err != nil {
		return nil, err
	}
	lk.l.m.StreamsOpen.Inc()
	return s, nil
}

// Send implements hub.Stream.
func (s *stream) Send(frame []byte, bin bool) error {
	kind := recText
	if bin {
		kind = recBinary
	}
	return s.lk.send(kind, s.id, frame)
}

// Close implements hub.Stream (the client left) and, on the vault's
// side, ends the stream from there.
func (s *stream) Close() { s.end(websocket.StatusNormalClosure, "") }

// Write, Bound and Close are hub.Upstream: the vault's node's side.
func (s *stream) Write(msg []byte) error { return s.lk.send(recText, s.id, msg) }

// Bound implements hub.Upstream.
func (s *stream) Bound() { _ = s.lk.send(recBound, s.id, nil) }

type upstream struct{ *stream }

// Close implements hub.Upstream.
func (u upstream) Close(code websocket.StatusCode, reason string) { u.end(code, reason) }

// end tells the peer the stream is over, once, and forgets it.
func (s *stream) end(code websocket.StatusCode, reason string) {
	s.once.Do(func() {
		s.lk.forget(s.id)
		_ = s.lk.send(recClose, s.id, closePayload(code, reason))
	})
}

func (lk *link) forget(id uint32) {
	lk.mu.Lock()
	delete(lk.streams, id)
	lk.mu.Unlock()
}

func (lk *link) stream(id uint32) *stream {
	lk.mu.Lock()
	defer lk.mu.Unlock()
	return lk.streams[id]
}

// read dispatches records until the link ends. Nothing it calls blocks:
// a session's frames queue on its conn, or close it.
func (lk *link) read() {
	defer lk.close(websocket.StatusGoingAway, "")
	for {
		typ, data, err := lk.ws.Read(context.Background())
		if err != nil {
			return
		}
		if typ != websocket.MessageBinary || len(data) < headerLen {
			lk.l.log.Warn().Str("peer", lk.peer).Msg("node link: malformed record; link closed")
			return
		}
		kind, id, payload := data[0], binary.BigEndian.Uint32(data[1:headerLen]), data[headerLen:]
		if kind == recOpen {
			lk.accept(id, payload)
			continue
		}
		if lk.readMove(kind, id, payload) {
			continue
		}
		if kind == recFund {
			lk.fund(payload)
			continue
		}
		s := lk.stream(id)
		if s == nil {
			continue // a stream that just ended here
		}
		switch kind {
		case recText, recBinary:
			if s.fwd != nil {
				s.fwd.Frame(payload, kind == recBinary)
			} else if s.down != nil {
				s.down.Deliver(payload)
			}
		case recBound:
			if s.down != nil {
				s.down.Bound()
			}
		case recClose:
			lk.forget(id)
			s.once.Do(func() {}) // nothing to tell the peer: it ended it
			code, reason := websocket.StatusNormalClosure, ""
			if len(payload) >= 2 {
				code, reason = websocket.StatusCode(binary.BigEndian.Uint16(payload)), string(payload[2:])
			}
			if s.fwd != nil {
				s.fwd.Close()
			} else if s.down != nil {
				s.down.Closed(code, reason)
			}
		}
	}
}

// accept serves a stream the peer opened.
func (lk *link) accept(id uint32, payload []byte) {
	var open struct {
		Nonce  string `json:"nonce"`
		Remote string `json:"remote"`
	}
	if json.Unmarshal(payload, &open) != nil || lk.l.hub == nil || id%2 == lk.next%2 {
		_ = lk.send(recClose, id, closePayload(websocket.StatusPolicyViolation, "malformed stream"))
		return
	}
	s := &stream{lk: lk, id: id}
	lk.mu.Lock()
	if lk.over || lk.streams[id] != nil {
		lk.mu.Unlock()
		return
	}
	lk.streams[id] = s
	lk.mu.Unlock()
	fwd, err := lk.l.hub.ServeForwarded(upstream{s}, open.Nonce, open.Remote+" via "+lk.peer)
	if err != nil {
		s.end(websocket.StatusGoingAway, err.Error())
		return
	}
	lk.mu.Lock()
	s.fwd = fwd
	lk.mu.Unlock()
}

// ping checks the peer every linkPing; one that does not answer ends the
// link.
func (lk *link) ping() {
	t := time.NewTicker(linkPing)
	defer t.Stop()
	for {
		select {
		case <-lk.done:
			return
		case <-t.C:
		}
		ctx, cancel := context.WithTimeout(context.Background(), linkWriteTimeout)
		err := lk.ws.Ping(ctx)
		cancel()
		if err != nil {
			lk.close(websocket.StatusGoingAway, "ping failed")
			return
		}
	}
}

// close ends the link once: every stream on it ends (an entry's client
// is closed with CloseNodeLink, to reconnect; a forwarded session ends).
func (lk *link) close(code websocket.StatusCode, reason string) {
	lk.closeOnce.Do(func() {
		lk.mu.Lock()
		lk.over = true
		streams := lk.streams
		lk.streams = map[uint32]*stream{}
		for id, ch := range lk.calls {
			close(ch)
			delete(lk.calls, id)
		}
		lk.moves = map[uint32]*moveIn{}
		lk.mu.Unlock()
		close(lk.done)
		go lk.ws.Close(code, reason)
		lk.l.dropped(lk)
		lk.l.log.Warn().Str("peer", lk.peer).Int("streams", len(streams)).Str("reason", reason).Msg("node link down")
		for _, s := range streams {
			s.once.Do(func() {})
			switch {
			case s.fwd != nil:
				s.fwd.Close()
			case s.down != nil:
				s.down.Closed(protocol.CloseNodeLink, "lost the link to the vault's node: reconnect and resume")
			}
		}
	})
}

type fundRequest struct {
	Chain uint64 `json:"chain"`
	Owner string `json:"owner"`
	Key   string `json:"key"`
}

// Fund asks the node that runs the dev chain's faucet for chain to fund a
// session key this node made, and its owner once: on a dev cluster only
// one node runs the chain, and the vaults of the others need gas too. It
// may wait for a link; what cannot be sent is logged.
func (l *Links) Fund(chain uint64, owner, key common.Address) {
	for _, m := range l.cfg.Dir.Members() {
		if m.Faucet != chain || m.ID == l.me {
			continue
		}
		ctx, cancel := context.WithTimeout(context.Background(), linkWait+handshakeTimeout)
		lk, err := l.link(ctx, m.ID)
		cancel()
		if err == nil {
			b, _ := json.Marshal(fundRequest{Chain: chain, Owner: owner.Hex(), Key: key.Hex()})
			err = lk.send(recFund, 0, b)
		}
		if err != nil {
			l.log.Warn().Err(err).Str("faucet", m.ID).Str("owner", owner.Hex()).Msg("could not ask the faucet to fund a new vault")
		}
		return
	}
	l.log.Info().Str("owner", owner.Hex()).Msg("no node of the cluster runs a faucet on this chain: the new vault's session key is not funded")
}

// fund serves a peer's fund request with this node's faucet.
func (lk *link) fund(payload []byte) {
	var r fundRequest
	if lk.l.cfg.Fund == nil || json.Unmarshal(payload, &r) != nil || r.Chain != lk.l.cfg.FundChain ||
		!common.IsHexAddress(r.Owner) || !common.IsHexAddress(r.Key) {
		lk.l.log.Warn().Str("peer", lk.peer).Msg("node link: a fund request this node does not serve")
		return
	}
	lk.l.cfg.Fund(common.HexToAddress(r.Owner), common.HexToAddress(r.Key))
}
