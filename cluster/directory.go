package cluster

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"hash/fnv"
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
	// Faucet is the chain id of the dev chain's faucet this node runs (0:
	// none); other nodes ask it to fund the session keys they make.
	Faucet uint64
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
// anywhere, so every live node has written its homes back first.
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
	return &Directory{rdb: rdb, cfg: cfg, log: cfg.Logger, m: cfg.Metrics, book: book, gen: book.Generation, awaiting: map[string]bool{},
		kick: make(chan struct{}, 1), stop: make(chan struct{}), done: make(chan struct{})}, nil
}

// Node is this node's id.
func (d *Directory) Node() string { return d.cfg.Node }

// Start joins the cluster (membership and every held home) and keeps the
// lease renewed until Close. A Redis that does not answer at start is not
// fatal: the node serves its own vaults and keeps trying.
func (d *Directory) Start(ctx context.Context) {
	if err := d.renew(ctx); err != nil {
		d.log.Warn().Err(err).Msg("redis does not answer: serving this node's vaults; joining the cluster when it does")
	}
	go d.loop()
}

// Close leaves the cluster: the membership is removed (the homes stay:
// the vaults are on this node's disk) and renewal stops.
func (d *Directory) Close() { d.closeOnce.Do(d.leave) }

func (d *Directory) leave() {
	close(d.stop)
	<-d.done
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	d.mu.Lock()
	left := d.draining
	d.mu.Unlock()
	_, err := d.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.ZRem(ctx, keyMembers, d.cfg.Node)
		p.HDel(ctx, keyNodes, d.cfg.Node)
		if left {
			// Drained: it holds no vault, so no node awaits it after a
			// directory loss.
			p.SAdd(ctx, keyLeft, d.cfg.Node)
		}
		return nil
	})
	if err != nil {
		d.log.Warn().Err(err).Msg("could not leave the cluster's directory; the lease runs out by itself")
	}
}

func (d *Directory) loop() {
	defer close(d.done)
	backoff := d.cfg.Lease / 3
	t := time.NewTimer(backoff)
	defer t.Stop()
	for {
		select {
		case <-d.stop:
			return
		case <-t.C:
		case <-d.kick:
			if !t.Stop() {
				select {
				case <-t.C:
				default:
				}
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), d.cfg.Lease/3)
		err := d.renew(ctx)
		cancel()
		next := d.cfg.Lease / 3
		if err != nil {
			// Backing off past the lease would let it lapse for nothing:
			// the next try that reaches Redis renews it.
			backoff = min(2*backoff, d.cfg.Lease)
			next = backoff
		} else {
			backoff = d.cfg.Lease / 3
		}
		t.Reset(next)
	}
}

// renew renews the membership lease, reads the live members and the
// generation, and rebuilds this node's homes when the directory was lost.
func (d *Directory) renew(ctx context.Context) error {
	now := time.Now()
	d.mu.Lock()
	draining := d.draining
	d.mu.Unlock()
	info, _ := json.Marshal(map[string]any{"addr": d.cfg.Addr, "joined": now.UnixMilli(), "draining": draining, "faucet": d.cfg.Faucet})
	var gen *redis.StringCmd
	var live *redis.ZSliceCmd
	var left *redis.StringSliceCmd
	_, err := d.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.ZAdd(ctx, keyMembers, redis.Z{Score: float64(now.Add(d.cfg.Lease).UnixMilli()), Member: d.cfg.Node})
		p.HSet(ctx, keyNodes, d.cfg.Node, info)
		p.SRem(ctx, keyLeft, d.cfg.Node) // a node that left and came back
		p.ZRemRangeByScore(ctx, keyMembers, "-inf", strconv.FormatInt(now.UnixMilli(), 10))
		gen = p.Get(ctx, keyGen)
		live = p.ZRangeWithScores(ctx, keyMembers, 0, -1)
		left = p.SMembers(ctx, keyLeft)
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		d.m.RenewFailed.Inc()
		d.setReachable(false, err)
		return fmt.Errorf("renew membership: %w", err)
	}
	d.m.Renewals.Inc()
	members, err := d.readMembers(ctx, live.Val())
	if err != nil {
		d.setReachable(false, err)
		return err
	}
	d.setReachable(true, nil)
	d.mu.Lock()
	d.members = members
	known := d.gen
	d.seeLocked(members, left.Val(), now)
	d.mu.Unlock()
	d.m.Members.Set(float64(len(members)))
	g, gerr := gen.Result()
	if gerr == nil && g == known {
		if time.Since(d.lastReassertTime()) >= d.cfg.Reassert {
			return d.writeHomes(ctx, false)
		}
		return nil
	}
	// First contact, or the directory was lost (no generation, or
	// another one: a Redis restarted empty and another node started it
	// again). Take part in the generation and write every home back.
	fresh := randomID()
	if ok, err := d.rdb.SetNX(ctx, keyGen, fresh, 0).Result(); err != nil {
		return fmt.Errorf("directory generation: %w", err)
	} else if !ok {
		if fresh, err = d.rdb.Get(ctx, keyGen).Result(); err != nil {
			return fmt.Errorf("directory generation: %w", err)
		}
	}
	lost := known != "" && known != fresh
	d.mu.Lock()
	d.gen = fresh
	d.book.Generation = fresh
	var awaited []string
	if lost || gerr != nil {
		// Redis has no directory, or one another node just started:
		// every live node writes its homes back within a lease, and the
		// nodes seen before that are down write theirs when they start.
		d.rebuilding = time.Now().Add(d.cfg.Lease)
		present := map[string]bool{}
		for _, m := range members {
			present[m.ID] = true
		}
		for id := range d.book.Seen {
			if id != d.cfg.Node && !present[id] {
				d.awaiting[id] = true
			}
		}
		awaited = d.awaitingLocked()
	}
	if err := d.book.save(); err != nil {
		d.log.Warn().Err(err).Msg("could not write the cluster's peers to disk")
	}
	d.mu.Unlock()
	if lost {
		d.m.Rebuilds.Inc()
		d.log.Warn().Str("generation", fresh).Strs("awaiting", awaited).Msg("the cluster's directory was lost (redis restarted empty?): writing this node's homes back; no vault is created for one lease, nor before the nodes awaited rejoin")
	} else if len(awaited) > 0 {
		d.log.Warn().Strs("awaiting", awaited).Msg("the cluster's directory is new to nodes this node has seen: no vault is created before they rejoin")
	}
	return d.writeHomes(ctx, true)
}

