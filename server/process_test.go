package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/protocol/client"
)

// procNode is the daemon run as its own process (the test binary re-run
// with SPELLS_TEST_RUN_MAIN=1, see TestMain), for what only a process
// shows: SIGKILL, SIGTERM under load, a restart on the same data, what an
// operator reads in the log.
type procNode struct {
	t    testing.TB
	cmd  *exec.Cmd
	data string
	addr string // 127.0.0.1:port

	mu     sync.Mutex
	lines  []string
	newLog chan struct{} // closed and replaced at every line
	exited chan struct{}
	err    error // exit status, once exited is closed
}

// startProc starts the daemon on data with the test defaults (no demo, a
// signal token) and args, and waits until it serves.
func startProc(t testing.TB, data string, args ...string) *procNode {
	t.Helper()
	return startProcEnv(t, data, nil, args...)
}

// startProcEnv is startProc with more environment variables.
func startProcEnv(t testing.TB, data string, env []string, args ...string) *procNode {
	t.Helper()
	p := launchProc(t, data, env, args...)
	line := p.waitLog(`open the dashboard at http://localhost:(\d+)/`, 60*time.Second)
	port := regexp.MustCompile(`localhost:(\d+)/`).FindStringSubmatch(line)[1]
	p.addr = "127.0.0.1:" + port
	return p
}

// launchProc starts the daemon and waits only until it listens (its
// start may go on: /healthz and /readyz answer meanwhile).
func launchProc(t testing.TB, data string, env []string, args ...string) *procNode {
	t.Helper()
	all := append([]string{"-listen", "127.0.0.1:0", "-data", data, "-log-format", "json", "-signal-token", testToken, "-demo=false", "-chain-rpc", "none"}, args...)
	p := &procNode{t: t, data: data, newLog: make(chan struct{}), exited: make(chan struct{})}
	p.cmd = exec.Command(os.Args[0], all...)
	p.cmd.Env = append(append(os.Environ(), "SPELLS_TEST_RUN_MAIN=1"), env...)
	stderr, err := p.cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.kill() })
	go p.read(stderr)
	line := p.waitLog(`"listen":"[^"]+"`, 60*time.Second)
	p.addr = regexp.MustCompile(`"listen":"([^"]+)"`).FindStringSubmatch(line)[1]
	return p
}

func (p *procNode) read(r io.Reader) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		p.mu.Lock()
		p.lines = append(p.lines, sc.Text())
		close(p.newLog)
		p.newLog = make(chan struct{})
		p.mu.Unlock()
	}
	p.err = p.cmd.Wait()
	close(p.exited)
}

// waitLog waits for a log line matching re and returns it; it fails the
// test if the process exits or the time passes first.
func (p *procNode) waitLog(re string, within time.Duration) string {
	p.t.Helper()
	rx := regexp.MustCompile(re)
	deadline := time.After(within)
	seen := 0
	for {
		p.mu.Lock()
		lines, wake := p.lines[seen:], p.newLog
		seen = len(p.lines)
		p.mu.Unlock()
		for _, l := range lines {
			if rx.MatchString(l) {
				return l
			}
		}
		select {
		case <-wake:
		case <-p.exited:
			p.t.Fatalf("the node exited (%v) before logging %q; its log:\n%s", p.err, re, p.log())
		case <-deadline:
			p.t.Fatalf("no log line %q within %s; its log:\n%s", re, within, p.log())
		}
	}
}

func (p *procNode) log() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.lines, "\n")
}

// stop sends sig and waits up to within for the process to exit; it
// returns the exit status.
func (p *procNode) stop(sig os.Signal, within time.Duration) error {
	p.t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		p.t.Fatal(err)
	}
	select {
	case <-p.exited:
		return p.err
	case <-time.After(within):
		p.t.Fatalf("the node did not exit within %s of %v; its log:\n%s", within, sig, p.log())
	}
	return nil
}

func (p *procNode) kill() {
	select {
	case <-p.exited:
	default:
		_ = p.cmd.Process.Kill()
		<-p.exited
	}
}

