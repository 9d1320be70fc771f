package main

import (
	"context"
	"math/big"
	"sync"
	"time"

	"github.com/ethereum/go-ethereum"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/rs/zerolog"

	"github.com/spells-dev/spells/contracts"
	"github.com/spells-dev/spells/hub"
	"github.com/spells-dev/spells/internal/clock"
	"github.com/spells-dev/spells/protocol"
)

// feedWatcher reads each of the chain's price feeds (Chainlink's
// AggregatorV3Interface) at every new block and publishes each new round
// as a signal carrying its source: the feed, the round and the block. An
// answer that is not positive, or older than the feed's MaxAge, is not
// published, and the log says so once per round.
type feedWatcher struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// feedChain is what the watcher reads from the chain.
type feedChain interface {
	HeaderByNumber(ctx context.Context, number *big.Int) (*types.Header, error)
	CallContract(ctx context.Context, msg ethereum.CallMsg, block *big.Int) ([]byte, error)
}

var aggregatorABI = contracts.MustGet(contracts.MockV3Aggregator).ABI

// feedRound is one feed's latest round as read.
type feedRound struct {
	round     *big.Int
	answer    *big.Int
	updatedAt uint64
}

// readFeed reads a feed's latest round at block.
func readFeed(ctx context.Context, c feedChain, feed common.Address, block *big.Int) (feedRound, error) {
	data, _ := aggregatorABI.Pack("latestRoundData")
	out, err := c.CallContract(ctx, ethereum.CallMsg{To: &feed, Data: data}, block)
	if err != nil {
		return feedRound{}, err
	}
	v, err := aggregatorABI.Unpack("latestRoundData", out)
	if err != nil {
		return feedRound{}, err
	}
	return feedRound{round: v[0].(*big.Int), answer: v[1].(*big.Int), updatedAt: v[3].(*big.Int).Uint64()}, nil
}

// feedValue is answer as a number, with decimals places.
func feedValue(answer *big.Int, decimals uint8) float64 {
	f, _ := new(big.Rat).SetFrac(answer, new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(decimals)), nil)).Float64()
	return f
}

func startFeeds(bus hub.Bus, c feedChain, feeds []protocol.Feed, every time.Duration, clk clock.Clock, log zerolog.Logger) *feedWatcher {
	ctx, cancel := context.WithCancel(context.Background())
	w := &feedWatcher{cancel: cancel}
	w.wg.Add(1)
	go func() {
		defer w.wg.Done()
		last := make([]string, len(feeds))   // the round published
		warned := make([]string, len(feeds)) // the round a refusal was logged for
		var lastBlock uint64
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			if head, err := c.HeaderByNumber(ctx, nil); err == nil && head.Number.Uint64() != lastBlock {
				lastBlock = head.Number.Uint64()
				for i, f := range feeds {
					r, err := readFeed(ctx, c, common.HexToAddress(f.Address), head.Number)
					if err != nil {
						if ctx.Err() == nil {
							log.Warn().Err(err).Str("feed", f.Address).Str("signal", f.Signal).Msg("price feed: read failed")
						}
						continue
					}
					round := r.round.String()
					if round == last[i] {
						continue
					}
					why := ""
					switch {
					case r.answer.Sign() <= 0:
						why = "its answer is not a positive price"
					case r.updatedAt > head.Time || head.Time-r.updatedAt > f.MaxAge:
						why = "its answer is stale"
					}
					if why != "" {
						if warned[i] != round {
							warned[i] = round
							log.Warn().Str("feed", f.Address).Str("signal", f.Signal).Str("round", round).Str("answer", r.answer.String()).
								Uint64("updated_at", r.updatedAt).Uint64("block_time", head.Time).Msg("price feed: not published: " + why)
						}
						continue
					}
					last[i] = round
					s := hub.Signal{Name: f.Signal, Value: feedValue(r.answer, f.Decimals), At: clk.Now().UnixMilli(),
						Source: &protocol.SignalSource{Feed: f.Address, Round: round, Block: lastBlock}}
					if err := bus.Publish(ctx, s); err != nil && ctx.Err() == nil {
						log.Warn().Err(err).Str("signal", f.Signal).Msg("price feed: publish")
					}
				}
			} else if err != nil && ctx.Err() == nil {
				log.Debug().Err(err).Msg("price feed: no head")
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	names := make([]string, len(feeds))
	for i, f := range feeds {
		names[i] = f.Signal
	}
	log.Info().Strs("signals", names).Msg("price feeds: read at every block and published with their source")
	return w
}

func (w *feedWatcher) stop() {
	w.cancel()
	w.wg.Wait()
}
