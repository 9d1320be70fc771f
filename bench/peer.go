package main

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spells-dev/spells/protocol"
)

// peerParams configures the side-by-side fan-out against Centrifugo.
type peerParams struct {
	Centrifugo string // the centrifugo binary (v6)
	CPUs       string // taskset CPU list for centrifugo ("" runs it unpinned)
	Dashboards int
	Rate       float64       // publishes a second
	Window     time.Duration // how long each system is published to in a round
	Rounds     int
}

// peerSide is one system under the same load: publish one numbered tick,
// read its process's CPU seconds and resident bytes.
type peerSide struct {
	name     string
	publish  func(ctx context.Context, seq int) error
	usage    func(ctx context.Context) (cpu, rss float64, err error)
	emptyRSS float64
}

// peerRecorder holds what the dashboards of one system received: per
// round, each reader's latencies (merged at the end), and counts.
type peerRecorder struct {
	sentAt    []atomic.Int64 // unix ns each numbered tick was published
	perRound  int
	mu        sync.Mutex
	lat       [][]time.Duration // by round
	delivered []atomic.Int64    // by round
}

func newPeerRecorder(rounds, perRound int) *peerRecorder {
	return &peerRecorder{sentAt: make([]atomic.Int64, rounds*perRound), perRound: perRound,
		lat: make([][]time.Duration, rounds), delivered: make([]atomic.Int64, rounds)}
}

// reader returns the function a dashboard's read loop calls for each
// numbered tick it receives, and flush, which hands its samples over.
func (pr *peerRecorder) reader() (got func(seq int, at time.Time), flush func()) {
	local := make([][]time.Duration, len(pr.lat))
	got = func(seq int, at time.Time) {
		if seq < 0 || seq >= len(pr.sentAt) {
			return
		}
		sent := pr.sentAt[seq].Load()
		if sent == 0 {
			return
		}
		round := seq / pr.perRound
		local[round] = append(local[round], at.Sub(time.Unix(0, sent)))
		pr.delivered[round].Add(1)
	}
	flush = func() {
		pr.mu.Lock()
		defer pr.mu.Unlock()
		for i, l := range local {
			pr.lat[i] = append(pr.lat[i], l...)
		}
	}
	return got, flush
}

