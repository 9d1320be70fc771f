package cluster

import (
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"
)

// The directory: which node each vault lives on, and which nodes are
// alive. Keys (PROTOCOL.md §10 lists them with their values):
//
//	spells:{dir}:members   sorted set: node id → its lease's expiry (unix ms)
//	spells:{dir}:nodes     hash: node id → {"addr": internal address, "joined": unix ms}
//	spells:{dir}:gen       the directory's generation: a random id set by the first node
//	spells:{dir}:left      set: nodes that drained and left for good
//	spells:{dir}:rebuild   set for one lease by a node that found the
//	                       directory lost: no node creates a vault meanwhile
//	spells:vault:{<id>}    a vault's home: "<node id> <epoch>"
//
// The three {dir} keys share a Redis Cluster slot, so membership is one
// transaction; a home is one key, its own slot, and every script touches
// one key only, so homes spread over every shard.
const (
	keyMembers = "spells:{dir}:members"
	keyNodes   = "spells:{dir}:nodes"
	keyGen     = "spells:{dir}:gen"
	keyLeft    = "spells:{dir}:left"
	keyRebuild = "spells:{dir}:rebuild"
)

func homeKey(vault string) string { return "spells:vault:{" + vault + "}" }

// Home is where a vault lives: a node, and the vault's epoch there. The
// epoch rises at every move of the vault to another node.
type Home struct {
	Node  string
	Epoch uint64
}

func (h Home) String() string { return h.Node + " " + strconv.FormatUint(h.Epoch, 10) }

func parseHome(s string) (Home, error) {
	node, epoch, ok := strings.Cut(s, " ")
	e, err := strconv.ParseUint(epoch, 10, 64)
	if !ok || err != nil || node == "" {
		return Home{}, fmt.Errorf("directory: malformed home %q", s)
	}
	return Home{Node: node, Epoch: e}, nil
}

// Member is a live node of the cluster.
type Member struct {
	ID       string
	Addr     string // where other nodes reach its node link (host:port)
	Draining bool   // it hands its vaults away: no new vault is placed there
	Faucet   uint64 // the chain id of the dev faucet it runs, 0: none (Links.Fund)
}

// Errors of the directory. Each is retryable: the client may try again.
var (
	// ErrRebuilding refuses to create a vault while the directory is being
	// rebuilt after Redis lost it: a vault whose home is not registered
	// again yet must not be created afresh elsewhere.
	ErrRebuilding = errors.New("the cluster's directory is being rebuilt after Redis lost it")
	// ErrDraining refuses to create a vault on a node that hands its
	// vaults away.
	ErrDraining = errors.New("this node is draining: new vaults go to the other nodes")
	// ErrNoMembers: no node of the cluster is alive in the directory.
	ErrNoMembers = errors.New("no live node in the cluster's directory")
)

// ElsewhereError says a vault already has a home on another node.
type ElsewhereError struct{ Home Home }

func (e *ElsewhereError) Error() string {
	return "vault lives on node " + e.Home.Node + " (epoch " + strconv.FormatUint(e.Home.Epoch, 10) + ")"
}

// DirectoryConfig configures a Directory.
type DirectoryConfig struct {
	Node string // this node's id: stable across restarts (homes name it)
	Addr string // this node's internal address, for the node link
	// Lease is how long a membership lasts without renewal (default 15s);
	// it is renewed every Lease/3.
	Lease time.Duration
	// Reassert is how often every home this node holds is written again,
	// in batches, in case Redis lost it (default 1m).
	Reassert time.Duration
	// Held lists the vaults this node holds and their epochs: read at
	// Start and at every reassertion (the vault manager's list).
	Held func() map[string]uint64
	// Superseded, if set, is told of a vault held here whose home the
	// directory gives another node at a higher epoch (restored there while
	// this node was gone): this node's copy must stand down. It must not
	// block.
	Superseded func(vault common.Address, home Home)
	// Faucet is the chain id of the dev chain's faucet this node runs (0:
	// none); other nodes ask it to fund the session keys they make.
	Faucet uint64
	// Secret is the cluster secret and KEKID the id of this node's
	// key-encryption key: a node joins only with both the cluster's
	// (proof.go).
	Secret []byte
	KEKID  string
	// PeersFile keeps the nodes this node has seen and the directory's
	// generation across restarts (peers.go); empty: in memory only.
	PeersFile string
	Logger    zerolog.Logger
	Metrics   *DirectoryMetrics
}

// DirectoryMetrics count what the directory does.
type DirectoryMetrics struct {
	Renewals     prometheus.Counter
	RenewFailed  prometheus.Counter
	Rebuilds     prometheus.Counter // times the directory was found lost and written again
	HomesWritten prometheus.Counter
	Conflicts    prometheus.Counter // vaults held here that the directory gives another node
	Members      prometheus.Gauge
	Reachable    prometheus.Gauge // 1 while Redis answers
}

