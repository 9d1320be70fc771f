package main

import (
	"context"
	"math/big"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/spells-dev/spells/hub"
	"github.com/spells-dev/spells/internal/clock"
	"github.com/spells-dev/spells/protocol"
)

// fakeFeeds is a chain whose head and feed answers a test sets.
type fakeFeeds struct {
	mu      sync.Mutex
	block   uint64
	time    uint64
	answers map[string]feedRound // by feed address, lowercase
	reads   map[uint64]int       // feed reads at each block
}

func (f *fakeFeeds) set(block, at uint64, feed string, r feedRound) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.block, f.time = block, at
	f.answers[strings.ToLower(feed)] = r
}

// waitRead waits until the watcher has read a feed at block.
func (f *fakeFeeds) waitRead(t *testing.T, block uint64) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		f.mu.Lock()
		n := f.reads[block]
		f.mu.Unlock()
		if n > 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("the watcher did not read block %d", block)
		}
		time.Sleep(time.Millisecond)
	}
}

func (f *fakeFeeds) HeaderByNumber(context.Context, *big.Int) (*types.Header, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return &types.Header{Number: new(big.Int).SetUint64(f.block), Time: f.time}, nil
}

func (f *fakeFeeds) CallContract(_ context.Context, msg ethereum.CallMsg, _ *big.Int) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.reads[f.block]++
	r := f.answers[strings.ToLower(msg.To.Hex())]
	return aggregatorABI.Methods["latestRoundData"].Outputs.Pack(r.round, r.answer, new(big.Int).SetUint64(r.updatedAt), new(big.Int).SetUint64(r.updatedAt), r.round)
}

// TestFeedRoundsArePublishedWithTheirSource: each new round of a feed is
// published once, as a number in the feed's own decimals, with the feed,
// round and block it was read at; a round whose answer is not positive or
// is older than the feed's MaxAge is not published.
func TestFeedRoundsArePublishedWithTheirSource(t *testing.T) {
	eth := "0x00000000000000000000000000000000000000F1"
	wei := "0x00000000000000000000000000000000000000f2"
	c := &fakeFeeds{answers: map[string]feedRound{}, reads: map[uint64]int{}}
	c.set(10, 1000, "0x00000000000000000000000000000000000000F1", feedRound{round: big.NewInt(1), answer: big.NewInt(250012345678), updatedAt: 1000})
	c.set(10, 1000, "0x00000000000000000000000000000000000000f2", feedRound{round: big.NewInt(7), answer: big.NewInt(5e17), updatedAt: 990})
	bus := hub.NewMemoryBus(64, prometheus.NewCounter(prometheus.CounterOpts{Name: "x"}))
	defer bus.Close()
	got := make(chan hub.Signal, 64)
	defer bus.Subscribe(func(s hub.Signal) { got <- s })()
	w := startFeeds(bus, c, []protocol.Feed{{Signal: "ETH/USD", Address: eth, Decimals: 8, MaxAge: 60}, {Signal: "WEI/ETH", Address: wei, Decimals: 18, MaxAge: 60}},
		5*time.Millisecond, clock.Real{}, zerolog.Nop())
	defer w.stop()
	next := func() hub.Signal {
		t.Helper()
		select {
		case s := <-got:
			return s
		case <-time.After(5 * time.Second):
			t.Fatal("no signal published")
		}
		return hub.Signal{}
	}
	seen := map[string]hub.Signal{}
	for i := 0; i < 2; i++ {
		s := next()
		seen[s.Name] = s
	}
	if s := seen["ETH/USD"]; s.Value != 2500.12345678 || s.Source == nil || s.Source.Feed != eth || s.Source.Round != "1" || s.Source.Block != 10 {
		t.Fatalf("ETH/USD: %+v (source %+v)", s, s.Source)
	}
	if s := seen["WEI/ETH"]; s.Value != 0.5 || s.Source == nil || s.Source.Round != "7" {
		t.Fatalf("WEI/ETH: %+v", s)
	}
	// Not positive, then stale: nothing; then a fresh round: published.
	c.set(11, 1001, eth, feedRound{round: big.NewInt(2), answer: big.NewInt(0), updatedAt: 1001})
	c.waitRead(t, 11)
	c.set(12, 1100, eth, feedRound{round: big.NewInt(3), answer: big.NewInt(-1), updatedAt: 1100})
	c.waitRead(t, 12)
	c.set(13, 1200, eth, feedRound{round: big.NewInt(4), answer: big.NewInt(240000000000), updatedAt: 1100})
	c.waitRead(t, 13)
	c.set(14, 1201, eth, feedRound{round: big.NewInt(5), answer: big.NewInt(230000000000), updatedAt: 1201})
	if s := next(); s.Name != "ETH/USD" || s.Value != 2300 || s.Source.Round != "5" {
		t.Fatalf("after a zero, a negative and a stale round: %+v (source %+v)", s, s.Source)
	}
	select {
	case s := <-got:
		t.Fatalf("published again: %+v", s)
	case <-time.After(50 * time.Millisecond):
	}
}
