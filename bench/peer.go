package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/protocol/client"
)

// The peer scenario: the same fan-out load on Spells and on Centrifugo,
// side by side in one run. Each system's dashboards live in a process of
// their own (a child of the bench, "peer-clients"): 10,000 sockets each
// would not fit one process's open files beside the other's, and the two
// sets must not share a runtime either. The bench itself publishes,
// switches the children from round to round over their stdin, and reads
// each server process's CPU and memory.

// peerParams configures the side-by-side fan-out against Centrifugo.
type peerParams struct {
	Centrifugo string // the centrifugo binary (v6)
	CPUs       string // taskset CPU list for centrifugo ("" runs it unpinned)
	Dashboards int
	Rate       float64       // publishes a second
	Window     time.Duration // how long each system is published to in a round
	Rounds     int
	// Settle, when positive, is how long to wait before the rounds for
	// every Spells vault file to be closed (each vault dozes with its
	// dashboard connected; the node's -idle-after decides when): both
	// servers are then measured at rest with their dashboards, not in the
	// wake of the sign-ins.
	Settle time.Duration
}

// peerSide is one system under the same load: its dashboards' process,
// publishing one tick, reading its server's CPU seconds and resident bytes.
type peerSide struct {
	name     string
	clients  *peerChild
	publish  func(ctx context.Context, sentMicro int64) error
	usage    func(ctx context.Context) (cpu, rss float64, err error)
	emptyRSS float64
}

// A tick's value carries its publish time: the bench's epoch plus the
// microseconds since it, above every trigger's threshold (Spells sends the
// value in its signal frame; Centrifugo the whole payload). The dashboards
// measure against it, at the same resolution on both systems.
const peerValueBase = 1e6