func (p *procNode) wsURL() string { return "ws://" + p.addr + "/v1/ws" }

func (p *procNode) dial(t testing.TB, opts *client.DialOptions) *client.Conn {
	t.Helper()
	c, err := client.Dial(ctxT(t), p.wsURL(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseNow)
	return c
}

// signIn signs w in on a new socket and waits for its snapshot.
func (p *procNode) signIn(t testing.TB, w *client.Wallet) *session {
	t.Helper()
	if w == nil {
		w, _ = client.NewWallet()
	}
	c := p.dial(t, nil)
	s, err := c.SignIn(ctxT(t), w, client.SignInParams{}, nil)
	if err != nil {
		t.Fatalf("sign in %s: %v", w.Address().Hex(), err)
	}
	ss := &session{c: c, w: w, s: s, mirror: client.NewMirror()}
	ss.until(t, "snapshot", func(f protocol.ServerFrame) bool { return f.Type == protocol.TypeSnapshot })
	return ss
}

// readyz returns /readyz's status code and body.
func (p *procNode) readyz(t testing.TB) (int, map[string]any) {
	t.Helper()
	resp, err := http.Get("http://" + p.addr + "/readyz")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&body)
	return resp.StatusCode, body
}

// metric returns the sum of a metric's samples in /metrics.
func (p *procNode) metric(t testing.TB, name string) float64 {
	t.Helper()
	resp, err := http.Get("http://" + p.addr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	sum := 0.0
	for _, m := range fams[name].GetMetric() {
		switch {
		case m.GetCounter() != nil:
			sum += m.GetCounter().GetValue()
		case m.GetGauge() != nil:
			sum += m.GetGauge().GetValue()
		}
	}
	return sum
}

func (p *procNode) publish(t testing.TB, name string, v float64) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, "http://"+p.addr+"/v1/signals", strings.NewReader(fmt.Sprintf(`{"name":%q,"value":%g}`, name, v)))
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("publish: HTTP %d", resp.StatusCode)
	}
}

// dropAfterSignIn sends a signed sign-in on a fresh socket and drops the
// socket at once, as a client whose network failed right after sending.
func (p *procNode) dropAfterSignIn(t testing.TB, w *client.Wallet, opts *client.DialOptions) {
	t.Helper()
	c, err := client.Dial(ctxT(t), p.wsURL(), opts)
	if err != nil {
		t.Fatal(err)
	}
	d, _ := protocol.NewDelegate()
	msg, sig, err := w.SignIn(client.SignInParams{Domain: c.Challenge.Domains[0], ChainID: c.Challenge.ChainID, Nonce: c.Challenge.Nonce, Delegate: d})
	if err != nil {
		t.Fatal(err)
	}
	if err := c.Send(ctxT(t), protocol.ClientFrame{Type: protocol.TypeSignIn, Message: msg, Signature: sig}); err != nil {
		t.Fatal(err)
	}
	c.CloseNow()
}

// TestInterruptedFirstSignInsNeverBrickTheNode: first sign-ins whose
// sockets drop right after sending, then the node killed (SIGKILL) while
// some are still being created, and again stopped (SIGTERM): each time the
// node starts again, quarantines nothing, and every one of those addresses
// signs in.
func TestInterruptedFirstSignInsNeverBrickTheNode(t *testing.T) {
	data := t.TempDir()
	var wallets []*client.Wallet
	for _, stop := range []os.Signal{syscall.SIGKILL, syscall.SIGTERM} {
		p := startProc(t, data, "-signin-rate-per-ip", "0", "-new-vaults-per-ip", "0", "-new-vaults-per-minute", "0")
		for i := 0; i < 20; i++ {
			w, _ := client.NewWallet()
			wallets = append(wallets, w)
			p.dropAfterSignIn(t, w, nil)
		}
		err := p.stop(stop, 20*time.Second)
		if stop == syscall.SIGTERM && err != nil {
			t.Fatalf("exit after SIGTERM: %v", err)
		}
	}
	p := startProc(t, data, "-signin-rate-per-ip", "0", "-new-vaults-per-ip", "0", "-new-vaults-per-minute", "0")
	if code, body := p.readyz(t); code != http.StatusOK || body["vaults_quarantined"] != 0.0 {
		t.Fatalf("after the crashes /readyz: %d %v", code, body)
	}
	for _, w := range wallets {
		p.signIn(t, w).c.CloseNow()
	}
}

