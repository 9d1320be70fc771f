package main

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/coder/websocket"

	"github.com/spells-dev/spells/hub"
	"github.com/spells-dev/spells/internal/clock"
	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/protocol/client"
)

// TestSignalFiresTriggerLive is the tour from the README: sign in, create a
// trigger, publish prices, and watch the evaluation and intent arrive on
// two tabs of the same vault.
func TestSignalFiresTriggerLive(t *testing.T) {
	tn := startNode(t, testOptions(t), nil)
	tn.mustPublish(t, "ETH/USD", 2600)
	a := tn.signIn(t, nil)
	b := tn.signIn(t, a.w) // a second tab, its own session
	id, v := a.create(t, dip(2500))
	b.untilVersion(t, v)
	if _, ok := b.mirror.Triggers[id]; !ok {
		t.Fatal("second tab did not receive the new trigger")
	}
	tn.mustPublish(t, "ETH/USD", 2400)
	for _, s := range []*session{a, b} {
		s.until(t, "the intent", func(protocol.ServerFrame) bool { return len(s.mirror.Intents) == 1 })
		for _, in := range s.mirror.Intents {
			if in.TriggerID != id || in.Action.Kind != "swap" {
				t.Fatalf("intent %+v", in)
			}
		}
		if s.mirror.Triggers[id].Fires != 1 {
			t.Fatalf("trigger fires %d", s.mirror.Triggers[id].Fires)
		}
	}
	// Live prices reach signed-in dashboards.
	tn.mustPublish(t, "ETH/USD", 2410)
	a.until(t, "a live price", func(f protocol.ServerFrame) bool { return f.Type == protocol.TypeSignal && f.Name == "ETH/USD" })
}