// peer runs the scenario (see bench/doc.go).
func peer(ctx context.Context, n *node, p peerParams) (*Report, error) {
	if p.Centrifugo == "" {
		return nil, errors.New("peer: -centrifugo is required (bench/peerpair.sh builds it)")
	}
	if p.Dashboards <= 0 || p.Rate <= 0 || p.Window <= 0 || p.Rounds <= 0 {
		return nil, errors.New("peer: -dashboards, -rate, -window and -rounds must be positive")
	}
	r := newReport("peer", map[string]any{"dashboards": p.Dashboards, "rate": p.Rate, "window": p.Window.String(),
		"rounds": p.Rounds, "settle": p.Settle.String(), "centrifugo": p.Centrifugo, "centrifugo_cpus": p.CPUs})
	perRound := max(1, int(p.Rate*p.Window.Seconds()))
	epoch := time.Now().UnixMicro()
	self, err := os.Executable()
	if err != nil {
		return nil, err
	}

	// Spells: an empty node, then one vault a dashboard, each with a
	// trigger on the bench signal.
	sig := fmt.Sprintf("PEER%d/USD", rand.IntN(1e9))
	if err := n.publish(ctx, tick{Name: sig, Value: peerValueBase, At: time.Now().UnixMilli()}); err != nil {
		return nil, err
	}
	empty, err := n.collected(ctx)
	if err != nil {
		return nil, err
	}
	spellsKids, err := startPeerChild(ctx, self, "-system", "spells", "-node", n.base, "-signal", sig,
		"-dashboards", strconv.Itoa(p.Dashboards), "-epoch", strconv.FormatInt(epoch, 10))
	if err != nil {
		return nil, fmt.Errorf("spells dashboards: %w", err)
	}
	defer spellsKids.kill()
	spells := &peerSide{name: "spells", clients: spellsKids, emptyRSS: empty.rss,
		publish: func(ctx context.Context, sent int64) error {
			return n.publish(ctx, tick{Name: sig, Value: peerValueBase + float64(sent-epoch), At: time.Now().UnixMilli()})
		},
		usage: func(ctx context.Context) (float64, float64, error) {
			u, err := n.usage(ctx)
			return u.cpu, u.rss, err
		}}
	r.set("spells_setup_s", spellsKids.setup)

	// Centrifugo: its process, then its connections.
	cf, err := startCentrifugo(ctx, p.Centrifugo, p.CPUs)
	if err != nil {
		return nil, err
	}
	defer cf.stop()
	_, cfEmpty, err := cf.usage()
	if err != nil {
		return nil, err
	}
	cfKids, err := startPeerChild(ctx, self, "-system", "centrifugo", "-node", cf.base, "-secret", string(cf.secret),
		"-dashboards", strconv.Itoa(p.Dashboards), "-epoch", strconv.FormatInt(epoch, 10))
	if err != nil {
		return nil, fmt.Errorf("centrifugo dashboards: %w", err)
	}
	defer cfKids.kill()
	centrifugo := &peerSide{name: "centrifugo", clients: cfKids, emptyRSS: cfEmpty,
		publish: func(ctx context.Context, sent int64) error {
			return cf.publish(ctx, peerValueBase+float64(sent-epoch))
		},
		usage: func(context.Context) (float64, float64, error) { return cf.usage() }}
	r.set("centrifugo_setup_s", cfKids.setup)

	if p.Settle > 0 {
		files := -1.0
		for deadline := time.Now().Add(p.Settle); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
			m, err := n.metrics(ctx)
			if err != nil {
				return nil, err
			}
			if files = m["spells_vault_files_open"]; files == 0 {
				break
			}
		}
		r.set("spells_settled_files_open", files)
		if files != 0 {
			r.note("%g vault files still open after %s: raise -settle or lower the node's -idle-after", files, p.Settle)
		}
	}
	sides := []*peerSide{spells, centrifugo}
	gap := time.Duration(float64(time.Second) / p.Rate)
	want := int64(perRound * p.Dashboards)
	cpuEach := map[string][]float64{}
	for round := 0; round < p.Rounds; round++ {
		for _, s := range sides {
			if err := s.clients.round(round); err != nil {
				return nil, fmt.Errorf("%s dashboards: %w", s.name, err)
			}
			cpu0, _, err := s.usage(ctx)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", s.name, err)
			}
			client0, _, _ := procUsage(s.clients.cmd.Process.Pid)
			t := time.NewTicker(gap)
			for i := 0; i < perRound; i++ {
				if err := s.publish(ctx, time.Now().UnixMicro()); err != nil {
					t.Stop()
					return nil, fmt.Errorf("%s: %w", s.name, err)
				}
				<-t.C
			}
			t.Stop()
			// Drain: until every dashboard has the round's ticks, or 5s.
			for deadline := time.Now().Add(5 * time.Second); s.clients.delivered.Load() < want && time.Now().Before(deadline); {
				time.Sleep(10 * time.Millisecond)
			}
			cpu1, _, err := s.usage(ctx)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", s.name, err)
			}
			client1, _, _ := procUsage(s.clients.cmd.Process.Pid)
			got := float64(s.clients.delivered.Load())
			prefix := fmt.Sprintf("%s_r%d", s.name, round+1)
			r.set(prefix+"_delivered_fraction", got/float64(want))
			if got > 0 {
				r.set(prefix+"_cpu_us_per_message", (cpu1-cpu0)/got*1e6)
				cpuEach[s.name] = append(cpuEach[s.name], (cpu1-cpu0)/got*1e6)
				r.set(prefix+"_client_cpu_us_per_message", (client1-client0)/got*1e6)
			}
		}
	}
	rss := map[string]float64{}
	for _, s := range sides {
		_, v, err := s.usage(ctx)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", s.name, err)
		}
		rss[s.name] = (v - s.emptyRSS) / float64(p.Dashboards)
		r.set(s.name+"_rss_kib_per_dashboard", rss[s.name]/1024)
	}
	if rss["centrifugo"] > 0 {
		r.set("ratio_rss_per_dashboard", rss["spells"]/rss["centrifugo"])
	}
	p99 := map[string][]float64{}
	for _, s := range sides {
		stats, err := s.clients.finish()
		if err != nil {
			return nil, fmt.Errorf("%s dashboards: %w", s.name, err)
		}
		for round, st := range stats {
			prefix := fmt.Sprintf("%s_r%d", s.name, round+1)
			r.set(prefix+"_p50_ms", st.P50)
			r.set(prefix+"_p99_ms", st.P99)
			r.set(prefix+"_max_ms", st.Max)
			r.set(prefix+"_samples", float64(st.Samples))
			p99[s.name] = append(p99[s.name], st.P99)
		}
	}
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
	r.note("memory per dashboard is each server's resident growth over its empty self; Spells' includes the dashboard's vault")
	r.note("client CPU is the dashboards' process (one core for all of them): when it nears a core per window, the latencies are the clients' as much as the server's")
	return r, nil
}

// peerChild is a running peer-clients process: its dashboards, switched
// from round to round over its stdin, reporting on its stdout.
type peerChild struct {
	cmd       *exec.Cmd
	in        io.WriteCloser
	lines     chan peerLine
	delivered atomic.Int64 // the current round's deliveries, as last reported
	setup     float64      // seconds to connect every dashboard
	mu        sync.Mutex
	waitErr   error
	exited    chan struct{}
}

// peerLine is one line a peer-clients process writes.
type peerLine struct {
	Ready     bool           `json:"ready,omitempty"`
	SetupS    float64        `json:"setup_s,omitempty"`
	Round     *int           `json:"round,omitempty"`
	Delivered *int64         `json:"delivered,omitempty"`
	Rounds    []peerRoundLat `json:"rounds,omitempty"`
	Error     string         `json:"error,omitempty"`
}