// TestUnauthenticatedFloodCostsNothing: thousands of sign-ins with garbage
// signatures, each socket dropped at once, from many addresses, against a
// node that may open few vaults. Afterwards the node holds no vault for
// them, idles, answers a legitimate sign-in at once, still fires triggers
// and pushes live prices to dashboards, and SIGTERM ends it promptly with
// 1001 to every dashboard.
func TestUnauthenticatedFloodCostsNothing(t *testing.T) {
	p := startProc(t, t.TempDir(), "-max-open-vaults", "20")
	dash := p.signIn(t, nil)
	p.publish(t, "ETH/USD", 2600)
	dash.create(t, dip(2500))
	var wg sync.WaitGroup
	for g := 0; g < 16; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			for i := 0; i < 250; i++ {
				opts := fromAddr(fmt.Sprintf("127.0.%d.%d", 1+g, 1+i%8))
				c, err := client.Dial(context.Background(), p.wsURL(), opts)
				if err != nil {
					continue // refused (429) once the address has too many pending
				}
				w, _ := client.NewWallet()
				msg, _, _ := w.SignIn(client.SignInParams{Domain: c.Challenge.Domains[0], ChainID: 1, Nonce: c.Challenge.Nonce})
				_ = c.Send(context.Background(), protocol.ClientFrame{Type: protocol.TypeSignIn, Message: msg, Signature: "0x" + strings.Repeat("ab", 65)})
				c.CloseNow()
			}
		}(g)
	}
	wg.Wait()
	began := time.Now()
	late := p.signIn(t, nil)
	if d := time.Since(began); d > 2*time.Second {
		t.Fatalf("a legitimate sign-in took %s after the flood", d)
	}
	if n := p.metric(t, "spells_vaults_open"); n > 2 {
		t.Fatalf("%g vaults open after the flood; the refused sign-ins held some", n)
	}
	cpu0 := p.metric(t, "process_cpu_seconds_total")
	time.Sleep(2 * time.Second)
	if used := p.metric(t, "process_cpu_seconds_total") - cpu0; used > 1 {
		t.Fatalf("the idle node used %.2fs of CPU in 2s after the flood", used)
	}
	p.publish(t, "ETH/USD", 2400)
	dash.until(t, "the firing", func(protocol.ServerFrame) bool { return len(dash.mirror.Intents) == 1 })
	late.until(t, "a live price", func(f protocol.ServerFrame) bool { return f.Type == protocol.TypeSignal && f.Value == 2400 })
	if code, _ := p.readyz(t); code != http.StatusOK {
		t.Fatalf("/readyz %d after the flood", code)
	}
	if err := p.stop(syscall.SIGTERM, 10*time.Second); err != nil {
		t.Fatalf("exit after SIGTERM: %v", err)
	}
	for _, s := range []*session{dash, late} {
		waitFor(t, "the close", func() bool { return s.c.Err() != nil })
		if code := websocket.CloseStatus(s.c.Err()); code != websocket.StatusGoingAway {
			t.Fatalf("a dashboard was closed with %d at shutdown (%v), want 1001", code, s.c.Err())
		}
	}
}

