package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/ethclient"
	"zombiezen.com/go/sqlite"
	"zombiezen.com/go/sqlite/sqlitex"

	"github.com/spells-dev/spells/delegation"
	"github.com/spells-dev/spells/protocol"
)

// execute: many vaults, each with a swap trigger under its own grant,
// fire on one crossing of the bench signal; the bench times each intent
// from the crossing to its confirmation, and reports the node's CPU per
// executed intent against a floor measured here in the same run (signing
// one transaction, plus one durable SQLite transaction as a vault writes
// it). The node must run the dev chain (the default) with its demo feed
// off; its faucet funds the vaults.

type executeParams struct {
	Vaults  int
	Amount  string
	Timeout time.Duration
	// Profile, when positive and the node's -debug-listen is known, is
	// how long a CPU profile of the node runs from the crossing: it
	// splits the node's CPU between its embedded dev chain and the rest.
	Profile time.Duration
}

const execSignal = "BENCH/EXEC"

func getChainInfo(ctx context.Context, n *node) (protocol.ChainInfo, error) {
	var info protocol.ChainInfo
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, n.base+"/v1/chain", nil)
	resp, err := n.http.Do(req)
	if err != nil {
		return info, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return info, fmt.Errorf("GET /v1/chain: %s (the node needs a chain: run it with the dev chain, the default)", resp.Status)
	}
	return info, json.NewDecoder(resp.Body).Decode(&info)
}

func execute(ctx context.Context, n *node, p executeParams) (*Report, error) {
	r := newReport("execute", map[string]any{"vaults": p.Vaults, "amount": p.Amount})
	info, err := getChainInfo(ctx, n)
	if err != nil {
		return nil, err
	}
	if !info.Dev || info.RPC == "" || info.Pool == nil {
		return nil, errors.New("execute needs the node's dev chain with its JSON-RPC on (-dev-chain-rpc): its faucet funds the vaults")
	}
	rc, err := dialChain(ctx, info)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	if err := n.publish(ctx, tick{Name: execSignal, Value: 2000}); err != nil {
		return nil, err
	}
	start := time.Now()
	users, err := newUsers(ctx, n, p.Vaults, p.Vaults, func(ctx context.Context, u *user) error {
		return setUpExecution(ctx, rc, info, u, p.Amount)
	})
	defer closeAll(users)
	if err != nil {
		return nil, err
	}
	r.set("setup_s", time.Since(start).Seconds())
	floor, err := measureFloor(info.ChainID)
	if err != nil {
		return nil, fmt.Errorf("floor: %w", err)
	}
	r.set("floor_cpu_ms", floor*1000)
	before, err := n.usage(ctx)
	if err != nil {
		return nil, err
	}
	t0 := time.Now()
	type split struct {
		share float64
		err   error
	}
	var shared chan split
	if p.Profile > 0 && n.debug != "" {
		shared = make(chan split, 1)
		go func() {
			share, err := chainShare(ctx, n, p.Profile)
			shared <- split{share, err}
		}()
	}
	if err := n.publish(ctx, tick{Name: execSignal, Value: 500}); err != nil {
		return nil, err
	}
	var mu sync.Mutex
	var lat []time.Duration
	ended := map[string]int{}
	var wg sync.WaitGroup
	wctx, cancel := context.WithTimeout(ctx, p.Timeout)
	defer cancel()
	for _, u := range users {
		wg.Add(1)
		go func(u *user) {
			defer wg.Done()
			status := waitEnded(wctx, u)
			mu.Lock()
			defer mu.Unlock()
			ended[status]++
			if status == protocol.IntentConfirmed {
				lat = append(lat, time.Since(t0))
			}
		}(u)
	}
	wg.Wait()
	after, _ := n.usage(ctx)
	confirmed := len(lat)
	r.set("confirmed", float64(confirmed))
	for s, c := range ended {
		if s != protocol.IntentConfirmed {
			r.set("ended_"+s, float64(c))
		}
	}
	if confirmed == 0 {
		return r, fmt.Errorf("no intent was confirmed within %s (%v)", p.Timeout, ended)
	}
	r.latencies("signal_to_confirmed", lat)
	last := lat[0]
	for _, d := range lat {
		last = max(last, d)
	}
	r.set("confirmed_per_s", float64(confirmed)/last.Seconds())
	cpu := (after.cpu - before.cpu) / float64(confirmed)
	r.set("node_cpu_ms_per_intent", cpu*1000)
	r.set("cpu_per_intent_over_floor", cpu/floor)
	r.addUsage(before, after)
	r.note("the node's CPU includes the dev chain in its process (simulating, mining and indexing each transaction) and its watcher; blocks every -dev-chain-block-interval and -confirmations bound the latency")
	if shared != nil {
		sp := <-shared
		if sp.err != nil {
			return nil, sp.err
		}
		own := cpu * (1 - sp.share)
		r.set("chain_share_of_node_cpu", sp.share)
		r.set("node_cpu_ms_per_intent_without_chain", own*1000)
		r.set("cpu_without_chain_over_floor", own/floor)
		r.note("the dev chain's share comes from a %s CPU profile of the node from the crossing: samples through go-ethereum's EVM, state, mining, consensus and JSON-RPC server are the chain's", p.Profile)
	}
	return r, nil
}

