package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/spells-dev/spells/internal/clock"
	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/protocol/client"
)

const testToken = "test-token"

// testNode is a node started in-process on a free loopback port.
type testNode struct {
	t     testing.TB
	opts  Options
	clock clock.Clock
	n     *daemon
	addr  string
	stop  context.CancelFunc
	done  chan error
}

func testOptions(t testing.TB) Options {
	// No chain unless a test asks for one: most tests exercise the node
	// without executing (chain_test.go runs the dev chain).
	return Options{Listen: "127.0.0.1:0", DataDir: t.TempDir(), ChainID: 1, ChainRPC: chainNone, Confirmations: 2, ChainPoll: time.Second, FeeBumpAfter: 30 * time.Second, SignalToken: testToken,
		DemoInterval: time.Second, LogFormat: "json", LogLevel: "error", AlertsAllowPrivate: true}
}

func startNode(t testing.TB, opts Options, clk clock.Clock) *testNode {
	t.Helper()
	tn, err := startNodeErr(t, opts, clk)
	if err != nil {
		t.Fatal(err)
	}
	return tn
}

// startNodeErr is startNode that returns the error of a node that did not
// start.
func startNodeErr(t testing.TB, opts Options, clk clock.Clock) (*testNode, error) {
	t.Helper()
	if clk == nil {
		clk = clock.Real{}
	}
	n, err := newNode(context.Background(), opts, clk)
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	tn := &testNode{t: t, opts: opts, clock: clk, n: n, addr: n.ln.Addr().String(), stop: cancel, done: make(chan error, 1)}
	go func() { tn.done <- n.serve(ctx) }()
	t.Cleanup(func() { tn.shutdown() })
	// Until serve has put its routes in place, every request is answered
	// 503 starting: the node is returned once they serve.
	for deadline := time.Now().Add(10 * time.Second); n.routesReady.Load() == nil; {
		if time.Now().After(deadline) {
			t.Fatal("the node's routes did not serve within 10s of its start")
		}
		time.Sleep(time.Millisecond)
	}
	return tn, nil
}

// shutdown stops the node and waits for run to return.
func (tn *testNode) shutdown() error {
	tn.stop()
	select {
	case err, ok := <-tn.done:
		if ok {
			close(tn.done)
		}
		return err
	case <-time.After(20 * time.Second):
		tn.t.Fatal("node did not stop within 20s")
	}
	return nil
}

// restart stops the node and starts a new one on the same data dir and
// port.
func (tn *testNode) restart() *testNode {
	tn.t.Helper()
	if err := tn.shutdown(); err != nil {
		tn.t.Fatal(err)
	}
	opts := tn.opts
	opts.Listen = tn.addr
	return startNode(tn.t, opts, tn.clock)
}

func (tn *testNode) wsURL() string { return "ws://" + tn.addr + "/v1/ws" }

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func (tn *testNode) dial(t testing.TB) *client.Conn {
	t.Helper()
	c, err := client.Dial(ctxT(t), tn.wsURL(), nil)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.CloseNow() })
	return c
}

// session is a signed-in client with a mirror of its vault.
type session struct {
	c      *client.Conn
	w      *client.Wallet
	s      *client.Session
	mirror *client.Mirror
}

func (tn *testNode) signIn(t testing.TB, w *client.Wallet) *session {
	t.Helper()
	if w == nil {
		var err error
		if w, err = client.NewWallet(); err != nil {
			t.Fatal(err)
		}
	}
	c := tn.dial(t)
	s, err := c.SignIn(ctxT(t), w, client.SignInParams{IssuedAt: tn.clock.Now()}, nil)
	if err != nil {
		t.Fatalf("sign in: %v", err)
	}
	ss := &session{c: c, w: w, s: s, mirror: client.NewMirror()}
	ss.until(t, "snapshot", func(f protocol.ServerFrame) bool { return f.Type == protocol.TypeSnapshot })
	return ss
}

// until applies frames to the mirror until cond holds for one of them.
func (s *session) until(t testing.TB, what string, cond func(protocol.ServerFrame) bool) protocol.ServerFrame {
	t.Helper()
	ctx := ctxT(t)
	for {
		f, err := s.c.Next(ctx)
		if err != nil {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		if err := s.mirror.Apply(f); err != nil {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		if cond(f) {
			return f
		}
	}
}

// untilVersion applies frames until the mirror reaches version v.
func (s *session) untilVersion(t testing.TB, v uint64) {
	t.Helper()
	if s.mirror.Version >= v {
		return
	}
	s.until(t, fmt.Sprintf("version %d", v), func(protocol.ServerFrame) bool { return s.mirror.Version >= v })
}

func (s *session) cmd(t testing.TB, op string, args any) (protocol.ServerFrame, error) {
	t.Helper()
	return s.c.Command(ctxT(t), s.s, op, args)
}

func (s *session) create(t testing.TB, spec protocol.TriggerSpec) (string, uint64) {
	t.Helper()
	ack, err := s.cmd(t, protocol.OpTriggerCreate, spec)
	if err != nil {
		t.Fatalf("create: %v", err)
	}
	var res struct{ ID string }
	_ = json.Unmarshal(ack.Result, &res)
	return res.ID, ack.Version
}

func (tn *testNode) publish(t testing.TB, body string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, "http://"+tn.addr+"/v1/signals", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+testToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b strings.Builder
	buf := make([]byte, 4096)
	n, _ := resp.Body.Read(buf)
	b.Write(buf[:n])
	return resp.StatusCode, b.String()
}

func (tn *testNode) mustPublish(t testing.TB, name string, v float64) {
	t.Helper()
	if code, body := tn.publish(t, fmt.Sprintf(`{"name":%q,"value":%g}`, name, v)); code != http.StatusAccepted {
		t.Fatalf("publish: %d %s", code, body)
	}
}

func wantCode(t testing.TB, err error, code protocol.Code) {
	t.Helper()
	var pe *protocol.Error
	if !errors.As(err, &pe) || pe.Code != code {
		t.Fatalf("err = %v, want code %s", err, code)
	}
}

func f64(v float64) *float64 { return &v }

var swap = protocol.Action{Kind: "swap", Params: json.RawMessage(`{"sell":"ETH","buy":"USDC","amount":"1"}`)}

func dip(threshold float64) protocol.TriggerSpec {
	return protocol.TriggerSpec{Name: "dip", Condition: protocol.Condition{Signal: "ETH/USD", Op: protocol.OpBelow, Threshold: f64(threshold)}, Action: swap}
}

func waitFor(t testing.TB, what string, cond func() bool) {
	t.Helper()
	waitForOr(t, what, cond, func() string { return "" })
}

// waitForOr is waitFor that says, when it times out, what seen returns
// (the last thing the condition saw).
func waitForOr(t testing.TB, what string, cond func() bool, seen func() string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s %s", what, seen())
		}
		time.Sleep(5 * time.Millisecond)
	}
}