// TestDamagedVaultQuarantinedByTheNode: a vault file damaged while the node
// was down does not stop it: the node starts, logs where it moved the
// file, reports the count in /readyz and a metric, refuses the owner with
// vault_quarantined, and serves every other vault.
func TestDamagedVaultQuarantinedByTheNode(t *testing.T) {
	data := t.TempDir()
	p := startProc(t, data)
	victim, _ := client.NewWallet()
	p.signIn(t, victim).create(t, dip(2500))
	other, _ := client.NewWallet()
	p.signIn(t, other).create(t, dip(2400))
	if err := p.stop(syscall.SIGTERM, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	id := strings.ToLower(victim.Address().Hex())
	f, err := os.OpenFile(data+"/vaults/"+id[2:4]+"/"+id+".db", os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteAt([]byte(strings.Repeat("\x00garbage", 12)), 0)
	f.Close()

	p = startProc(t, data)
	line := p.waitLog(`vault quarantined`, 5*time.Second)
	var entry struct{ File string }
	_ = json.Unmarshal([]byte(line), &entry)
	if _, err := os.Stat(entry.File); err != nil || !strings.Contains(entry.File, "quarantine") {
		t.Fatalf("the log names %q as the quarantined file: %v", entry.File, err)
	}
	if code, body := p.readyz(t); code != http.StatusOK || body["vaults_quarantined"] != 1.0 {
		t.Fatalf("/readyz %d %v, want 200 with 1 quarantined", code, body)
	}
	if n := p.metric(t, "spells_vaults_quarantined"); n != 1 {
		t.Fatalf("spells_vaults_quarantined = %g", n)
	}
	c := p.dial(t, nil)
	_, err = c.SignIn(ctxT(t), victim, client.SignInParams{}, nil)
	wantCode(t, err, protocol.CodeVaultQuarantined)
	if s := p.signIn(t, other); len(s.mirror.Triggers) != 1 {
		t.Fatal("the other vault lost its trigger")
	}
}

// TestDamagedWALAfterACrashIsTold: acknowledged commands, a SIGKILL, and
// bytes flipped in the vault's write-ahead log. Damage in the log's middle
// (acknowledged transactions after it) is found by the start-up scan
// before SQLite replays it: the vault is quarantined, the log names the
// file, and a client gets vault_quarantined. Damage in the last
// transaction only is replayed up to it: the client that resumes from the
// version it was acknowledged gets vault_rolled_back, and the node logs
// and counts it. Neither is silent.
func TestDamagedWALAfterACrashIsTold(t *testing.T) {
	for _, tc := range []struct {
		name   string
		at     func(n int) int
		code   protocol.Code
		logged string
	}{
		{"middle", func(n int) int { return n / 3 }, protocol.CodeVaultQuarantined, `write-ahead log .* is damaged`},
		{"last transaction", func(n int) int { return n - 100 }, protocol.CodeVaultRolledBack, `the vault lost acknowledged changes`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			data := t.TempDir()
			p := startProc(t, data, "-command-rate", "100000", "-command-burst", "100000")
			a := p.signIn(t, nil)
			var last uint64
			for i := 0; i < 150; i++ {
				_, last = a.create(t, dip(float64(1000+i)))
			}
			p.kill()
			id := strings.ToLower(a.w.Address().Hex())
			wal := data + "/vaults/" + id[2:4] + "/" + id + ".db-wal"
			b, err := os.ReadFile(wal)
			if err != nil || len(b) < 64<<10 {
				t.Fatalf("the WAL after the crash: %d bytes, %v", len(b), err)
			}
			at := tc.at(len(b))
			for i := at; i < at+64 && i < len(b); i++ {
				b[i] ^= 0xff
			}
			if err := os.WriteFile(wal, b, 0o600); err != nil {
				t.Fatal(err)
			}
			p = startProc(t, data)
			c := p.dial(t, nil)
			err = c.Resume(ctxT(t), a.s, last)
			wantCode(t, err, tc.code)
			p.waitLog(tc.logged, 5*time.Second)
			if tc.code == protocol.CodeVaultRolledBack {
				if n := p.metric(t, "spells_vault_rollbacks_detected_total"); n != 1 {
					t.Fatalf("spells_vault_rollbacks_detected_total = %g", n)
				}
			}
		})
	}
}