// peerRoundLat is one round's latencies on one system's dashboards.
type peerRoundLat struct {
	P50     float64 `json:"p50_ms"`
	P99     float64 `json:"p99_ms"`
	Max     float64 `json:"max_ms"`
	Samples int     `json:"samples"`
}

func startPeerChild(ctx context.Context, self string, args ...string) (*peerChild, error) {
	pc := &peerChild{cmd: exec.Command(self, append([]string{"peer-clients"}, args...)...),
		lines: make(chan peerLine, 64), exited: make(chan struct{})}
	pc.cmd.Stderr = os.Stderr
	out, err := pc.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if pc.in, err = pc.cmd.StdinPipe(); err != nil {
		return nil, err
	}
	if err := pc.cmd.Start(); err != nil {
		return nil, err
	}
	go func() {
		defer close(pc.exited)
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			var l peerLine
			if json.Unmarshal(sc.Bytes(), &l) != nil {
				continue
			}
			if l.Delivered != nil {
				pc.delivered.Store(*l.Delivered)
				continue
			}
			pc.lines <- l
		}
		err := pc.cmd.Wait()
		pc.mu.Lock()
		pc.waitErr = err
		pc.mu.Unlock()
		close(pc.lines)
	}()
	l, err := pc.next(ctx, 30*time.Minute)
	if err != nil {
		pc.kill()
		return nil, err
	}
	if !l.Ready {
		pc.kill()
		return nil, fmt.Errorf("peer-clients: unexpected %+v", l)
	}
	pc.setup = l.SetupS
	return pc, nil
}

// next is the next line that is not a delivery count.
func (pc *peerChild) next(ctx context.Context, limit time.Duration) (peerLine, error) {
	select {
	case l, ok := <-pc.lines:
		if !ok {
			pc.mu.Lock()
			defer pc.mu.Unlock()
			return peerLine{}, fmt.Errorf("peer-clients exited: %v", pc.waitErr)
		}
		if l.Error != "" {
			return l, errors.New(l.Error)
		}
		return l, nil
	case <-ctx.Done():
		return peerLine{}, ctx.Err()
	case <-time.After(limit):
		return peerLine{}, fmt.Errorf("peer-clients said nothing within %s", limit)
	}
}

// round switches the dashboards to count round r, once they confirm.
func (pc *peerChild) round(r int) error {
	if _, err := fmt.Fprintf(pc.in, "round %d\n", r); err != nil {
		return err
	}
	l, err := pc.next(context.Background(), 30*time.Second)
	if err != nil {
		return err
	}
	if l.Round == nil || *l.Round != r {
		return fmt.Errorf("peer-clients: want round %d, got %+v", r, l)
	}
	pc.delivered.Store(0)
	return nil
}

// finish closes the dashboards' stdin and returns their latencies.
func (pc *peerChild) finish() ([]peerRoundLat, error) {
	pc.in.Close()
	l, err := pc.next(context.Background(), time.Minute)
	if err != nil {
		return nil, err
	}
	<-pc.exited
	return l.Rounds, nil
}

func (pc *peerChild) kill() {
	pc.cmd.Process.Kill()
	<-pc.exited
}

// peerClientsParams configures a peer-clients process.
type peerClientsParams struct {
	System     string // spells or centrifugo
	Base       string // the server's base URL
	Signal     string // spells: the signal each vault's trigger watches
	Secret     string // centrifugo: the HMAC key of its connection tokens
	Dashboards int
	Epoch      int64 // unix µs a tick's value counts from
}

