package main

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/protocol/client"
)

// fromAddr returns dial options whose sockets come from the loopback
// address ip (anything in 127.0.0.0/8 reaches the node).
func fromAddr(ip string) *client.DialOptions {
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	return &client.DialOptions{HTTPClient: &http.Client{Transport: &http.Transport{DialContext: d.DialContext}}}
}

// TestPendingSocketsLimitedPerAddress: an address holds at most
// --max-pending-per-ip sockets that have not signed in; one more gets HTTP
// 429 (counted), other addresses are not affected, and a socket that
// signs in no longer counts.
func TestPendingSocketsLimitedPerAddress(t *testing.T) {
	opts := testOptions(t)
	opts.MaxPendingPerIP = 3
	tn := startNode(t, opts, nil)
	var held []*client.Conn
	for i := 0; i < 3; i++ {
		c, err := client.Dial(ctxT(t), tn.wsURL(), fromAddr("127.0.0.7"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(c.CloseNow)
		held = append(held, c)
	}
	_, err := client.Dial(ctxT(t), tn.wsURL(), fromAddr("127.0.0.7"))
	var de *client.DialError
	if !errors.As(err, &de) || de.Status != http.StatusTooManyRequests {
		t.Fatalf("fourth pending socket: %v, want HTTP 429", err)
	}
	if got := testutil.ToFloat64(tn.n.hubMetrics.Refused.WithLabelValues("per_address")); got != 1 {
		t.Fatalf("spells_ws_refused_total{reason=per_address} = %g, want 1", got)
	}
	other, err := client.Dial(ctxT(t), tn.wsURL(), fromAddr("127.0.0.8"))
	if err != nil {
		t.Fatalf("another address was refused: %v", err)
	}
	other.CloseNow()
	w, _ := client.NewWallet()
	if _, err := held[0].SignIn(ctxT(t), w, client.SignInParams{}, nil); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "a signed-in socket to stop counting", func() bool {
		c, err := client.Dial(ctxT(t), tn.wsURL(), fromAddr("127.0.0.7"))
		if err != nil {
			return false
		}
		c.CloseNow()
		return true
	})
}

// TestSignInAttemptsLimitedPerAddress: sign-in attempts from one address
// beyond --signin-rate-per-ip (burst --signin-burst-per-ip) get a
// retryable rate_limited error, counted, while another address signs in
// at once.
func TestSignInAttemptsLimitedPerAddress(t *testing.T) {
	opts := testOptions(t)
	opts.SignInRatePerIP, opts.SignInBurstPerIP = 0.5, 3
	tn := startNode(t, opts, nil)
	limited := 0
	for i := 0; i < 6; i++ {
		c, err := client.Dial(ctxT(t), tn.wsURL(), fromAddr("127.0.0.9"))
		if err != nil {
			t.Fatal(err)
		}
		w, _ := client.NewWallet()
		_, err = c.SignIn(ctxT(t), w, client.SignInParams{}, nil)
		c.CloseNow()
		if pe := protocol.AsError(err); pe != nil && pe.Code == protocol.CodeRateLimited && protocol.Retryable(pe.Code) {
			limited++
		} else if err != nil {
			t.Fatalf("sign-in %d: %v", i, err)
		}
	}
	if limited != 3 {
		t.Fatalf("%d of 6 sign-ins rate limited, want 3 (burst 3)", limited)
	}
	if got := testutil.ToFloat64(tn.n.hubMetrics.SignInsLimited); got != 3 {
		t.Fatalf("spells_signin_rate_limited_total = %g, want 3", got)
	}
	c, err := client.Dial(ctxT(t), tn.wsURL(), fromAddr("127.0.0.10"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	w, _ := client.NewWallet()
	if _, err := c.SignIn(ctxT(t), w, client.SignInParams{}, nil); err != nil {
		t.Fatalf("another address: %v", err)
	}
}

// TestErrorsEchoTheCommandsSeq: a refused command's error carries the seq
// it was sent with, 0 included; a refusal of a frame that is no command
// carries none.
func TestErrorsEchoTheCommandsSeq(t *testing.T) {
	tn := startNode(t, testOptions(t), nil)
	a := tn.signIn(t, nil)
	f, _, _ := a.s.SignCommandSeq(0, protocol.OpTriggerList, struct{}{})
	raw := rawAnswer(t, tn, a, f)
	if !strings.Contains(raw, `"code":"bad_command"`) || !strings.Contains(raw, `"seq":0`) {
		t.Fatalf("seq 0: %s, want bad_command with \"seq\":0", raw)
	}
	raw = rawAnswer(t, tn, a, protocol.ClientFrame{Type: protocol.TypeSignIn, Message: "x"})
	if !strings.Contains(raw, `"code":"already_signed_in"`) || strings.Contains(raw, `"seq"`) {
		t.Fatalf("a second sign-in: %s, want already_signed_in without seq", raw)
	}
}

// rawAnswer sends f on a fresh socket resumed into a's session and
// returns the first error frame as the node wrote it.
func rawAnswer(t *testing.T, tn *testNode, a *session, f protocol.ClientFrame) string {
	t.Helper()
	ws, _, err := websocket.Dial(ctxT(t), tn.wsURL(), &websocket.DialOptions{Subprotocols: []string{protocol.Subprotocol}})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.CloseNow()
	ctx := ctxT(t)
	_, ch, _ := ws.Read(ctx)
	challenge, _ := protocol.DecodeServerFrame(ch)
	resume, _ := a.s.SignResumeSnapshot(challenge.Nonce)
	for _, out := range []protocol.ClientFrame{resume, f} {
		b, _ := json.Marshal(out)
		if err := ws.Write(ctx, websocket.MessageText, b); err != nil {
			t.Fatal(err)
		}
	}
	for {
		_, msg, err := ws.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, line := range strings.Split(string(msg), "\n") {
			if strings.Contains(line, `"type":"error"`) {
				return line
			}
		}
	}
}

// TestSignalsFrameAlwaysFollowsReady: a dashboard gets the signals frame
// after ready even when the node has no history yet (an empty series).
func TestSignalsFrameAlwaysFollowsReady(t *testing.T) {
	tn := startNode(t, testOptions(t), nil)
	c := tn.dial(t)
	w, _ := client.NewWallet()
	if _, err := c.SignIn(ctxT(t), w, client.SignInParams{}, nil); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	for {
		f, err := c.Next(ctx)
		if err != nil {
			t.Fatalf("no signals frame: %v", err)
		}
		if f.Type == protocol.TypeSignals {
			if len(f.Series) != 0 {
				t.Fatalf("series %v on a node without signals", f.Series)
			}
			return
		}
	}
}

// TestReplayedSignInIsNonceReused: a captured sign-in sent again on
// another socket is refused as what it is, a replay (nonce_reused), not as
// a nonce of another socket: the vault checks its record before the
// socket's nonce.
func TestReplayedSignInIsNonceReused(t *testing.T) {
	opts := testOptions(t)
	tn := startNode(t, opts, nil)
	c := tn.dial(t)
	w, _ := client.NewWallet()
	d, _ := protocol.NewDelegate()
	p := client.SignInParams{Domain: c.Challenge.Domains[0], ChainID: 1, Nonce: c.Challenge.Nonce, Delegate: d, IssuedAt: time.Now()}
	msg, sig, _ := w.SignIn(p)
	frame := protocol.ClientFrame{Type: protocol.TypeSignIn, Message: msg, Signature: sig}
	if err := c.Send(ctxT(t), frame); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Next(ctxT(t)); err != nil { // ready
		t.Fatal(err)
	}
	replay := tn.dial(t)
	if err := replay.Send(ctxT(t), frame); err != nil {
		t.Fatal(err)
	}
	f, err := replay.Next(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	wantCode(t, f.Err(), protocol.CodeNonceReused)
}

// TestNonceFromBeforeARestartIsExpired: a resume naming a nonce the node
// issued before it last started is refused as nonce_expired (reconnect for
// a new one), before any vault is opened.
func TestNonceFromBeforeARestartIsExpired(t *testing.T) {
	tn := startNode(t, testOptions(t), nil)
	a := tn.signIn(t, nil)
	old := tn.dial(t).Challenge.Nonce
	time.Sleep(2 * time.Millisecond) // nonces carry their issue time in milliseconds
	tn = tn.restart()
	c := tn.dial(t)
	f, _ := a.s.SignResumeSnapshot(old)
	if err := c.Send(ctxT(t), f); err != nil {
		t.Fatal(err)
	}
	fr, err := c.Next(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	wantCode(t, fr.Err(), protocol.CodeNonceExpired)
}

// TestSignOutAndSignOutEverywhere: session.end closes every socket of the
// sending session with 4003 after its answer, and only those; a revoke
// signed by the owner's wallet, sent on a fresh socket, closes every
// other session's sockets with 4003, and their keys are refused after.
func TestSignOutAndSignOutEverywhere(t *testing.T) {
	tn := startNode(t, testOptions(t), nil)
	a := tn.signIn(t, nil)
	tab := tn.dial(t) // a second tab of a's session
	if err := tab.Resume(ctxT(t), a.s, 0); err != nil {
		t.Fatal(err)
	}
	other := tn.signIn(t, a.w) // another session of the same vault
	if _, err := a.cmd(t, protocol.OpSessionEnd, struct{}{}); err != nil {
		t.Fatalf("session.end: %v", err)
	}
	for _, c := range []*client.Conn{a.c, tab} {
		waitFor(t, "the session's sockets to close", func() bool { return c.Err() != nil })
		if code := websocket.CloseStatus(c.Err()); code != protocol.CloseSessionEnded {
			t.Fatalf("a signed-out socket closed with %d (%v), want 4003", code, c.Err())
		}
	}
	if _, err := other.cmd(t, protocol.OpTriggerList, struct{}{}); err != nil {
		t.Fatalf("the other session was ended too: %v", err)
	}
	fresh := tn.dial(t)
	n, err := fresh.Revoke(ctxT(t), a.w, client.SignInParams{IssuedAt: time.Now()})
	if err != nil || n != 1 {
		t.Fatalf("revoke: %d sessions, %v; want 1", n, err)
	}
	waitFor(t, "the revoked session's socket to close", func() bool { return other.c.Err() != nil })
	if code := websocket.CloseStatus(other.c.Err()); code != protocol.CloseSessionEnded {
		t.Fatalf("a revoked socket closed with %d, want 4003", code)
	}
	again := tn.dial(t)
	wantCode(t, again.Resume(ctxT(t), other.s, 0), protocol.CodeSessionUnknown)
}

// TestSignalHistorySurvivesARestart: the node keeps recent signal points
// in a file of its own, so charts are there again after a restart, for a
// page that has not signed in (GET /v1/history) and for a dashboard (the
// signals frame).
func TestSignalHistorySurvivesARestart(t *testing.T) {
	tn := startNode(t, testOptions(t), nil)
	tn.mustPublish(t, "ETH/USD", 2501)
	waitFor(t, "the value in the history", func() bool { _, ok := tn.n.hub.History().Latest("ETH/USD"); return ok })
	tn = tn.restart()
	resp, err := http.Get("http://" + tn.addr + "/v1/history")
	if err != nil {
		t.Fatal(err)
	}
	var body struct{ Series map[string][]protocol.Point }
	err = json.NewDecoder(resp.Body).Decode(&body)
	resp.Body.Close()
	if err != nil || len(body.Series["ETH/USD"]) != 1 || body.Series["ETH/USD"][0].Value != 2501 {
		t.Fatalf("GET /v1/history after a restart: %+v, %v", body, err)
	}
	c := tn.dial(t)
	w, _ := client.NewWallet()
	if _, err := c.SignIn(ctxT(t), w, client.SignInParams{}, nil); err != nil {
		t.Fatal(err)
	}
	for {
		f, err := c.Next(ctxT(t))
		if err != nil {
			t.Fatal(err)
		}
		if f.Type == protocol.TypeSignals {
			if pts := f.Series["ETH/USD"]; len(pts) != 1 || pts[0].Value != 2501 {
				t.Fatalf("signals frame after a restart: %v", f.Series)
			}
			return
		}
	}
}

// TestHistoryIsRationed: GET /v1/history answers one address about once a
// second (a burst of 5), then 429 with Retry-After.
func TestHistoryIsRationed(t *testing.T) {
	tn := startNode(t, testOptions(t), nil)
	tn.mustPublish(t, "ETH/USD", 2500)
	var codes []int
	for i := 0; i < 8; i++ {
		resp, err := http.Get("http://" + tn.addr + "/v1/history")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		codes = append(codes, resp.StatusCode)
		if resp.StatusCode == http.StatusTooManyRequests && resp.Header.Get("Retry-After") == "" {
			t.Fatal("a 429 without Retry-After")
		}
	}
	if codes[0] != http.StatusOK || codes[len(codes)-1] != http.StatusTooManyRequests {
		t.Fatalf("answers to 8 quick requests: %v", codes)
	}
}