func TestReconnectResumesWithNothingLostOrRepeated(t *testing.T) {
	tn := startNode(t, testOptions(t), nil)
	a := tn.signIn(t, nil)
	a.create(t, dip(2500))
	a.create(t, dip(2400))
	a.untilVersion(t, a.mirror.Version+0)
	seen := a.mirror.Version
	a.c.CloseNow()

	b := tn.signIn(t, a.w)
	var last uint64
	for i := 0; i < 3; i++ {
		_, last = b.create(t, dip(2000-float64(i)))
	}
	c, err := client.Dial(ctxT(t), tn.wsURL(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseNow)
	if err := c.Resume(ctxT(t), a.s, seen); err != nil {
		t.Fatal(err)
	}
	a.c = c
	a.untilVersion(t, last)
	if len(a.mirror.Triggers) != 5 {
		t.Fatalf("after resume the mirror holds %d triggers, want 5", len(a.mirror.Triggers))
	}
	// The resumed session goes on with its sequence numbers.
	if _, err := a.cmd(t, protocol.OpTriggerList, struct{}{}); err != nil {
		t.Fatal(err)
	}
}

func TestRestartKeepsStateVersionsAndRefusesReplays(t *testing.T) {
	tn := startNode(t, testOptions(t), nil)
	a := tn.signIn(t, nil)
	f, seq, err := a.s.SignCommand(protocol.OpTriggerCreate, dip(2500))
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.c.SendCommand(ctxT(t), f, seq); err != nil {
		t.Fatal(err)
	}
	a.untilVersion(t, a.mirror.Version+1)
	version := a.mirror.Version

	tn = tn.restart()
	c := tn.dial(t)
	if err := c.Resume(ctxT(t), a.s, version); err != nil {
		t.Fatalf("resume after restart: %v", err)
	}
	// Nothing was missed, so nothing is sent; the vault still answers.
	if _, err := c.Command(ctxT(t), a.s, protocol.OpTriggerList, struct{}{}); err != nil {
		t.Fatal(err)
	}
	_, err = c.SendCommand(ctxT(t), f, seq)
	wantCode(t, err, protocol.CodeBadSeq)
	fresh := tn.signIn(t, a.w)
	if fresh.mirror.Version != version || len(fresh.mirror.Triggers) != 1 {
		t.Fatalf("after restart: version %d (want %d), %d triggers", fresh.mirror.Version, version, len(fresh.mirror.Triggers))
	}
}

func TestAlarmFiresOverTheWire(t *testing.T) {
	clk := clock.NewFake(time.Now())
	tn := startNode(t, testOptions(t), clk)
	a := tn.signIn(t, nil)
	id, _ := a.create(t, protocol.TriggerSpec{Name: "dca", Condition: protocol.Condition{EveryMs: time.Hour.Milliseconds()}, Action: swap})
	clk.Advance(time.Hour)
	a.until(t, "the scheduled intent", func(protocol.ServerFrame) bool { return len(a.mirror.Intents) == 1 })
	if a.mirror.Triggers[id].Fires != 1 {
		t.Fatalf("fires %d", a.mirror.Triggers[id].Fires)
	}
}

func TestBadFramesGetClearErrors(t *testing.T) {
	tn := startNode(t, testOptions(t), nil)
	ctx := ctxT(t)
	c := tn.dial(t)
	expect := func(code protocol.Code) {
		t.Helper()
		f, err := c.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if f.Type != protocol.TypeError || f.Code != code {
			t.Fatalf("got %+v, want error %s", f, code)
		}
	}
	_ = c.SendRaw(ctx, websocket.MessageText, []byte(`{"type":`))
	expect(protocol.CodeBadFrame)
	_ = c.SendRaw(ctx, websocket.MessageText, []byte(`{"type":"teleport"}`))
	expect(protocol.CodeUnknownType)
	_ = c.SendRaw(ctx, websocket.MessageBinary, []byte{1, 2, 3})
	expect(protocol.CodeBadFrame)
	_ = c.Send(ctx, protocol.ClientFrame{Type: protocol.TypeCmd, Body: `{"seq":1}`, Sig: "x"})
	expect(protocol.CodeNotSignedIn)
	_ = c.Send(ctx, protocol.ClientFrame{Type: protocol.TypeSignIn, Message: "hello", Signature: "0x00"})
	expect(protocol.CodeSIWEMalformed)
	// The socket is still usable: a real sign-in works.
	w, _ := client.NewWallet()
	if _, err := c.SignIn(ctx, w, client.SignInParams{}, nil); err != nil {
		t.Fatal(err)
	}
	// Oversized frame: closed with 1009.
	_ = c.SendRaw(ctx, websocket.MessageText, []byte(`{"type":"cmd","body":"`+strings.Repeat("x", 70<<10)+`"}`))
	waitFor(t, "the close", func() bool { return c.Err() != nil })
	if got := websocket.CloseStatus(c.Err()); got != websocket.StatusMessageTooBig {
		t.Fatalf("close status %d, want 1009", got)
	}
}

func TestSignInRefusedOverTheWire(t *testing.T) {
	tn := startNode(t, testOptions(t), nil)
	c := tn.dial(t)
	w, _ := client.NewWallet()
	_, err := c.SignIn(ctxT(t), w, client.SignInParams{Domain: "evil.example"}, nil)
	wantCode(t, err, protocol.CodeSIWEDomain)
	_, err = c.SignIn(ctxT(t), w, client.SignInParams{ChainID: 137}, nil)
	wantCode(t, err, protocol.CodeSIWEChain)
	// A nonce from another socket is refused on this one.
	other := tn.dial(t)
	c.Challenge.Nonce = other.Challenge.Nonce
	_, err = c.SignIn(ctxT(t), w, client.SignInParams{}, nil)
	wantCode(t, err, protocol.CodeNonceUnknown)
}

func TestCrossVaultCommandRefused(t *testing.T) {
	tn := startNode(t, testOptions(t), nil)
	a, b := tn.signIn(t, nil), tn.signIn(t, nil)
	before := b.mirror.Version
	// a's delegate signs a command that names b's vault and session.
	forged := &client.Session{Vault: b.s.Vault, ID: b.s.ID, Delegate: a.s.Delegate, Seq: 100}
	f, seq, _ := forged.SignCommand(protocol.OpTriggerCreate, dip(1))
	_, err := a.c.SendCommand(ctxT(t), f, seq)
	wantCode(t, err, protocol.CodeWrongVault)
	_, err = b.c.SendCommand(ctxT(t), f, seq)
	wantCode(t, err, protocol.CodeBadCmdSignature)
	if _, err := b.cmd(t, protocol.OpTriggerList, struct{}{}); err != nil {
		t.Fatal(err)
	}
	if b.mirror.Version != before {
		t.Fatal("b's vault changed")
	}
}

func TestOriginCheck(t *testing.T) {
	opts := testOptions(t)
	opts.Origins = []string{"app.example.com"}
	tn := startNode(t, opts, nil)
	for origin, want := range map[string]int{
		"https://evil.example":        http.StatusForbidden,
		"null":                        http.StatusForbidden,
		"file://":                     http.StatusForbidden,
		"http://" + tn.addr:           0,
		"https://app.example.com":     0,
		"":                            0,
		"http://app.example.com.evil": http.StatusForbidden,
	} {
		c, err := client.Dial(ctxT(t), tn.wsURL(), &client.DialOptions{Origin: origin})
		if want == 0 {
			if err != nil {
				t.Errorf("origin %q refused: %v", origin, err)
				continue
			}
			c.CloseNow()
			continue
		}
		var de *client.DialError
		if !errors.As(err, &de) || de.Status != want {
			t.Errorf("origin %q: err %v, want HTTP %d", origin, err, want)
		}
	}
}

func TestCommandFloodIsRateLimited(t *testing.T) {
	opts := testOptions(t)
	opts.hubTweak = func(c *hub.Config) { c.CommandRate, c.CommandBurst = 5, 5 }
	tn := startNode(t, opts, nil)
	a := tn.signIn(t, nil)
	ctx := ctxT(t)
	const n = 40
	unanswered := map[uint64]bool{}
	for i := 0; i < n; i++ {
		f, seq, _ := a.s.SignCommand(protocol.OpTriggerCreate, dip(float64(1000+i)))
		if err := a.c.Send(ctx, f); err != nil {
			t.Fatal(err)
		}
		unanswered[seq] = true
	}
	acked, limited := 0, 0
	for acked+limited < n {
		f := a.until(t, "answers", func(f protocol.ServerFrame) bool { return f.Type == protocol.TypeAck || f.Type == protocol.TypeError })
		// Every answer, refusals included, names its command's seq.
		if !unanswered[f.Seq] {
			t.Fatalf("answer %+v names seq %d: not one sent, or answered twice", f, f.Seq)
		}
		delete(unanswered, f.Seq)
		switch {
		case f.Type == protocol.TypeAck:
			acked++
		case f.Code == protocol.CodeRateLimited && f.Retry:
			limited++
		default:
			t.Fatalf("unexpected %+v", f)
		}
	}
	if limited == 0 || acked == 0 {
		t.Fatalf("acked %d, limited %d: want both", acked, limited)
	}
	// Exactly the acknowledged commands are in the vault.
	fresh := tn.signIn(t, a.w)
	if len(fresh.mirror.Triggers) != acked {
		t.Fatalf("vault has %d triggers, %d were acked", len(fresh.mirror.Triggers), acked)
	}
}

// TestSlowReaderIsDisconnectedAndResumes stops reading on one connection
// while its vault keeps changing: the node closes it instead of buffering
// without bound, the other tab is unaffected, and on its return the slow
// client resumes from its last version without losing a diff.
func TestSlowReaderIsDisconnectedAndResumes(t *testing.T) {
	opts := testOptions(t)
	opts.hubTweak = func(c *hub.Config) {
		c.SendQueue, c.WriteTimeout, c.CommandRate, c.CommandBurst = 8, 2*time.Second, 1000, 1000
	}
	opts.wrapListener = smallSendBuffers
	tn := startNode(t, opts, nil)
	w, _ := client.NewWallet()
	slow := tn.stallingClient(t, w)
	slow.until(t, "snapshot", func(f protocol.ServerFrame) bool { return f.Type == protocol.TypeSnapshot })
	seen := slow.mirror.Version

	writer := tn.signIn(t, w)
	spec := dip(2500)
	spec.Action.Params = []byte(`{"memo":"` + strings.Repeat("m", 3000) + `"}`)
	created := 0
	var last uint64
	dropped := tn.n.hubMetrics.Disconnects.WithLabelValues("slow_consumer")
	for testutil.ToFloat64(dropped) == 0 {
		if created == 200 {
			t.Fatal("200 large diffs did not overflow the slow reader")
		}
		_, last = writer.create(t, spec)
		created++
	}
	_, last = writer.create(t, spec)
	created++
	writer.untilVersion(t, last)
	// The slow client reads again: after what was buffered, the close.
	waitFor(t, "the client to see the close", func() bool {
		_, err := slow.c.Next(ctxT(t))
		return err != nil
	})
	c := tn.dial(t)
	if err := c.Resume(ctxT(t), slow.s, seen); err != nil {
		t.Fatal(err)
	}
	slow.c = c
	slow.mirror.Version = seen
	slow.untilVersion(t, last)
	if len(slow.mirror.Triggers) != created {
		t.Fatalf("resumed mirror holds %d triggers, want %d", len(slow.mirror.Triggers), created)
	}
}

// TestStuckWriteTimesOut stops reading on one connection while its send
// queue still has room: the node's write blocks on the full socket, and
// after WriteTimeout the node drops the connection (metric write_timeout)
// instead of holding a writer forever; the other tab keeps working.
func TestStuckWriteTimesOut(t *testing.T) {
	opts := testOptions(t)
	opts.hubTweak = func(c *hub.Config) {
		c.WriteTimeout, c.CommandRate, c.CommandBurst = 300*time.Millisecond, 1000, 1000
	}
	opts.wrapListener = smallSendBuffers
	tn := startNode(t, opts, nil)
	w, _ := client.NewWallet()
	tn.stallingClient(t, w)
	writer := tn.signIn(t, w)
	spec := dip(2500)
	spec.Action.Params = []byte(`{"memo":"` + strings.Repeat("m", 4000) + `"}`)
	timedOut := tn.n.hubMetrics.Disconnects.WithLabelValues("write_timeout")
	overflowed := tn.n.hubMetrics.Disconnects.WithLabelValues("slow_consumer")
	// 30 diffs of 4 KB fill both sockets' small buffers, and are far from
	// the send queue's limit; creating them can take less than
	// WriteTimeout, so the test then waits for the timeout.
	for range 30 {
		writer.create(t, spec)
	}
	waitFor(t, "a write to the client that stopped reading to time out", func() bool { return testutil.ToFloat64(timedOut) > 0 })
	if n := testutil.ToFloat64(overflowed); n != 0 {
		t.Fatalf("%g connections dropped for a full queue; want the write timeout to end it", n)
	}
	_, last := writer.create(t, spec)
	writer.untilVersion(t, last)
}

// stallingClient signs w in on a client that buffers one frame and then
// stops reading until the test calls Next.
func (tn *testNode) stallingClient(t *testing.T, w *client.Wallet) *session {
	t.Helper()
	// A small receive buffer too: on a host whose TCP autotuning lets a
	// receive buffer grow to many megabytes, the diffs would otherwise
	// all fit in it, and the node's writes would never block.
	smallRcv := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := (&net.Dialer{}).DialContext(ctx, network, addr)
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetReadBuffer(4096)
		}
		return c, err
	}}}
	sc, err := client.Dial(ctxT(t), tn.wsURL(), &client.DialOptions{Buffer: 1, HTTPClient: smallRcv})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(sc.CloseNow)
	ss, err := sc.SignIn(ctxT(t), w, client.SignInParams{}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return &session{c: sc, w: w, s: ss, mirror: client.NewMirror()}
}

