package main

import (
	"context"
	"math"
	"math/rand/v2"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/spells-dev/spells/chain"
	"github.com/spells-dev/spells/hub"
	"github.com/spells-dev/spells/internal/clock"
)

// demoFeed publishes prices through the same bus as real signals, so a
// new user sees triggers fire at once: random walks, and, on the dev
// chain, ETH/USD as the dev pool's own price, which a demo trader moves
// with a swap every tick (a trigger that fires swaps on the market it
// watched). A signal the chain has a price feed for (fed) is not
// published here: the trader moves that feed with the pool, and the feed
// watcher publishes its rounds.
type demoFeed struct {
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

var demoStart = []struct {
	name  string
	price float64
}{{"ETH/USD", 2600}, {"BTC/USD", 65000}, {"SOL/USD", 150}}

// market is the dev pool as the demo feed sees it (chain.Trader).
type market interface {
	Price(ctx context.Context) (float64, error)
	Step(ctx context.Context, price float64) error
}

func startDemo(bus hub.Bus, every time.Duration, clk clock.Clock, log zerolog.Logger, pool market, fed map[string]bool) *demoFeed {
	ctx, cancel := context.WithCancel(context.Background())
	d := &demoFeed{cancel: cancel}
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		prices := make([]float64, len(demoStart))
		for i, s := range demoStart {
			prices[i] = s.price
		}
		t := time.NewTicker(every)
		defer t.Stop()
		for {
			now := clk.Now().UnixMilli()
			for i, s := range demoStart {
				// A step of about 0.2%, so thresholds near the price cross
				// within seconds to minutes.
				prices[i] *= math.Exp(rand.NormFloat64() * 0.002)
				v := math.Round(prices[i]*100) / 100
				if pool != nil && s.name == chain.DemoPriceSignal {
					p, err := pool.Price(ctx)
					if err != nil {
						if ctx.Err() == nil {
							log.Warn().Err(err).Msg("demo feed: read the dev pool's price")
						}
						continue
					}
					v = math.Round(p*100) / 100
					if err := pool.Step(ctx, p); err != nil && ctx.Err() == nil {
						log.Warn().Err(err).Msg("demo trader: swap")
					}
				}
				if fed[s.name] {
					continue
				}
				if err := bus.Publish(ctx, hub.Signal{Name: s.name, Value: v, At: now}); err != nil && ctx.Err() == nil {
					log.Warn().Err(err).Msg("demo feed publish")
				}
			}
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	what := "random-walk ETH/USD, BTC/USD, SOL/USD"
	if pool != nil {
		what = "ETH/USD from the dev chain's pool (a demo trader swaps every tick), random-walk BTC/USD, SOL/USD"
		if fed[chain.DemoPriceSignal] {
			what = "ETH/USD from the dev chain's price feed (a demo trader moves it with the pool every tick), random-walk BTC/USD, SOL/USD"
		}
	}
	log.Info().Str("every", every.String()).Msg("demo feed on: " + what + " (turn off with --demo=false)")
	return d
}

func (d *demoFeed) stop() {
	d.cancel()
	d.wg.Wait()
}