// peer: the same fan-out load on Spells and on Centrifugo, side by side in
// one run. Spells gets Dashboards first sign-ins, each vault with a
// trigger on the bench signal and its dashboard kept; Centrifugo (started
// by the bench from -centrifugo, on -cpus) gets Dashboards connections
// with a JWT, each subscribed to one channel. Then, for -rounds rounds,
// each system in turn is published numbered ticks at -rate for -window;
// every dashboard's receive time against the publish time is its latency,
// the process's CPU over the window (and its drain) divided by the
// messages delivered is the CPU per delivered message, and a tick a
// dashboard never got was conflated (Spells) or lost. Memory per
// dashboard is each process's resident growth over its empty self.
func peer(ctx context.Context, n *node, p peerParams) (*Report, error) {
	if p.Centrifugo == "" {
		return nil, errors.New("peer: -centrifugo is required (bench/peerpair.sh builds it)")
	}
	if p.Dashboards <= 0 || p.Rate <= 0 || p.Window <= 0 || p.Rounds <= 0 {
		return nil, errors.New("peer: -dashboards, -rate, -window and -rounds must be positive")
	}
	r := newReport("peer", map[string]any{"dashboards": p.Dashboards, "rate": p.Rate, "window": p.Window.String(),
		"rounds": p.Rounds, "centrifugo": p.Centrifugo, "centrifugo_cpus": p.CPUs})
	perRound := int(p.Rate * p.Window.Seconds())
	if perRound < 1 {
		perRound = 1
	}

	// Spells: the dashboards and their vaults.
	sig := fmt.Sprintf("PEER%d/USD", rand.IntN(1e9))
	if err := n.publish(ctx, tick{Name: sig, Value: 1500, At: time.Now().UnixMilli()}); err != nil {
		return nil, err
	}
	empty, err := n.collected(ctx)
	if err != nil {
		return nil, err
	}
	began := time.Now()
	users, err := newUsers(ctx, n, p.Dashboards, p.Dashboards, func(ctx context.Context, u *user) error {
		_, err := u.c.Command(ctx, u.s, protocol.OpTriggerCreate, below(sig, 1000))
		return err
	})
	defer closeAll(users)
	if err != nil {
		return nil, err
	}
	r.set("spells_setup_s", time.Since(began).Seconds())
	spells := &peerSide{name: "spells", emptyRSS: empty.rss,
		publish: func(ctx context.Context, seq int) error {
			return n.publish(ctx, tick{Name: sig, Value: 1500 + float64(seq), At: time.Now().UnixMilli()})
		},
		usage: func(ctx context.Context) (float64, float64, error) {
			u, err := n.usage(ctx)
			return u.cpu, u.rss, err
		}}

	// Centrifugo: its process, its connections.
	cf, err := startCentrifugo(ctx, p.Centrifugo, p.CPUs)
	if err != nil {
		return nil, err
	}
	defer cf.stop()
	if _, rss, err := cf.usage(); err == nil {
		cf.emptyRSS = rss
	}
	began = time.Now()
	conns := make([]*centrifugoConn, p.Dashboards)
	err = forEach(ctx, p.Dashboards, 32, func(ctx context.Context, i int) error {
		c, err := cf.dial(ctx, fmt.Sprintf("user%d", i))
		conns[i] = c
		return err
	})
	defer func() {
		for _, c := range conns {
			if c != nil {
				c.ws.CloseNow()
			}
		}
	}()
	if err != nil {
		return nil, fmt.Errorf("centrifugo: %w", err)
	}
	r.set("centrifugo_setup_s", time.Since(began).Seconds())
	centrifugo := &peerSide{name: "centrifugo", emptyRSS: cf.emptyRSS,
		publish: cf.publish,
		usage: func(context.Context) (float64, float64, error) {
			return cf.usage()
		}}

	// Readers: one goroutine a dashboard, as a browser would have.
	recs := map[string]*peerRecorder{"spells": newPeerRecorder(p.Rounds, perRound), "centrifugo": newPeerRecorder(p.Rounds, perRound)}
	rctx, stopReaders := context.WithCancel(ctx)
	var wg sync.WaitGroup
	for _, u := range users {
		got, flush := recs["spells"].reader()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer flush()
			for {
				f, err := u.c.Next(rctx)
				if err != nil {
					return
				}
				if f.Type == protocol.TypeSignal && f.Name == sig {
					got(int(f.Value-1500), time.Now())
				}
			}
		}()
	}
	for _, c := range conns {
		got, flush := recs["centrifugo"].reader()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer flush()
			c.read(rctx, got)
		}()
	}

	sides := []*peerSide{spells, centrifugo}
	type window struct{ cpu, delivered float64 }
	windows := map[string][]window{}
	gap := time.Duration(float64(time.Second) / p.Rate)
	for round := 0; round < p.Rounds; round++ {
		for _, s := range sides {
			rec := recs[s.name]
			cpu0, _, err := s.usage(ctx)
			if err != nil {
				stopReaders()
				wg.Wait()
				return nil, fmt.Errorf("%s: %w", s.name, err)
			}
			t := time.NewTicker(gap)
			for i := 0; i < perRound; i++ {
				seq := round*perRound + i
				rec.sentAt[seq].Store(time.Now().UnixNano())
				if err := s.publish(ctx, seq); err != nil {
					t.Stop()
					stopReaders()
					wg.Wait()
					return nil, fmt.Errorf("%s: %w", s.name, err)
				}
				<-t.C
			}
			t.Stop()
			// Drain: until every dashboard has the round's ticks, or 5s.
			want := int64(perRound * p.Dashboards)
			for deadline := time.Now().Add(5 * time.Second); rec.delivered[round].Load() < want && time.Now().Before(deadline); {
				time.Sleep(10 * time.Millisecond)
			}
			cpu1, _, err := s.usage(ctx)
			if err != nil {
				stopReaders()
				wg.Wait()
				return nil, fmt.Errorf("%s: %w", s.name, err)
			}
			windows[s.name] = append(windows[s.name], window{cpu: cpu1 - cpu0, delivered: float64(rec.delivered[round].Load())})
		}
	}
	_, spellsRSS, _ := spells.usage(ctx)
	_, cfRSS, _ := centrifugo.usage(ctx)
	stopReaders()
	wg.Wait()

	sent := float64(perRound * p.Dashboards)
	p99 := map[string][]float64{}
	cpuEach := map[string][]float64{}
	for _, s := range sides {
		rec := recs[s.name]
		for round := 0; round < p.Rounds; round++ {
			prefix := fmt.Sprintf("%s_r%d", s.name, round+1)
			r.latencies(prefix, rec.lat[round])
			w := windows[s.name][round]
			r.set(prefix+"_delivered_fraction", w.delivered/sent)
			if w.delivered > 0 {
				r.set(prefix+"_cpu_us_per_message", w.cpu/w.delivered*1e6)
				cpuEach[s.name] = append(cpuEach[s.name], w.cpu/w.delivered*1e6)
			}
			if v, ok := r.Results[prefix+"_p99_ms"]; ok {
				p99[s.name] = append(p99[s.name], v)
			}
		}
	}
	r.set("spells_rss_kib_per_dashboard", (spellsRSS-spells.emptyRSS)/float64(p.Dashboards)/1024)
	r.set("centrifugo_rss_kib_per_dashboard", (cfRSS-centrifugo.emptyRSS)/float64(p.Dashboards)/1024)
	r.set("ratio_rss_per_dashboard", (spellsRSS-spells.emptyRSS)/(cfRSS-centrifugo.emptyRSS))
	// Ratios round by round: each pair was measured back to back.
	for round := 0; round < p.Rounds; round++ {
		if round < len(p99["spells"]) && round < len(p99["centrifugo"]) && p99["centrifugo"][round] > 0 {
			r.set(fmt.Sprintf("ratio_p99_r%d", round+1), p99["spells"][round]/p99["centrifugo"][round])
		}
		if round < len(cpuEach["spells"]) && round < len(cpuEach["centrifugo"]) && cpuEach["centrifugo"][round] > 0 {
			r.set(fmt.Sprintf("ratio_cpu_per_message_r%d", round+1), cpuEach["spells"][round]/cpuEach["centrifugo"][round])
		}
	}
	r.note("ratios are Spells over Centrifugo, round by round; a delivered fraction under 1 is ticks a dashboard never got (Spells conflates to the newest value)")
	return r, nil
}
