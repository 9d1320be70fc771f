package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/ethereum/go-ethereum"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/ethclient"

	"github.com/spells-dev/spells/contracts"
	"github.com/spells-dev/spells/protocol"
)

// events: many vaults, each with two notify triggers on the same vault: one
// on a crossing of the bench signal, one on the dev chain's dUSD Transfer
// event to a sink address. In rounds, the bench crosses the signal, then
// sends one transfer to the sink; it times each vault's firing from the
// publish (the signal) and from the moment the transfer's receipt is seen
// (the event), and the node's CPU per firing of each. The signal's path is
// the event's floor, measured in the same run on the same vaults. The node
// must run the dev chain with its JSON-RPC on and -alerts-allow-private
// (the notify triggers' webhook is the bench's own, on loopback).

type eventsParams struct {
	Vaults  int
	Rounds  int
	Timeout time.Duration
}

const eventsSignal = "BENCH/EVENTS"

// eventsSink receives the bench's transfers.
var eventsSink = common.HexToAddress("0x000000000000000000000000000000000000bE7c")

// fired is one vault's new intent (a firing) or re-armed threshold, as
// its dashboard sees it.
type fired struct {
	trigger string
	armed   bool // an evaluation "updated" (the threshold re-armed), not a firing
	at      time.Time
}

func events(ctx context.Context, n *node, p eventsParams) (*Report, error) {
	r := newReport("events", map[string]any{"vaults": p.Vaults, "rounds": p.Rounds})
	info, err := getChainInfo(ctx, n)
	if err != nil {
		return nil, err
	}
	if !info.Dev || info.RPC == "" {
		return nil, errors.New("events needs the node's dev chain with its JSON-RPC on (-dev-chain-rpc): the bench sends its transfers there")
	}
	var dUSD common.Address
	for _, t := range info.Tokens {
		if t.Symbol == "dUSD" {
			dUSD = common.HexToAddress(t.Address)
		}
	}
	if dUSD == (common.Address{}) {
		return nil, errors.New("the dev chain names no dUSD token")
	}
	rc, err := dialChain(ctx, info)
	if err != nil {
		return nil, err
	}
	defer rc.Close()
	hook, stopHook, err := okReceiver()
	if err != nil {
		return nil, err
	}
	defer stopHook()
	if err := n.publish(ctx, tick{Name: eventsSignal, Value: 2000}); err != nil {
		return nil, err
	}
	var mu sync.Mutex
	ids := map[*user][2]string{} // the signal's trigger, the event's
	start := time.Now()
	users, err := newUsers(ctx, n, p.Vaults, p.Vaults, func(ctx context.Context, u *user) error {
		sig, ev, err := setUpEvents(ctx, u, hook, dUSD)
		mu.Lock()
		ids[u] = [2]string{sig, ev}
		mu.Unlock()
		return err
	})
	defer closeAll(users)
	if err != nil {
		return nil, err
	}
	r.set("setup_s", time.Since(start).Seconds())
	payer := users[0]
	if err := waitFunded(ctx, rc, dUSD, payer.w.Address()); err != nil {
		return nil, err
	}

	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	seen := make([]chan fired, len(users))
	for i, u := range users {
		seen[i] = make(chan fired, 64)
		go watchFirings(wctx, u, seen[i])
	}
	// await waits until every vault reports, through its dashboard, a
	// firing of its trigger which (0: the signal's, 1: the event's), or a
	// re-arming, and returns each one's time from t0.
	await := func(which int, armed bool, t0 time.Time) ([]time.Duration, error) {
		out := make([]time.Duration, 0, len(users))
		deadline := time.After(p.Timeout)
		for i, u := range users {
			want := ids[u][which]
			for {
				select {
				case f := <-seen[i]:
					if f.trigger == want && f.armed == armed {
						out = append(out, f.at.Sub(t0))
					} else {
						continue
					}
				case <-deadline:
					return nil, fmt.Errorf("%d of %d vaults reported within %s", len(out), len(users), p.Timeout)
				}
				break
			}
		}
		return out, nil
	}
	var sigLat, evLat []time.Duration
	var sigCPU, evCPU float64
	for round := 0; round < p.Rounds; round++ {
		if round > 0 {
			// Re-arm the threshold, and wait for every vault to have
			// seen it, so the crossing's CPU is the crossing's alone.
			t0 := time.Now()
			if err := n.publish(ctx, tick{Name: eventsSignal, Value: 2000, At: t0.UnixMilli()}); err != nil {
				return nil, err
			}
			if _, err := await(0, true, t0); err != nil {
				return nil, fmt.Errorf("round %d, re-arming: %w", round, err)
			}
		}
		before, err := n.usage(ctx)
		if err != nil {
			return nil, err
		}
		t0 := time.Now()
		if err := n.publish(ctx, tick{Name: eventsSignal, Value: 500, At: t0.UnixMilli()}); err != nil {
			return nil, err
		}
		lat, err := await(0, false, t0)
		if err != nil {
			return nil, fmt.Errorf("round %d, the signal: %w", round, err)
		}
		after, err := n.usage(ctx)
		if err != nil {
			return nil, err
		}
		sigLat, sigCPU = append(sigLat, lat...), sigCPU+after.cpu-before.cpu

		before = after
		mined, err := transfer(ctx, rc, info.ChainID, payer, dUSD)
		if err != nil {
			return nil, fmt.Errorf("round %d: %w", round, err)
		}
		lat, err = await(1, false, mined)
		if err != nil {
			return nil, fmt.Errorf("round %d, the event: %w", round, err)
		}
		after, err = n.usage(ctx)
		if err != nil {
			return nil, err
		}
		evLat, evCPU = append(evLat, lat...), evCPU+after.cpu-before.cpu
	}
	firings := float64(p.Rounds * len(users))
	r.latencies("signal_to_fired", sigLat)
	r.latencies("mined_to_fired", evLat)
	r.set("node_cpu_ms_per_signal_firing", sigCPU/firings*1000)
	r.set("node_cpu_ms_per_event_firing", evCPU/firings*1000)
	r.set("event_cpu_over_signal_cpu", evCPU/sigCPU)
	r.note("an event firing's time runs from the bench seeing the transfer's receipt; the node reads a block's logs once it has -confirmations blocks, at its -chain-poll: those bound it from below")
	r.note("the event's CPU includes the dev chain in the node's process mining and indexing the transfer, and the node's eth_getLogs")
	return r, nil
}