func (d *Directory) lastReassertTime() time.Time {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.lastReassert
}

func (d *Directory) readMembers(ctx context.Context, live []redis.Z) ([]Member, error) {
	ids := make([]string, 0, len(live))
	for _, z := range live {
		ids = append(ids, z.Member.(string))
	}
	if len(ids) == 0 {
		return nil, nil
	}
	infos, err := d.rdb.HMGet(ctx, keyNodes, ids...).Result()
	if err != nil {
		return nil, fmt.Errorf("read members: %w", err)
	}
	out := make([]Member, 0, len(ids))
	for i, id := range ids {
		s, _ := infos[i].(string)
		var info struct {
			Addr     string `json:"addr"`
			Draining bool   `json:"draining"`
			Faucet   uint64 `json:"faucet"`
		}
		if json.Unmarshal([]byte(s), &info) != nil || info.Addr == "" {
			continue
		}
		out = append(out, Member{ID: id, Addr: info.Addr, Draining: info.Draining, Faucet: info.Faucet})
	}
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

func (d *Directory) setReachable(ok bool, err error) {
	d.mu.Lock()
	was := d.reachable
	d.reachable = ok
	d.mu.Unlock()
	if ok {
		d.m.Reachable.Set(1)
	} else {
		d.m.Reachable.Set(0)
	}
	switch {
	case ok && !was:
		d.log.Info().Msg("redis answers: this node is in the cluster's directory")
	case !ok && was:
		d.log.Warn().Err(err).Msg("redis does not answer: serving this node's vaults; other nodes' vaults are unreachable until it does")
	}
}

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
	return !time.Now().Before(d.rebuilding) && len(d.awaiting) == 0
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

// registerScript writes a home this node holds: KEYS[1] the home, ARGV[1]
// this node, ARGV[2] the epoch of its copy. It takes the home when there
// is none, or when this node's copy has a higher epoch than the home's;
// it answers the home it leaves in place otherwise ("" when it wrote).
var registerScript = redis.NewScript(`
local cur = redis.call('GET', KEYS[1])
local mine = ARGV[1] .. ' ' .. ARGV[2]
if not cur then
  redis.call('SET', KEYS[1], mine)
  return ''
end
local sp = string.find(cur, ' ', 1, true)
local node, epoch = string.sub(cur, 1, sp - 1), tonumber(string.sub(cur, sp + 1))
if tonumber(ARGV[2]) > epoch or (node == ARGV[1] and tonumber(ARGV[2]) == epoch) then
  if cur ~= mine then redis.call('SET', KEYS[1], mine) end
  return ''
end
return cur
`)

// homesBatch is how many homes one pipelined round trip writes.
const homesBatch = 500

// writeHomes writes every home this node holds, homesBatch per round
// trip. A home the directory gives another node at an equal or higher
// epoch is logged and counted: that node's copy wins.
func (d *Directory) writeHomes(ctx context.Context, all bool) error {
	held := d.cfg.Held()
	ids := make([]string, 0, len(held))
	for id := range held {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	began := time.Now()
	for len(ids) > 0 {
		batch := ids[:min(homesBatch, len(ids))]
		ids = ids[len(batch):]
		run := func() ([]redis.Cmder, error) {
			return d.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
				for _, id := range batch {
					registerScript.EvalSha(ctx, p, []string{homeKey(id)}, d.cfg.Node, held[id])
				}
				return nil
			})
		}
		cmds, err := run()
		if isNoScript(err) {
			// A Redis that has not seen the script (new, or restarted):
			// load it, on every shard of a Redis Cluster, and run again.
			if err = d.loadScript(ctx); err == nil {
				cmds, err = run()
			}
		}
		if err != nil {
			return fmt.Errorf("write homes: %w", err)
		}
		for i, c := range cmds {
			if s, _ := c.(*redis.Cmd).Text(); s != "" {
				d.m.Conflicts.Inc()
				d.log.Error().Str("vault", batch[i]).Str("home", s).Msg("a vault held here has its home on another node at an equal or higher epoch; that node's copy is the vault")
			}
		}
		d.m.HomesWritten.Add(float64(len(batch)))
	}
	d.mu.Lock()
	d.lastReassert = time.Now()
	d.mu.Unlock()
	if all && len(held) > 0 {
		d.log.Info().Int("vaults", len(held)).Dur("took", time.Since(began)).Msg("this node's vault homes written to the directory")
	}
	return nil
}

