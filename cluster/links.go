package cluster

import (
	"context"
	"net/netip"
	"sync"
	"time"

	"github.com/coder/websocket"
	"github.com/ethereum/go-ethereum/common"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/spells-dev/spells/hub"
	"github.com/spells-dev/spells/protocol"
)

// The node links' state: one link per peer, dialed or accepted, and what
// each link multiplexes.

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
	handoff mover                    // moves of vaults (NewHandoff); nil: none served
	// handshakes bounds the link handshakes in progress: the endpoint is
	// on the public listener, and a handshake is what anyone can start.
	handshakes chan struct{}
	inflight   map[netip.Addr]int  // handshakes in progress by source address (mu)
	hosts      map[string]resolved // members' host names resolved (mu)
	closed     bool
	// ctx ends when Close begins; wg counts every goroutine the links
	// started (each link's read and ping loops, its closes, the requests
	// to a faucet): Close waits for them.
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

var _ hub.Router = (*Links)(nil)

// mover serves, on this node, the moves a peer offers (the Handoff).
type mover interface {
	serveMove(lk *link, id uint32, kind byte, hdr, data []byte)
}

// NewLinks prepares the node links; SetHub must be called before any is
// accepted.
func NewLinks(cfg LinksConfig) *Links {
	if cfg.Metrics == nil {
		cfg.Metrics = NewLinkMetrics(nil)
	}
	if cfg.Holds == nil {
		cfg.Holds = func(common.Address) bool { return false }
	}
	l := &Links{cfg: cfg, me: cfg.Dir.Node(), log: cfg.Logger, m: cfg.Metrics,
		links: map[string]*link{}, dialing: map[string]chan struct{}{}, backoff: map[string]dialBackoff{}, changed: make(chan struct{}),
		handshakes: make(chan struct{}, maxHandshakes), inflight: map[netip.Addr]int{}, hosts: map[string]resolved{}}
	l.ctx, l.cancel = context.WithCancel(context.Background())
	return l
}

// spawn runs fn on a goroutine Close waits for; false (and fn not run)
// once Close has begun. fn's ctx ends when Close begins.
func (l *Links) spawn(fn func(ctx context.Context)) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.closed {
		return false
	}
	l.wg.Add(1)
	go func() {
		defer l.wg.Done()
		fn(l.ctx)
	}()
	return true
}

// SetHub sets the hub that serves the sessions other nodes forward here.
func (l *Links) SetHub(h *hub.Hub) { l.hub = h }

// unreachable is the error a client gets for a vault on a node it cannot
// reach now.
func unreachable(format string, args ...any) error {
	return protocol.Errorf(protocol.CodeNodeUnreachable, format, args...)
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

	closeOnce   sync.Once
	done        chan struct{}        // closed by close
	closeCode   websocket.StatusCode // why, set before done is closed
	closeReason string
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

type upstream struct{ *stream }

// moveIn is a move offer being received.
type moveIn struct {
	hdr  []byte
	size int
	data []byte
}