// okReceiver runs a webhook receiver on loopback that answers every
// delivery 200, and returns its URL and how to stop it.
func okReceiver() (string, func(), error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", nil, err
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusOK) }), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(l)
	return "http://" + l.Addr().String() + "/hook", func() { srv.Close() }, nil
}

// setUpEvents points the vault's alerts at hook and creates its two
// notify triggers, returning their ids.
func setUpEvents(ctx context.Context, u *user, hook string, dUSD common.Address) (sig, ev string, err error) {
	if _, err := u.c.Command(ctx, u.s, protocol.OpAlertsSet, protocol.AlertsArgs{Webhook: &protocol.WebhookChannel{URL: hook}}); err != nil {
		if strings.Contains(err.Error(), "private") {
			return "", "", fmt.Errorf("alerts.set: %w (run the node with -alerts-allow-private)", err)
		}
		return "", "", fmt.Errorf("alerts.set: %w", err)
	}
	notify := protocol.Action{Kind: "notify"}
	thr := 1000.0
	create := func(spec protocol.TriggerSpec) (string, error) {
		ack, err := u.c.Command(ctx, u.s, protocol.OpTriggerCreate, spec)
		if err != nil {
			return "", fmt.Errorf("trigger %q: %w", spec.Name, err)
		}
		var res struct{ ID string }
		return res.ID, json.Unmarshal(ack.Result, &res)
	}
	if sig, err = create(protocol.TriggerSpec{Name: "bench signal", Action: notify, Condition: protocol.Condition{Signal: eventsSignal, Op: protocol.OpBelow, Threshold: &thr}}); err != nil {
		return "", "", err
	}
	ev, err = create(protocol.TriggerSpec{Name: "bench event", Action: notify, Condition: protocol.Condition{Event: &protocol.ChainEvent{
		Contract: dUSD.Hex(), Signature: "Transfer(address indexed from, address indexed to, uint256 value)", Topics: []string{"", eventsSink.Hex()}}}})
	return sig, ev, err
}