func isNoScript(err error) bool { return err != nil && strings.HasPrefix(err.Error(), "NOSCRIPT") }

// loadScript loads registerScript into Redis, into every master of a
// Redis Cluster.
func (d *Directory) loadScript(ctx context.Context) error {
	if c, ok := d.rdb.(*redis.ClusterClient); ok {
		return c.ForEachMaster(ctx, func(ctx context.Context, shard *redis.Client) error {
			return registerScript.Load(ctx, shard).Err()
		})
	}
	return registerScript.Load(ctx, d.rdb).Err()
}

// Lookup returns a vault's home; false when it has none.
func (d *Directory) Lookup(ctx context.Context, vault common.Address) (Home, bool, error) {
	s, err := d.rdb.Get(ctx, homeKey(idOf(vault))).Result()
	if errors.Is(err, redis.Nil) {
		return Home{}, false, nil
	}
	if err != nil {
		return Home{}, false, fmt.Errorf("directory: %w", err)
	}
	h, err := parseHome(s)
	return h, err == nil, err
}

// Claim records this node as the home of a new vault, at epoch 1, before
// its file is created. An *ElsewhereError says another node has it (a
// race lost: the caller tells the client to retry, and the next sign-in
// is routed there); claiming a vault this node already holds succeeds.
func (d *Directory) Claim(ctx context.Context, vault common.Address) error {
	d.mu.Lock()
	awaited := d.awaitingLocked()
	d.mu.Unlock()
	if len(awaited) > 0 {
		return &AwaitingError{Nodes: awaited}
	}
	if !d.Settled() {
		return ErrRebuilding
	}
	d.mu.Lock()
	draining := d.draining
	d.mu.Unlock()
	if draining {
		return ErrDraining
	}
	// A Redis that lost the directory since the last renewal: homes of
	// other nodes may be missing, so none is created until they are back.
	g, err := d.rdb.Get(ctx, keyGen).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("directory: %w", err)
	}
	d.mu.Lock()
	lost := g != d.gen
	if lost && d.gen != "" {
		d.awaiting = map[string]bool{}
		for id := range d.book.Seen {
			if id != d.cfg.Node {
				d.awaiting[id] = true // until the renewal sees who is here
			}
		}
	}
	if lost {
		d.rebuilding = time.Now().Add(d.cfg.Lease)
	}
	d.mu.Unlock()
	if lost {
		select {
		case d.kick <- struct{}{}:
		default:
		}
		return ErrRebuilding
	}
	mine := Home{Node: d.cfg.Node, Epoch: 1}
	prev, err := d.rdb.SetArgs(ctx, homeKey(idOf(vault)), mine.String(), redis.SetArgs{Mode: "NX", Get: true}).Result()
	switch {
	case errors.Is(err, redis.Nil):
		return nil
	case err != nil:
		return fmt.Errorf("directory: %w", err)
	}
	h, err := parseHome(prev)
	if err != nil {
		return err
	}
	if h.Node == d.cfg.Node {
		return nil
	}
	return &ElsewhereError{Home: h}
}

// Place picks the node a new vault goes to: rendezvous hashing over the
// live members (each member scores hash(vault, member); the highest
// wins). Every node computes the same answer from the same members, and
// a member joining or leaving moves only the vaults it wins or held.
func (d *Directory) Place(vault common.Address) (Member, error) {
	var members []Member
	for _, m := range d.Members() {
		if !m.Draining {
			members = append(members, m)
		}
	}
	if len(members) == 0 {
		return Member{}, ErrNoMembers
	}
	return Rendezvous(idOf(vault), members), nil
}

// Rendezvous returns the member with the highest score for key.
func Rendezvous(key string, members []Member) Member {
	var best Member
	var top uint64
	for i, m := range members {
		if s := score(key, m.ID); i == 0 || s > top {
			best, top = m, s
		}
	}
	return best
}

// score is FNV-1a over key and id, finished with splitmix64's mixer so
// that near ids (node-1, node-2) score independently.
func score(key, id string) uint64 {
	h := fnv.New64a()
	h.Write([]byte(key))
	h.Write([]byte{0})
	h.Write([]byte(id))
	x := h.Sum64()
	x ^= x >> 30
	x *= 0xbf58476d1ce4e5b9
	x ^= x >> 27
	x *= 0x94d049bb133111eb
	x ^= x >> 31
	return x
}

func idOf(a common.Address) string { return strings.ToLower(a.Hex()) }

func randomID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
