package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ethereum/go-ethereum/crypto"

	"github.com/spells-dev/spells/protocol"
)

type commandsParams struct {
	Clients  int
	Single   bool // every client on one vault (own sessions) instead of one vault each
	Duration time.Duration
	Window   int    // commands each client keeps in flight (1: wait for each ack)
	Save     string // write the vaults' keys and checked versions here, for verify after a restart
}

// commands: Clients connections each send signed trigger.update commands,
// the next as soon as the last is acknowledged, for Duration. Every
// acknowledged update is one durable transaction and one version, so the
// check afterwards is exact: each vault's version must have grown by the
// number of commands acknowledged on it.
func commands(ctx context.Context, n *node, p commandsParams) (*Report, error) {
	if p.Window < 1 {
		p.Window = 1
	}
	r := newReport("commands", map[string]any{"clients": p.Clients, "single_vault": p.Single, "duration": p.Duration.String(), "window": p.Window})
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
		if err := json.Unmarshal(ack.Result, &res); err != nil || len(res.Triggers) == 0 {
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
			mine, ok, bad := pipeline(ctx, u, triggerID[v], p.Window, deadline)
			acked[v].Add(ok)
			refused.Add(bad)
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
	if total > 0 {
		cpu := (after.cpu - before.cpu) / float64(total)
		r.set("node_cpu_ms_per_command", cpu*1000)
		floor, err := commandFloor()
		if err != nil {
			return nil, fmt.Errorf("floor: %w", err)
		}
		r.set("floor_cpu_ms", floor*1000)
		r.set("cpu_per_command_over_floor", cpu/floor)
		r.note("the floor of one command, measured in this run by the bench: verifying its P-256 signature and one durable SQLite transaction storing it")
	}
	return r, nil
}

// commandFloor times, in this process, what one command cannot cost less
// than done alone: the P-256 verification of its signature
// (protocol.VerifyBody, as the vault checks it) and one durable SQLite
// transaction. It returns CPU seconds per command.
func commandFloor() (float64, error) {
	d, err := protocol.NewDelegate()
	if err != nil {
		return 0, err
	}
	body := `{"op":"trigger.update","id":"c1","vault":"0x0000000000000000000000000000000000000001","seq":1,"args":{"id":"t1","enabled":true}}`
	sig, err := d.Sign(body)
	if err != nil {
		return 0, err
	}
	return durableFloor(200, func(int) ([]byte, error) {
		if err := protocol.VerifyBody(d.Public(), body, sig); err != nil {
			return nil, err
		}
		return []byte(body), nil
	})
}

// pipeline sends signed trigger.update commands on u's connection until
// deadline, keeping up to window of them unanswered, and returns the ack
// latencies and the counts of acked and refused commands.
func pipeline(ctx context.Context, u *user, triggerID string, window int, deadline time.Time) (lat []time.Duration, acked, refused int64) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	slots := make(chan struct{}, window)
	var mu sync.Mutex
	sent := map[uint64]time.Time{}
	received := make(chan struct{})
	go func() {
		defer close(received)
		for {
			f, err := u.c.Next(ctx)
			if err != nil {
				return
			}
			if f.Type != protocol.TypeAck && f.Type != protocol.TypeError {
				continue
			}
			mu.Lock()
			t0, ok := sent[f.Seq]
			delete(sent, f.Seq)
			mu.Unlock()
			if !ok {
				continue
			}
			if f.Type == protocol.TypeAck {
				lat = append(lat, time.Since(t0))
				acked++
			} else {
				refused++
			}
			<-slots
		}
	}()
send:
	for k := 0; time.Now().Before(deadline) && ctx.Err() == nil; k++ {
		select {
		case slots <- struct{}{}:
		case <-received: // the connection ended (a slow consumer is closed, say)
			break send
		}
		f, seq, err := u.s.SignCommand(protocol.OpTriggerUpdate, protocol.UpdateArgs{ID: triggerID, Spec: below("BENCH/CMD", float64(1+k))})
		if err != nil {
			break
		}
		mu.Lock()
		sent[seq] = time.Now()
		mu.Unlock()
		if err := u.c.Send(ctx, f); err != nil {
			break
		}
	}
	// Wait for every answer (all slots back), then stop the reader.
	for i := 0; i < window; i++ {
		select {
		case slots <- struct{}{}:
		case <-received:
			i = window
		}
	}
	cancel()
	<-received
	mu.Lock()
	refused += int64(len(sent)) // never answered
	mu.Unlock()
	return lat, acked, refused
}