// peerClients is the peer-clients process: it connects the dashboards,
// says ready, and records each tick's latency in the round its stdin last
// named, reporting the round's deliveries every 50 ms; at the end of its
// stdin it writes every round's latencies and exits.
func peerClients(ctx context.Context, p peerClientsParams) error {
	var outMu sync.Mutex
	emit := func(l peerLine) {
		b, _ := json.Marshal(l)
		outMu.Lock()
		os.Stdout.Write(append(b, '\n'))
		outMu.Unlock()
	}
	var round atomic.Int32
	var delivered atomic.Int64
	round.Store(-1)
	var mu sync.Mutex
	lat := map[int32][]time.Duration{}
	newReader := func() (got func(value float64, at time.Time), flush func()) {
		local := map[int32][]time.Duration{}
		got = func(value float64, at time.Time) {
			r := round.Load()
			if r < 0 || value < peerValueBase {
				return
			}
			sent := time.UnixMicro(p.Epoch + int64(value-peerValueBase))
			local[r] = append(local[r], at.Sub(sent))
			delivered.Add(1)
		}
		flush = func() {
			mu.Lock()
			defer mu.Unlock()
			for r, l := range local {
				lat[r] = append(lat[r], l...)
			}
		}
		return got, flush
	}

	rctx, stop := context.WithCancel(ctx)
	defer stop()
	var wg sync.WaitGroup
	began := time.Now()
	var err error
	switch p.System {
	case "spells":
		err = peerSpellsDashboards(rctx, &wg, p, newReader)
	case "centrifugo":
		err = peerCentrifugoDashboards(rctx, &wg, p, newReader)
	default:
		err = fmt.Errorf("peer-clients: unknown -system %q", p.System)
	}
	if err != nil {
		emit(peerLine{Error: err.Error()})
		return err
	}
	emit(peerLine{Ready: true, SetupS: time.Since(began).Seconds()})

	go func() {
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		last := int64(-1)
		for {
			select {
			case <-rctx.Done():
				return
			case <-t.C:
				if d := delivered.Load(); d != last {
					last = d
					emit(peerLine{Delivered: &d})
				}
			}
		}
	}()
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		var r int
		if _, err := fmt.Sscanf(strings.TrimSpace(sc.Text()), "round %d", &r); err != nil {
			continue
		}
		delivered.Store(0)
		round.Store(int32(r))
		emit(peerLine{Round: &r})
	}
	stop()
	wg.Wait()
	var out []peerRoundLat
	for r := int32(0); ; r++ {
		ds, ok := lat[r]
		if !ok {
			break
		}
		q := func(f float64) float64 { return ms(quantile(ds, f)) }
		out = append(out, peerRoundLat{P50: q(0.50), P99: q(0.99), Max: q(1), Samples: len(ds)})
	}
	emit(peerLine{Rounds: out})
	return nil
}

// peerSpellsDashboards signs in one new wallet a dashboard, each with a
// trigger on the signal, and reads their signal frames until ctx ends:
// on each connection's reading goroutine, decoding only what a price
// needs (client.DialOptions.OnMessage), as the Centrifugo clients do.
func peerSpellsDashboards(ctx context.Context, wg *sync.WaitGroup, p peerClientsParams, newReader func() (func(float64, time.Time), func())) error {
	n := newNode(p.Base, "")
	users := make([]*user, p.Dashboards)
	flushes := make([]func(), p.Dashboards)
	err := forEach(ctx, p.Dashboards, 32, func(ctx context.Context, i int) error {
		w, err := client.NewWallet()
		if err != nil {
			return err
		}
		got, flush := newReader()
		flushes[i] = flush
		u, err := signInWith(ctx, n, w, &client.DialOptions{OnMessage: func(data []byte) bool {
			return readSignal(data, p.Signal, got)
		}})
		if err != nil {
			return fmt.Errorf("user %d: %w", i, err)
		}
		users[i] = u
		if _, err := u.c.Command(ctx, u.s, protocol.OpTriggerCreate, below(p.Signal, 1000)); err != nil {
			return fmt.Errorf("user %d setup: %w", i, err)
		}
		return nil
	})
	if err != nil {
		closeAll(users)
		return err
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		<-ctx.Done()
		closeAll(users) // each reading goroutine ends with its connection
		for _, flush := range flushes {
			flush()
		}
	}()
	return nil
}

// readSignal consumes a message that is one signal frame of name, giving
// its value to got; anything else is left to the client.
func readSignal(data []byte, name string, got func(float64, time.Time)) bool {
	now := time.Now()
	var f struct {
		Type  string  `json:"type"`
		Name  string  `json:"name"`
		Value float64 `json:"value"`
	}
	if bytes.IndexByte(data, protocol.FrameSeparator) >= 0 || json.Unmarshal(data, &f) != nil ||
		f.Type != protocol.TypeSignal || f.Name != name {
		return false
	}
	got(f.Value, now)
	return true
}

// peerCentrifugoDashboards connects one client a dashboard with its own
// token, subscribed to the channel, and reads its publications until ctx
// ends.
func peerCentrifugoDashboards(ctx context.Context, wg *sync.WaitGroup, p peerClientsParams, newReader func() (func(float64, time.Time), func())) error {
	cf := &centrifugo{base: p.Base, secret: []byte(p.Secret)}
	conns := make([]*centrifugoConn, p.Dashboards)
	err := forEach(ctx, p.Dashboards, 32, func(ctx context.Context, i int) error {
		c, err := cf.dial(ctx, fmt.Sprintf("user%d", i))
		conns[i] = c
		return err
	})
	if err != nil {
		for _, c := range conns {
			if c != nil {
				c.ws.CloseNow()
			}
		}
		return err
	}
	for _, c := range conns {
		got, flush := newReader()
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer flush()
			defer c.ws.CloseNow()
			c.read(ctx, got)
		}()
	}
	return nil
}