// watchFirings reads u's frames and sends each new intent's trigger (a
// firing) and each "updated" evaluation (a re-armed threshold) to out,
// until ctx ends.
func watchFirings(ctx context.Context, u *user, out chan<- fired) {
	seen := map[string]bool{}
	for {
		f, err := u.c.Next(ctx)
		if err != nil {
			return
		}
		if f.Type != protocol.TypeDiff {
			continue
		}
		at := time.Now()
		for _, c := range f.Changes {
			var x fired
			switch c.Kind {
			case protocol.KindIntent:
				var in protocol.Intent
				if json.Unmarshal(c.Data, &in) != nil || seen[in.ID] {
					continue
				}
				seen[in.ID] = true
				x = fired{trigger: in.TriggerID, at: at}
			case protocol.KindEvaluation:
				var e protocol.Evaluation
				if json.Unmarshal(c.Data, &e) != nil || e.Outcome != protocol.OutcomeUpdated {
					continue
				}
				x = fired{trigger: e.TriggerID, armed: true, at: at}
			default:
				continue
			}
			select {
			case out <- x:
			case <-ctx.Done():
				return
			}
		}
	}
}

// waitFunded waits for the faucet to give who gas money and dUSD.
func waitFunded(ctx context.Context, rc *ethclient.Client, dUSD, who common.Address) error {
	data, _ := contracts.MustGet(contracts.DemoToken).ABI.Pack("balanceOf", who)
	for deadline := time.Now().Add(60 * time.Second); ; {
		eth, err1 := rc.BalanceAt(ctx, who, nil)
		out, err2 := rc.CallContract(ctx, ethereum.CallMsg{To: &dUSD, Data: data}, nil)
		if err1 == nil && err2 == nil && eth.Sign() > 0 && new(big.Int).SetBytes(out).Sign() > 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("the faucet did not fund the payer within 60 s")
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

// transfer sends one dUSD unit from payer to the sink and returns when
// the bench saw its receipt.
func transfer(ctx context.Context, rc *ethclient.Client, chainID uint64, payer *user, dUSD common.Address) (time.Time, error) {
	from := payer.w.Address()
	data, _ := contracts.MustGet(contracts.DemoToken).ABI.Pack("transfer", eventsSink, big.NewInt(1))
	nonce, err := rc.PendingNonceAt(ctx, from)
	if err != nil {
		return time.Time{}, err
	}
	head, err := rc.HeaderByNumber(ctx, nil)
	if err != nil {
		return time.Time{}, err
	}
	gas, err := rc.EstimateGas(ctx, ethereum.CallMsg{From: from, To: &dUSD, Data: data})
	if err != nil {
		return time.Time{}, fmt.Errorf("the transfer: %w", err)
	}
	tip := big.NewInt(1e9)
	id := new(big.Int).SetUint64(chainID)
	tx, err := types.SignTx(types.NewTx(&types.DynamicFeeTx{ChainID: id, Nonce: nonce, GasTipCap: tip,
		GasFeeCap: new(big.Int).Add(tip, new(big.Int).Mul(head.BaseFee, big.NewInt(2))), Gas: gas * 5 / 4, To: &dUSD, Data: data}),
		types.LatestSignerForChainID(id), payer.w.Key)
	if err != nil {
		return time.Time{}, err
	}
	if err := rc.SendTransaction(ctx, tx); err != nil {
		return time.Time{}, fmt.Errorf("the transfer: %w", err)
	}
	for deadline := time.Now().Add(60 * time.Second); ; {
		if rcpt, err := rc.TransactionReceipt(ctx, tx.Hash()); err == nil {
			if rcpt.Status != types.ReceiptStatusSuccessful {
				return time.Time{}, fmt.Errorf("the transfer %s reverted", tx.Hash())
			}
			return time.Now(), nil
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("the transfer %s was not mined within 60 s", tx.Hash())
		}
		select {
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		case <-time.After(25 * time.Millisecond): // each poll is a call the node's dev chain answers
		}
	}
}
