package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/redis/go-redis/v9"

	"github.com/spells-dev/spells/internal/rendezvous"
)

// Vault homes in the directory: written back in batches, looked up,
// claimed for a new vault, placed by rendezvous hashing, and switched by a
// move.

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
		// Each batch has its own time, so a node with many homes writes
		// them all back even when one renewal's time would not do.
		bctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), d.cfg.Lease/3)
		run := func() ([]redis.Cmder, error) {
			return d.rdb.Pipelined(bctx, func(p redis.Pipeliner) error {
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
			if err = d.loadScript(bctx); err == nil {
				cmds, err = run()
			}
		}
		cancel()
		if err != nil {
			return fmt.Errorf("write homes: %w", err)
		}
		for i, c := range cmds {
			s, _ := c.(*redis.Cmd).Text()
			if s == "" {
				continue
			}
			d.m.Conflicts.Inc()
			d.log.Error().Str("vault", batch[i]).Str("home", s).Msg("a vault held here has its home on another node at an equal or higher epoch; that node's copy is the vault")
			if h, err := parseHome(s); err == nil && h.Node != d.cfg.Node && h.Epoch > held[batch[i]] && d.cfg.Superseded != nil {
				d.cfg.Superseded(common.HexToAddress(batch[i]), h)
			}
		}
		d.m.HomesWritten.Add(float64(len(batch)))
	}
	d.mu.Lock()
	d.lastReassert = time.Now()
	if all {
		d.homesOwed = false
	}
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
	awaited, out := d.awaitingLocked(), d.out
	d.mu.Unlock()
	if out != "" {
		return fmt.Errorf("%w: %s", ErrOut, out)
	}
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
	// Another node that found it lost says so for a lease.
	got, err := d.rdb.MGet(ctx, keyGen, keyRebuild).Result()
	if err != nil {
		return fmt.Errorf("directory: %w", err)
	}
	g, _ := got[0].(string)
	if raw, _ := got[1].(string); raw != "" {
		// The nodes another node awaits, less those this one knows
		// left or were forgotten; with none named, a lease's wait.
		var mark rebuildMark
		_ = json.Unmarshal([]byte(raw), &mark)
		d.mu.Lock()
		var nodes []string
		for _, id := range mark.Awaiting {
			if _, gone := d.book.Gone[id]; !gone && id != d.cfg.Node {
				nodes = append(nodes, id)
			}
		}
		wait := len(nodes) > 0 || len(mark.Awaiting) == 0
		if wait {
			d.rebuilding = time.Now().Add(d.cfg.Lease)
		}
		d.mu.Unlock()
		if len(nodes) > 0 {
			return &AwaitingError{Nodes: nodes}
		}
		if wait {
			return ErrRebuilding
		}
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
		if d.gen != "" {
			d.markRebuild(ctx)
		}
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

// Rendezvous returns the member key goes to (internal/rendezvous): the one
// with the highest score for it.
func Rendezvous(key string, members []Member) Member {
	ids := make([]string, len(members))
	for i, m := range members {
		ids[i] = m.ID
	}
	if i := rendezvous.Pick(key, ids); i >= 0 {
		return members[i]
	}
	return Member{}
}

// errMoveRefused: the directory's home is not what the move expected, or
// the switch came past its deadline; nothing was switched.
var errMoveRefused = errors.New("the directory refused the switch")

// moveScript switches a home: KEYS[1] the home, ARGV[1] the home
// expected ("" when Redis lost it), ARGV[2] the new home, ARGV[3] the
// deadline (unix ms, Redis's clock).
var moveScript = redis.NewScript(`
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
if now > tonumber(ARGV[3]) then return 'late' end
local cur = redis.call('GET', KEYS[1])
if cur and cur ~= ARGV[1] then return cur end
redis.call('SET', KEYS[1], ARGV[2])
return ''
`)

// Move switches a vault's home from one node and epoch to another, unless
// its home is not from (a lost home counts as from) or deadline passed.
func (d *Directory) Move(ctx context.Context, vault common.Address, from, to Home, deadline time.Time) error {
	res, err := moveScript.Run(ctx, d.rdb, []string{homeKey(idOf(vault))}, from.String(), to.String(), deadline.UnixMilli()).Text()
	if err != nil {
		return fmt.Errorf("directory: %w", err)
	}
	switch res {
	case "":
		return nil
	case "late":
		return fmt.Errorf("%w: past its deadline", errMoveRefused)
	}
	return fmt.Errorf("%w: the home is %q, not %q", errMoveRefused, res, from.String())
}

// SetDraining marks this node as draining in the directory: placement
// leaves it out, and it creates no vault.
func (d *Directory) SetDraining(ctx context.Context, on bool) {
	d.mu.Lock()
	d.draining = on
	d.mu.Unlock()
	if err := d.renew(ctx); err != nil {
		d.log.Warn().Err(err).Msg("could not tell the directory this node drains")
	}
}

// HomesOf lists the vaults whose home is node, with their homes, reading
// every home in the directory (on every shard of a Redis Cluster): for
// restoring the vaults of a node gone for good.
func (d *Directory) HomesOf(ctx context.Context, node string) (map[common.Address]Home, error) {
	out := map[common.Address]Home{}
	var mu sync.Mutex // ForEachMaster scans the shards at once
	scan := func(ctx context.Context, c redis.Cmdable) error {
		it := c.Scan(ctx, 0, "spells:vault:{*}", 1000).Iterator()
		for it.Next(ctx) {
			key := it.Val()
			s, err := c.Get(ctx, key).Result()
			if errors.Is(err, redis.Nil) {
				continue
			}
			if err != nil {
				return err
			}
			h, err := parseHome(s)
			if err != nil || h.Node != node {
				continue
			}
			id := strings.TrimSuffix(strings.TrimPrefix(key, "spells:vault:{"), "}")
			if common.IsHexAddress(id) {
				mu.Lock()
				out[common.HexToAddress(id)] = h
				mu.Unlock()
			}
		}
		return it.Err()
	}
	var err error
	if c, ok := d.rdb.(*redis.ClusterClient); ok {
		err = c.ForEachMaster(ctx, func(ctx context.Context, shard *redis.Client) error { return scan(ctx, shard) })
	} else {
		err = scan(ctx, d.rdb)
	}
	if err != nil {
		return nil, fmt.Errorf("directory: list the homes of %s: %w", node, err)
	}
	return out, nil
}

// Superseded returns, of the vaults held here (with their epochs), those
// whose home the directory gives another node at a higher epoch: copies
// restored elsewhere while this node was gone. Read before the vaults run,
// so a stale copy never does.
func (d *Directory) Superseded(ctx context.Context, held map[string]uint64) (map[common.Address]Home, error) {
	ids := make([]string, 0, len(held))
	for id := range held {
		ids = append(ids, id)
	}
	out := map[common.Address]Home{}
	for len(ids) > 0 {
		batch := ids[:min(homesBatch, len(ids))]
		ids = ids[len(batch):]
		cmds, err := d.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
			for _, id := range batch {
				p.Get(ctx, homeKey(id))
			}
			return nil
		})
		if err != nil && !errors.Is(err, redis.Nil) {
			return nil, fmt.Errorf("directory: read the homes held here: %w", err)
		}
		for i, c := range cmds {
			s, err := c.(*redis.StringCmd).Result()
			if err != nil {
				continue
			}
			if h, err := parseHome(s); err == nil && h.Node != d.cfg.Node && h.Epoch > held[batch[i]] {
				out[common.HexToAddress(batch[i])] = h
			}
		}
	}
	return out, nil
}
