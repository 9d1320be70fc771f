package main

import (
	"context"
	"encoding/hex"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ethereum/go-ethereum/crypto"

	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/protocol/client"
)

type commandsParams struct {
	Clients  int
	Single   bool // every client on one vault (own sessions) instead of one vault each
	Duration time.Duration
	Save     string // write the vaults' keys and checked versions here, for verify after a restart
}

// commands: Clients connections each send signed trigger.update commands,
// the next as soon as the last is acknowledged, for Duration. Every
// acknowledged update is one durable transaction and one version, so the
// check afterwards is exact: each vault's version must have grown by the
// number of commands acknowledged on it.
func commands(ctx context.Context, n *node, p commandsParams) (*Report, error) {
	r := newReport("commands", map[string]any{"clients": p.Clients, "single_vault": p.Single, "duration": p.Duration.String()})
	vaults := p.Clients
	if p.Single {
		vaults = 1
	}
	owners, err := newUsers(ctx, n, vaults, 0, func(ctx context.Context, u *user) error {
		_, err := u.c.Command(ctx, u.s, protocol.OpTriggerCreate, below("BENCH/CMD", 1))
		return err
	})
	if err != nil {
		return nil, err
	}
	start := make([]uint64, vaults)
	for i, o := range owners {
		if start[i], err = version(ctx, n, o.w); err != nil {
			return nil, err
		}
	}
	users := make([]*user, p.Clients)
	if err := forEach(ctx, p.Clients, 32, func(ctx context.Context, i int) error {
		var err error
		users[i], err = signIn(ctx, n, owners[i%vaults].w)
		return err
	}); err != nil {
		closeAll(users)
		return nil, err
	}
	defer closeAll(users)
	triggerID := make([]string, vaults)
	for i := range owners {
		ack, err := users[i].c.Command(ctx, users[i].s, protocol.OpTriggerList, struct{}{})
		if err != nil {
			return nil, err
		}
		var res struct{ Triggers []protocol.Trigger }
		if err := jsonUnmarshal(ack.Result, &res); err != nil || len(res.Triggers) == 0 {
			return nil, fmt.Errorf("list triggers: %v", err)
		}
		triggerID[i] = res.Triggers[0].ID
	}
	before, err := n.usage(ctx)
	if err != nil {
		return nil, err
	}
	acked := make([]atomic.Int64, vaults)
	var mu sync.Mutex
	var lat []time.Duration
	var refused atomic.Int64
	deadline := time.Now().Add(p.Duration)
	var wg sync.WaitGroup
	for i, u := range users {
		wg.Add(1)
		go func() {
			defer wg.Done()
			v := i % vaults
			var mine []time.Duration
			for k := 0; time.Now().Before(deadline); k++ {
				spec := below("BENCH/CMD", float64(1+k))
				t0 := time.Now()
				_, err := u.c.Command(ctx, u.s, protocol.OpTriggerUpdate, protocol.UpdateArgs{ID: triggerID[v], Spec: spec})
				if err != nil {
					refused.Add(1)
					continue
				}
				mine = append(mine, time.Since(t0))
				acked[v].Add(1)
			}
			mu.Lock()
			lat = append(lat, mine...)
			mu.Unlock()
		}()
	}
	wg.Wait()
	took := p.Duration
	after, _ := n.usage(ctx)
	total := int64(0)
	mismatches := 0
	for i, o := range owners {
		total += acked[i].Load()
		v, err := version(ctx, n, o.w)
		if err != nil {
			return nil, err
		}
		if v-start[i] != uint64(acked[i].Load()) {
			mismatches++
			r.note("vault %s: version grew by %d, %d commands acknowledged", o.s.Vault, v-start[i], acked[i].Load())
		}
	}
	if p.Save != "" {
		var saved savedVaults
		for i, o := range owners {
			saved.Vaults = append(saved.Vaults, savedVault{Key: hex.EncodeToString(crypto.FromECDSA(o.w.Key)),
				Address: o.w.Address().Hex(), Version: start[i] + uint64(acked[i].Load()), Acked: acked[i].Load()})
		}
		if err := saved.write(p.Save); err != nil {
			return nil, err
		}
		r.note("vault keys and versions saved to %s: restart the node, then run `verify -from %s`", p.Save, p.Save)
	}
	r.set("acked_commands", float64(total))
	r.set("acked_per_s", float64(total)/took.Seconds())
	r.set("refused", float64(refused.Load()))
	r.set("vaults_checked", float64(vaults))
	r.set("vaults_mismatched", float64(mismatches))
	r.latencies("ack", lat)
	r.addUsage(before, after)
	return r, nil
}

// version signs w in on a fresh connection and returns its vault's version.
func version(ctx context.Context, n *node, w *client.Wallet) (uint64, error) {
	c, err := client.Dial(ctx, n.wsURL(), nil)
	if err != nil {
		return 0, err
	}
	defer c.CloseNow()
	if _, err := c.SignIn(ctx, w, client.SignInParams{}, nil); err != nil {
		return 0, err
	}
	for {
		f, err := c.Next(ctx)
		if err != nil {
			return 0, err
		}
		if f.Type == protocol.TypeSnapshot {
			return f.State.Version, nil
		}
	}
}