// NewDirectoryMetrics registers the directory's metrics on reg (may be nil).
func NewDirectoryMetrics(reg prometheus.Registerer) *DirectoryMetrics {
	m := &DirectoryMetrics{
		Renewals:     prometheus.NewCounter(prometheus.CounterOpts{Name: "spells_directory_renewals_total", Help: "Membership leases renewed in Redis."}),
		RenewFailed:  prometheus.NewCounter(prometheus.CounterOpts{Name: "spells_directory_renew_failed_total", Help: "Membership renewals Redis did not answer."}),
		Rebuilds:     prometheus.NewCounter(prometheus.CounterOpts{Name: "spells_directory_rebuilds_total", Help: "Times the directory was found lost (a Redis without it) and this node's homes were written again."}),
		HomesWritten: prometheus.NewCounter(prometheus.CounterOpts{Name: "spells_directory_homes_written_total", Help: "Vault homes this node registered or reasserted in Redis."}),
		Conflicts:    prometheus.NewCounter(prometheus.CounterOpts{Name: "spells_directory_conflicts_total", Help: "Vaults held on this node that the directory gives another node at an equal or higher epoch."}),
		Members:      prometheus.NewGauge(prometheus.GaugeOpts{Name: "spells_directory_members", Help: "Live nodes in the cluster's directory, as last read."}),
		Reachable:    prometheus.NewGauge(prometheus.GaugeOpts{Name: "spells_directory_reachable", Help: "1 while Redis answers the directory, 0 while it does not."}),
	}
	if reg != nil {
		reg.MustRegister(m.Renewals, m.RenewFailed, m.Rebuilds, m.HomesWritten, m.Conflicts, m.Members, m.Reachable)
	}
	return m
}

// Directory is this node's view of the cluster's directory in Redis: its
// own membership lease (renewed in the background), the live members, and
// the homes of vaults. Redis is never in a vault's write path: the
// directory is read when a client signs in, and written when a vault is
// created or moved.
//
// A home has no expiry of its own: a vault's file is on its node's disk,
// so while that node is down its vaults are unavailable, never created
// again elsewhere. A home's lease is its node's membership. A node writes
// all its homes again at start and every Reassert (in pipelined batches),
// and at once when it finds the directory lost (the generation key gone:
// a Redis restarted empty); for one lease after that, no vault is created
// anywhere, so every live node has written its homes back first. A node
// that never saw a directory and holds no vault, finding none, starts it
// and creates vaults at once: a first start is not a loss. A node that
// finds the directory lost says so in Redis (keyRebuild, for a lease), so
// a newcomer that started the directory again stops creating too.
type Directory struct {
	rdb redis.UniversalClient
	cfg DirectoryConfig
	log zerolog.Logger
	m   *DirectoryMetrics

	mu           sync.Mutex
	members      []Member
	gen          string
	rebuilding   time.Time       // no creations before this
	draining     bool            // this node hands its vaults away (SetDraining)
	book         *peerBook       // the nodes seen, on disk (peers.go)
	awaiting     map[string]bool // nodes seen before a directory loss that have not rejoined since
	reachable    bool
	lastReassert time.Time
	homesOwed    bool              // the homes are to be written back whole (first contact, a loss) and were not yet
	out          string            // why this node stays out of the cluster; "" while a member (proof.go)
	strangers    map[string]string // entries in the members that are not this cluster's, and why (logged once)

	closeOnce sync.Once
	kick      chan struct{} // renew now
	stop      chan struct{}
	done      chan struct{}
}

// NewDirectory prepares a Directory; Start joins the cluster. It fails
// only when the peers file cannot be read.
func NewDirectory(rdb redis.UniversalClient, cfg DirectoryConfig) (*Directory, error) {
	if cfg.Lease <= 0 {
		cfg.Lease = 15 * time.Second
	}
	if cfg.Reassert <= 0 {
		cfg.Reassert = time.Minute
	}
	if cfg.Held == nil {
		cfg.Held = func() map[string]uint64 { return nil }
	}
	if cfg.Metrics == nil {
		cfg.Metrics = NewDirectoryMetrics(nil)
	}
	book, err := loadPeers(cfg.PeersFile)
	if err != nil {
		return nil, err
	}
	return &Directory{rdb: rdb, cfg: cfg, log: cfg.Logger, m: cfg.Metrics, book: book, gen: book.Generation, awaiting: map[string]bool{}, strangers: map[string]string{},
		kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}, nil
}

// Node is this node's id.
func (d *Directory) Node() string { return d.cfg.Node }

// Reachable reports whether Redis answered the last renewal.
func (d *Directory) Reachable() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.reachable
}

// Settled reports whether this node may create vaults: the directory is
// not being rebuilt (see Directory), and no node seen before a loss of it
// is still awaited.
func (d *Directory) Settled() bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.out == "" && !time.Now().Before(d.rebuilding) && len(d.awaiting) == 0
}

// Members returns the live members as last read (sorted by id).
func (d *Directory) Members() []Member {
	d.mu.Lock()
	defer d.mu.Unlock()
	return slices.Clone(d.members)
}

// Member returns the live member with id.
func (d *Directory) Member(id string) (Member, bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, m := range d.members {
		if m.ID == id {
			return m, true
		}
	}
	return Member{}, false
}
