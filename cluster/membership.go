package cluster

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// Membership: each node renews its lease in the directory, reads who else
// is live, and notices when Redis lost everything.

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
	out, err := d.checkProof(ctx)
	if err != nil {
		d.m.RenewFailed.Inc()
		d.setReachable(false, err)
		return err
	}
	d.setOut(out)
	if out != "" {
		// Not a member: no lease, no homes; an entry left from before goes.
		d.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
			p.ZRem(ctx, keyMembers, d.cfg.Node)
			p.HDel(ctx, keyNodes, d.cfg.Node)
			return nil
		})
		d.setReachable(true, nil)
		d.mu.Lock()
		d.members = nil
		d.mu.Unlock()
		d.m.Members.Set(0)
		return nil
	}
	d.mu.Lock()
	draining := d.draining
	d.mu.Unlock()
	info, _ := json.Marshal(map[string]any{"addr": d.cfg.Addr, "joined": now.UnixMilli(), "draining": draining, "faucet": d.cfg.Faucet,
		"kek": d.cfg.KEKID, "tag": memberTag(d.cfg.Secret, d.cfg.Node, d.cfg.Addr, d.cfg.KEKID)})
	var gen *redis.StringCmd
	var live *redis.ZSliceCmd
	var left *redis.StringSliceCmd
	_, err = d.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
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
		d.mu.Lock()
		awaiting, owed := len(d.awaiting) > 0, d.homesOwed
		d.mu.Unlock()
		if awaiting {
			d.markRebuild(ctx) // newcomers know nothing of the nodes awaited
		}
		if owed {
			return d.writeHomes(ctx, true) // the write-back after a loss did not finish
		}
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
	// No directory, and this node never saw one nor holds a vault: a
	// first start. Every other kind of absence is a loss.
	first := errors.Is(gerr, redis.Nil) && known == "" && len(d.cfg.Held()) == 0
	d.mu.Lock()
	d.gen = fresh
	d.book.Generation = fresh
	d.homesOwed = true // until every home is written back
	var awaited []string
	if lost || (gerr != nil && !first) {
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
	if lost || (gerr != nil && !first) {
		d.markRebuild(ctx)
	}
	if lost {
		d.m.Rebuilds.Inc()
		d.log.Warn().Str("generation", fresh).Strs("awaiting", awaited).Msg("the cluster's directory was lost (redis restarted empty?): writing this node's homes back; no vault is created for one lease, nor before the nodes awaited rejoin")
	} else if first {
		d.log.Info().Str("generation", fresh).Msg("no cluster directory in redis and none seen before: a new cluster; vaults are created at once")
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
			KEK      string `json:"kek"`
			Tag      string `json:"tag"`
		}
		if json.Unmarshal([]byte(s), &info) != nil || info.Addr == "" {
			continue
		}
		if why := d.verifyMember(id, info.Addr, info.KEK, info.Tag); why != "" {
			d.stranger(id, why)
			continue
		}
		out = append(out, Member{ID: id, Addr: info.Addr, Draining: info.Draining, Faucet: info.Faucet})
	}
	slices.SortFunc(out, func(a, b Member) int { return strings.Compare(a.ID, b.ID) })
	return out, nil
}

// stranger logs, once per id and reason, an entry in the members that is
// not this cluster's: placement and the links ignore it.
func (d *Directory) stranger(id, why string) {
	d.mu.Lock()
	seen := d.strangers[id] == why
	d.strangers[id] = why
	d.mu.Unlock()
	if !seen {
		d.log.Warn().Str("node", id).Str("why", why).Msg("a node in the directory is not a member of this cluster: ignored")
	}
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

// markRebuild tells every node, for one lease, that the directory is being
// rebuilt: a node that started it again without knowing of a loss (a
// newcomer) creates no vault meanwhile (Directory.Claim reads it). A node
// awaiting the nodes it saw before the loss marks it at every renewal.
// Its value names the nodes it awaits, so a newcomer's refusal says whom.
func (d *Directory) markRebuild(ctx context.Context) {
	d.mu.Lock()
	mark, _ := json.Marshal(rebuildMark{Node: d.cfg.Node, Awaiting: d.awaitingLocked()})
	d.mu.Unlock()
	if err := d.rdb.Set(ctx, keyRebuild, mark, d.cfg.Lease).Err(); err != nil {
		d.log.Warn().Err(err).Msg("could not mark the directory as being rebuilt")
	}
}

// rebuildMark is keyRebuild's value.
type rebuildMark struct {
	Node     string   `json:"node"`               // who found the directory lost
	Awaiting []string `json:"awaiting,omitempty"` // the nodes it waits for
}