// smallSendBuffers shrinks the kernel send buffer of accepted connections,
// so a client that stops reading fills it after a few frames.
func smallSendBuffers(ln net.Listener) net.Listener { return smallBufListener{ln} }

type smallBufListener struct{ net.Listener }

func (l smallBufListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetWriteBuffer(4096)
	}
	return c, err
}

func TestShutdownClosesSocketsGoingAway(t *testing.T) {
	tn := startNode(t, testOptions(t), nil)
	a := tn.signIn(t, nil)
	a.create(t, dip(2500))
	if err := tn.shutdown(); err != nil {
		t.Fatalf("run returned %v", err)
	}
	waitFor(t, "the close", func() bool { return a.c.Err() != nil })
	if got := websocket.CloseStatus(a.c.Err()); got != websocket.StatusGoingAway {
		t.Fatalf("close status %d, want 1001", got)
	}
	if n := tn.n.mgr.OpenVaults(); n != 0 {
		t.Fatalf("%d vaults still open after shutdown", n)
	}
}

func TestSignalIngest(t *testing.T) {
	opts := testOptions(t)
	tn := startNode(t, opts, nil)
	cases := []struct {
		body string
		auth string
		want int
	}{
		{`{"name":"ETH/USD","value":2500}`, "Bearer " + testToken, http.StatusAccepted},
		{`{"signals":[{"name":"ETH/USD","value":1},{"name":"BTC/USD","value":2}]}`, "Bearer " + testToken, http.StatusAccepted},
		{`{"name":"ETH/USD","value":2500}`, "Bearer wrong", http.StatusUnauthorized},
		{`{"name":"ETH/USD","value":2500}`, "", http.StatusUnauthorized},
		{`{"name":"ETH/USD","value":`, "Bearer " + testToken, http.StatusBadRequest},
		{`{"name":"bad name!","value":1}`, "Bearer " + testToken, http.StatusBadRequest},
		{`{"signals":[{"name":"OK","value":1},{"name":"","value":2}]}`, "Bearer " + testToken, http.StatusBadRequest},
		{`{}`, "Bearer " + testToken, http.StatusBadRequest},
		// A value that is missing, null, not a number or not finite is
		// refused, never read as 0.
		{`{"name":"NOVALUE"}`, "Bearer " + testToken, http.StatusBadRequest},
		{`{"name":"NOVALUE","value":null}`, "Bearer " + testToken, http.StatusBadRequest},
		{`{"name":"NOVALUE","value":"2500"}`, "Bearer " + testToken, http.StatusBadRequest},
		{`{"name":"NOVALUE","value":1e999}`, "Bearer " + testToken, http.StatusBadRequest},
		{`{"signals":[{"name":"NOVALUE","value":1},{"name":"NOVALUE"}]}`, "Bearer " + testToken, http.StatusBadRequest},
		{`{"name":"NOVALUE","value":1,"at":1e+303}`, "Bearer " + testToken, http.StatusBadRequest},
		{`{"name":"NOVALUE","value":1}{"name":"NOVALUE","value":2}`, "Bearer " + testToken, http.StatusBadRequest},
		{`{"name":"NOVALUE","value":1,"colour":"red"}`, "Bearer " + testToken, http.StatusBadRequest},
	}
	for _, c := range cases {
		req, _ := http.NewRequest(http.MethodPost, "http://"+tn.addr+"/v1/signals", strings.NewReader(c.body))
		if c.auth != "" {
			req.Header.Set("Authorization", c.auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var msg strings.Builder
		io_Copy(&msg, resp)
		if resp.StatusCode != c.want {
			t.Errorf("%s (%s): %d, want %d", c.body, c.auth, resp.StatusCode, c.want)
		}
		// Refusals are in the project's words, not Go's decoder's.
		if m := msg.String(); strings.Contains(m, "Go ") || strings.Contains(m, "json:") || strings.Contains(m, "unmarshal") {
			t.Errorf("%s: the refusal shows a Go decoder message: %s", c.body, m)
		}
	}
	waitFor(t, "the accepted signals in the history", func() bool {
		v, ok := tn.n.hub.History().Latest("BTC/USD")
		return ok && v == 2
	})
	for _, name := range []string{"OK", "NOVALUE"} {
		if _, ok := tn.n.hub.History().Latest(name); ok {
			t.Fatalf("a refused request published %s", name)
		}
	}
	// Reading the ingest endpoint is not a thing: 405, naming POST.
	resp, err := http.Get("http://" + tn.addr + "/v1/signals")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != http.MethodPost {
		t.Fatalf("GET /v1/signals: %d (Allow %q), want 405 (Allow POST)", resp.StatusCode, resp.Header.Get("Allow"))
	}
	opts2 := testOptions(t)
	opts2.SignalToken = ""
	off := startNode(t, opts2, nil)
	if code, _ := off.publish(t, `{"name":"ETH/USD","value":1}`); code != http.StatusServiceUnavailable {
		t.Fatalf("ingest without a token: %d, want 503", code)
	}
}

func TestHealthReadyMetricsDashboard(t *testing.T) {
	tn := startNode(t, testOptions(t), nil)
	for path, want := range map[string]string{"/healthz": "ok", "/readyz": `"status":"ready"`, "/metrics": "spells_ws_connections", "/": "<title>Spells",
		"/favicon.ico": "<svg", "/v1/history": `"series"`} {
		resp, err := http.Get("http://" + tn.addr + path)
		if err != nil {
			t.Fatal(err)
		}
		buf := new(strings.Builder)
		_, _ = io_Copy(buf, resp)
		if resp.StatusCode != 200 || !strings.Contains(buf.String(), want) {
			t.Errorf("%s: %d, body lacks %q", path, resp.StatusCode, want)
		}
	}
}

// The debug listener's /debug/metrics has the node's own metrics and not
// the process's (what makes it cheap to poll); /metrics has both.
func TestDebugMetricsLeaveOutTheProcessCollectors(t *testing.T) {
	opts := testOptions(t)
	opts.DebugListen = "127.0.0.1:0"
	tn := startNode(t, opts, nil)
	get := func(url string) string {
		t.Helper()
		resp, err := http.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		buf := new(strings.Builder)
		_, _ = io_Copy(buf, resp)
		if resp.StatusCode != 200 {
			t.Fatalf("%s: HTTP %d", url, resp.StatusCode)
		}
		return buf.String()
	}
	var debugAddr string
	waitFor(t, "the debug listener", func() bool { debugAddr, _ = tn.n.debugAddr.Load().(string); return debugAddr != "" })
	all, own := get("http://"+tn.addr+"/metrics"), get("http://"+debugAddr+"/debug/metrics")
	for _, name := range []string{"spells_intents_total", "spells_ws_connections"} {
		if !strings.Contains(all, name) || !strings.Contains(own, name) {
			t.Errorf("%s missing from /metrics or /debug/metrics", name)
		}
	}
	for _, name := range []string{"process_cpu_seconds_total", "go_goroutines"} {
		if !strings.Contains(all, name) {
			t.Errorf("/metrics lacks %s", name)
		}
		if strings.Contains(own, name) {
			t.Errorf("/debug/metrics has %s", name)
		}
	}
}

func TestDemoFeedPublishes(t *testing.T) {
	opts := testOptions(t)
	opts.Demo, opts.DemoInterval = true, 10*time.Millisecond
	tn := startNode(t, opts, nil)
	a := tn.signIn(t, nil)
	a.until(t, "a demo price", func(f protocol.ServerFrame) bool { return f.Type == protocol.TypeSignal && f.Name == "ETH/USD" })
	_ = context.Background()
}

// Pipelined commands: a client sends many before the first is answered;
// each gets its ack, in order, with one version each, the mirror applies
// every diff without a gap, and a refused one in the middle changes
// nothing.
func TestPipelinedCommandsAnsweredInOrder(t *testing.T) {
	tn := startNode(t, testOptions(t), nil)
	a := tn.signIn(t, nil)
	const n = 40
	const bad = 17 // an invalid spec: refused, the others still apply
	var seqs []uint64
	for i := 0; i < n; i++ {
		spec := dip(float64(2000 + i))
		if i == bad {
			spec.Condition.Op = "sideways"
		}
		f, seq, err := a.s.SignCommand(protocol.OpTriggerCreate, spec)
		if err != nil {
			t.Fatal(err)
		}
		if err := a.c.Send(ctxT(t), f); err != nil {
			t.Fatal(err)
		}
		seqs = append(seqs, seq)
	}
	var last uint64
	for i := 0; i < n; i++ {
		f := a.until(t, "an answer", func(f protocol.ServerFrame) bool {
			return f.Type == protocol.TypeAck || f.Type == protocol.TypeError
		})
		if f.Seq != seqs[i] {
			t.Fatalf("answer %d is for seq %d, want %d (in order)", i, f.Seq, seqs[i])
		}
		if i == bad {
			if f.Type != protocol.TypeError || f.Code != protocol.CodeInvalidTrigger {
				t.Fatalf("answer %d: %s %s, want error invalid_trigger", i, f.Type, f.Code)
			}
			continue
		}
		if f.Type != protocol.TypeAck || f.Version <= last {
			t.Fatalf("answer %d: %s at version %d after %d", i, f.Type, f.Version, last)
		}
		last = f.Version
	}
	a.untilVersion(t, last)
	if len(a.mirror.Triggers) != n-1 {
		t.Fatalf("mirror holds %d triggers, want %d", len(a.mirror.Triggers), n-1)
	}
}
