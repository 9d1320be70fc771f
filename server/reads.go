package main

import (
	"context"
	"math/big"
	"sort"
	"sync"
	"time"

	"github.com/ethereum/go-ethereum"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/spells-dev/spells/hub"
	"github.com/spells-dev/spells/internal/clock"
	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/vault/rules"
)

// readWatcher makes the chain reads the node's vaults wait on (an
// account's balance, a view function's number) at every new block, and a
// new one at once, and publishes each changed value as the read's signal,
// with the block as its source. A read that fails (a call that reverts, a contract that is
// not there) is not published and is logged once per reason; at most
// maxReads are made a block, the others counted and logged.
type readWatcher struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// maxReads bounds the reads of one block.
const maxReads = 500

// readChain is what the watcher reads from the chain.
type readChain interface {
	HeaderByNumber(ctx context.Context, number *big.Int) (*types.Header, error)
	CallContract(ctx context.Context, msg ethereum.CallMsg, block *big.Int) ([]byte, error)
	BalanceAt(ctx context.Context, account common.Address, block *big.Int) (*big.Int, error)
}

// readMetrics count the reads by result.
func readMetrics(reg prometheus.Registerer) *prometheus.CounterVec {
	m := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "spells_chain_reads_total",
		Help: "Chain reads the node made for its vaults' read conditions, by result: published (changed), unchanged, failed, skipped (past the reads a block)."}, []string{"result"})
	if reg != nil {
		reg.MustRegister(m)
	}
	return m
}

// readValue makes one read at block.
func readValue(ctx context.Context, c readChain, key string, block *big.Int) (float64, error) {
	contract, data, decimals, signed, ok := rules.ParseReadKey(key)
	if !ok {
		return 0, errBadRead
	}
	var n *big.Int
	if contract == "" {
		b, err := c.BalanceAt(ctx, common.HexToAddress(data), block)
		if err != nil {
			return 0, err
		}
		n = b
	} else {
		to := common.HexToAddress(contract)
		in, err := hexutil.Decode(data)
		if err != nil {
			return 0, errBadRead
		}
		out, err := c.CallContract(ctx, ethereum.CallMsg{To: &to, Data: in}, block)
		if err != nil {
			return 0, err
		}
		if len(out) < 32 {
			return 0, errNoNumber
		}
		n = new(big.Int).SetBytes(out[:32])
		if signed && n.Bit(255) == 1 {
			n.Sub(n, new(big.Int).Lsh(big.NewInt(1), 256)) // two's complement
		}
	}
	f, _ := new(big.Rat).SetFrac(n, new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(decimals)), nil)).Float64()
	return f, nil
}

// readReason is a failed read in words for its owner: the revert's
// reason when the chain gives one.
func readReason(err error) string {
	msg := err.Error()
	if len(msg) > 200 {
		msg = msg[:200] + "…"
	}
	return msg
}

type readError string

func (e readError) Error() string { return string(e) }

const (
	errBadRead  = readError("the read is malformed")
	errNoNumber = readError("the call returned no number (is the contract there, and the function a view that returns one?)")
)

func startReads(bus hub.Bus, c readChain, reads func() map[string]string, failed func(name, why string), every time.Duration, clk clock.Clock, m *prometheus.CounterVec, log zerolog.Logger) *readWatcher {
	ctx, cancel := context.WithCancel(context.Background())
	w := &readWatcher{cancel: cancel}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		last := map[string]float64{} // the value published
		told := map[string]string{}  // the reason a failure was logged and told for
		var lastBlock uint64
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			if head, err := c.HeaderByNumber(ctx, nil); err == nil {
				newBlock := head.Number.Uint64() != lastBlock
				lastBlock = head.Number.Uint64()
				want := reads()
				names := make([]string, 0, len(want))
				for name := range want {
					// Every read at a new block; a read no value was
					// published for yet (a new trigger's) at once.
					if _, seen := last[name]; newBlock || !seen {
						names = append(names, name)
					}
				}
				sort.Strings(names)
				if len(names) > maxReads {
					m.WithLabelValues("skipped").Add(float64(len(names) - maxReads))
					log.Warn().Int("reads", len(names)).Int("made", maxReads).Uint64("block", lastBlock).Msg("chain reads: more than a block's bound; the rest wait for a later block")
					names = names[:maxReads]
				}
				for name := range last {
					if _, ok := want[name]; !ok {
						delete(last, name) // no leaf waits on it any more
						delete(told, name)
					}
				}
				for _, name := range names {
					v, err := readValue(ctx, c, want[name], head.Number)
					if err != nil {
						if ctx.Err() != nil {
							return
						}
						m.WithLabelValues("failed").Inc()
						if told[name] != err.Error() {
							told[name] = err.Error()
							log.Warn().Err(err).Str("signal", name).Str("read", want[name]).Uint64("block", lastBlock).Msg("chain read failed: its triggers wait for a value")
							failed(name, readReason(err))
						}
						continue
					}
					delete(told, name)
					if old, ok := last[name]; ok && old == v {
						m.WithLabelValues("unchanged").Inc()
						continue
					}
					last[name] = v
					m.WithLabelValues("published").Inc()
					s := hub.Signal{Name: name, Value: v, At: clk.Now().UnixMilli(), Source: &protocol.SignalSource{Block: lastBlock}}
					if err := bus.Publish(ctx, s); err != nil && ctx.Err() == nil {
						log.Warn().Err(err).Str("signal", name).Msg("chain read: publish")
					}
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	return w
}

func (w *readWatcher) stop() {
	w.cancel()
	w.wg.Wait()
}