// dialChain connects to the node's dev chain over its JSON-RPC, as a
// wallet would, and checks that it is the chain the node names.
func dialChain(ctx context.Context, info protocol.ChainInfo) (*ethclient.Client, error) {
	dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	rc, err := ethclient.DialContext(dctx, info.RPC)
	if err != nil {
		return nil, fmt.Errorf("the dev chain at %s: %w", info.RPC, err)
	}
	id, err := rc.ChainID(dctx)
	if err != nil || !id.IsUint64() || id.Uint64() != info.ChainID {
		rc.Close()
		return nil, fmt.Errorf("the dev chain at %s: chain id %v (%v), want %d", info.RPC, id, err, info.ChainID)
	}
	return rc, nil
}

// setUpExecution waits for the faucet to fund the vault's owner and
// session key, makes the owner a smart account, and creates the swap
// trigger with its own grant (the swap through the router pinned, to the
// owner, at a minimum output).
func setUpExecution(ctx context.Context, rc *ethclient.Client, info protocol.ChainInfo, u *user, amount string) error {
	if u.state == nil || u.state.Account == nil {
		return errors.New("the snapshot shows no session key")
	}
	key := common.HexToAddress(u.state.Account.SessionKey)
	owner := u.w.Address()
	deadline := time.Now().Add(60 * time.Second)
	for {
		ob, err1 := rc.BalanceAt(ctx, owner, nil)
		kb, err2 := rc.BalanceAt(ctx, key, nil)
		if err1 == nil && err2 == nil && ob.Sign() > 0 && kb.Sign() > 0 {
			break
		}
		if time.Now().After(deadline) {
			return errors.New("the faucet did not fund the vault within 60 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := delegation.Upgrade(ctx, rc, u.w.Key, common.HexToAddress(info.DeleGator), nil); err != nil {
		return err
	}
	thr := 1000.0
	n, err := strconv.ParseFloat(amount, 64)
	if err != nil {
		return fmt.Errorf("amount %q: %w", amount, err)
	}
	// The least it takes: half of what the amount buys at 2,500 dUSD a
	// dETH, the dev pool's starting price.
	spec := protocol.TriggerSpec{Name: "bench swap", Condition: protocol.Condition{Signal: execSignal, Op: protocol.OpBelow, Threshold: &thr},
		Action:   protocol.Action{Kind: "swap", Params: []byte(fmt.Sprintf(`{"sell":"dUSD","buy":"dETH","amount":%q,"minOut":"%.9f"}`, amount, n/5000))},
		MaxFires: 10, ExpiresAt: time.Now().Add(24 * time.Hour).UnixMilli()}
	ack, err := u.c.Command(ctx, u.s, protocol.OpTriggerGrant, spec)
	if err != nil {
		return fmt.Errorf("trigger.grant: %w", err)
	}
	var g protocol.TriggerGrant
	if err := json.Unmarshal(ack.Result, &g); err != nil {
		return fmt.Errorf("trigger.grant: %w", err)
	}
	dom := delegation.Domain{ChainID: info.ChainID, Manager: common.HexToAddress(info.DelegationManager)}
	if spec.Delegation, err = delegation.SignTriggerGrant(dom, u.w.Key, g); err != nil {
		return err
	}
	if _, err := u.c.Command(ctx, u.s, protocol.OpTriggerCreate, spec); err != nil {
		return fmt.Errorf("trigger: %w", err)
	}
	return nil
}

// waitEnded reads u's frames until its intent ends and returns the status.
func waitEnded(ctx context.Context, u *user) string {
	for {
		f, err := u.c.Next(ctx)
		if err != nil {
			return "timed_out"
		}
		if f.Type != protocol.TypeDiff {
			continue
		}
		for _, c := range f.Changes {
			if c.Kind != protocol.KindIntent {
				continue
			}
			var in protocol.Intent
			if json.Unmarshal(c.Data, &in) != nil {
				continue
			}
			switch in.Status {
			case protocol.IntentConfirmed, protocol.IntentFinal: // final: confirmed and more
				return protocol.IntentConfirmed
			case protocol.IntentReverted, protocol.IntentRefused, protocol.IntentFailed:
				return in.Status
			}
		}
	}
}

// measureFloor times, in this process, what executing an intent cannot
// cost less than: signing one transaction, and one durable SQLite
// transaction (WAL, synchronous=FULL, as a vault writes). It returns CPU
// seconds per operation.
func measureFloor(chainID uint64) (float64, error) {
	key, _ := crypto.GenerateKey()
	signer := types.LatestSignerForChainID(new(big.Int).SetUint64(chainID))
	to := common.HexToAddress("0x1")
	return durableFloor(200, func(i int) ([]byte, error) {
		tx, err := types.SignNewTx(key, signer, &types.DynamicFeeTx{ChainID: new(big.Int).SetUint64(chainID), Nonce: uint64(i),
			GasTipCap: big.NewInt(1), GasFeeCap: big.NewInt(2), Gas: 300_000, To: &to, Data: make([]byte, 1500)})
		if err != nil {
			return nil, err
		}
		return tx.MarshalBinary()
	})
}

// durableFloor runs n times, in this process, work and then one durable
// SQLite transaction (WAL, synchronous=FULL, as a vault writes) storing
// what work returned, three times over, and returns the CPU seconds of one
// in the cheapest of the three (a floor: what the machine's noise did not
// add to).
func durableFloor(n int, work func(i int) ([]byte, error)) (float64, error) {
	dir, err := os.MkdirTemp("", "spells-floor")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	conn, err := sqlite.OpenConn(filepath.Join(dir, "floor.db"), sqlite.OpenReadWrite|sqlite.OpenCreate)
	if err != nil {
		return 0, err
	}
	defer conn.Close()
	for _, q := range []string{"PRAGMA journal_mode=WAL;", "PRAGMA synchronous=FULL;", "CREATE TABLE t (id INTEGER PRIMARY KEY, raw BLOB);"} {
		if err := sqlitex.ExecuteTransient(conn, q, nil); err != nil {
			return 0, err
		}
	}
	best := math.Inf(1)
	for round := 0; round < 3; round++ {
		c0 := cpuNow()
		for i := 0; i < n; i++ {
			raw, err := work(round*n + i)
			if err != nil {
				return 0, err
			}
			if err := sqlitex.Execute(conn, "BEGIN IMMEDIATE;", nil); err != nil {
				return 0, err
			}
			if err := sqlitex.Execute(conn, "INSERT INTO t (raw) VALUES (?);", &sqlitex.ExecOptions{Args: []any{raw}}); err != nil {
				return 0, err
			}
			if err := sqlitex.Execute(conn, "COMMIT;", nil); err != nil {
				return 0, err
			}
		}
		best = min(best, (cpuNow()-c0)/float64(n))
	}
	return best, nil
}

func cpuNow() float64 {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return float64(ru.Utime.Nano()+ru.Stime.Nano()) / 1e9
}
