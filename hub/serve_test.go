package hub

import (
	"bytes"
	"context"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/protocol/client"
)

// TestCommandsAreAnsweredInTheOrderSent: a client pipelines commands
// without waiting; the vault gets them in order, and each ack and diff
// comes back in that order.
func TestCommandsAreAnsweredInTheOrderSent(t *testing.T) {
	th := startHub(t, nil)
	c := th.dial(t)
	s, _ := signIn(t, c, nil)
	next(t, c, protocol.TypeSnapshot)
	next(t, c, protocol.TypeSignals)

	const n = 40
	ctx := testCtx(t)
	for i := 0; i < n; i++ {
		f, _, err := s.SignCommand(protocol.OpTriggerPause, protocol.IDArgs{ID: fmt.Sprint(i)})
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Send(ctx, f); err != nil {
			t.Fatal(err)
		}
	}
	var lastAck, lastDiff uint64
	for acks := 0; acks < n; {
		f, err := c.Next(ctx)
		if err != nil {
			t.Fatal(err)
		}
		switch f.Type {
		case protocol.TypeAck:
			acks++
			if f.Seq != uint64(acks) || f.Version <= lastAck {
				t.Fatalf("ack %d: seq %d version %d after version %d", acks, f.Seq, f.Version, lastAck)
			}
			lastAck = f.Version
		case protocol.TypeDiff:
			if f.Version != lastDiff+1 {
				t.Fatalf("diff version %d after %d", f.Version, lastDiff)
			}
			lastDiff = f.Version
		case protocol.TypeError:
			t.Fatalf("refused: %s %s", f.Code, f.Message)
		}
	}
	if got := th.vaults.only().ran(); len(got) != n {
		t.Fatalf("the vault took %d commands, want %d", len(got), n)
	}
}

// TestFramesRefusedBeforeTheVault: what the hub itself refuses gets an
// error frame in the protocol's words, and the socket stays usable.
func TestFramesRefusedBeforeTheVault(t *testing.T) {
	th := startHub(t, nil)
	c := th.dial(t)
	ctx := testCtx(t)

	if err := c.SendRaw(ctx, websocket.MessageText, []byte("{not json")); err != nil {
		t.Fatal(err)
	}
	if f := next(t, c, protocol.TypeError); f.Code != protocol.CodeBadFrame {
		t.Fatalf("bad JSON: %s %q", f.Code, f.Message)
	}
	if err := c.SendRaw(ctx, websocket.MessageBinary, []byte(`{"type":"cmd"}`)); err != nil {
		t.Fatal(err)
	}
	if f := next(t, c, protocol.TypeError); f.Code != protocol.CodeBadFrame || !strings.Contains(f.Message, "text") {
		t.Fatalf("binary frame: %s %q", f.Code, f.Message)
	}
	if err := c.SendRaw(ctx, websocket.MessageText, []byte(`{"type":"hello"}`)); err != nil {
		t.Fatal(err)
	}
	if f := next(t, c, protocol.TypeError); f.Code != protocol.CodeUnknownType {
		t.Fatalf("unknown type: %s %q", f.Code, f.Message)
	}
	f := refusedWith(t, c, protocol.ClientFrame{Type: protocol.TypeCmd, Body: `{"seq":7}`, Sig: "x"})
	if f.Code != protocol.CodeNotSignedIn || f.Seq != 7 {
		t.Fatalf("a command before sign-in: %s seq %d", f.Code, f.Seq)
	}

	_, w := signIn(t, c, nil)
	p := client.SignInParams{Nonce: c.Challenge.Nonce, Domain: "localhost"}
	msg, sig, _ := w.SignIn(p)
	f = refusedWith(t, c, protocol.ClientFrame{Type: protocol.TypeSignIn, Message: msg, Signature: sig})
	if f.Code != protocol.CodeAlreadySignedIn {
		t.Fatalf("a second sign-in on a bound socket: %s", f.Code)
	}
	if got := testutil.ToFloat64(th.metrics.FrameErrors.WithLabelValues(string(protocol.CodeBadFrame))); got != 2 {
		t.Fatalf("bad_frame counted %g times, want 2", got)
	}
}

// TestAFrameOverTheReadLimitClosesWith1009.
func TestAFrameOverTheReadLimitClosesWith1009(t *testing.T) {
	th := startHub(t, func(c *Config) { c.ReadLimit = 1024 })
	c := th.dial(t)
	if err := c.SendRaw(testCtx(t), websocket.MessageText, bytes.Repeat([]byte("a"), 4096)); err != nil {
		t.Fatal(err)
	}
	if code := closedWith(t, c); code != websocket.StatusMessageTooBig {
		t.Fatalf("closed with %d, want 1009", code)
	}
	// The socket library sends the close itself when the limit is passed,
	// so the client may see it before the hub counts it.
	deadline := time.Now().Add(5 * time.Second)
	for testutil.ToFloat64(th.metrics.Disconnects.WithLabelValues("too_large")) != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("too_large disconnects: %g", testutil.ToFloat64(th.metrics.Disconnects.WithLabelValues("too_large")))
		}
		time.Sleep(time.Millisecond)
	}
}

// TestFramesPastTheRateAreRefused: the rate limit counts every frame of
// the socket, and a refused command's seq is echoed.
func TestFramesPastTheRateAreRefused(t *testing.T) {
	th := startHub(t, func(c *Config) { c.CommandRate, c.CommandBurst = 0.001, 3 })
	c := th.dial(t)
	s, _ := signIn(t, c, nil) // the first frame
	ctx := testCtx(t)
	for i := 0; i < 2; i++ {
		if _, err := c.Command(ctx, s, protocol.OpTriggerList, struct{}{}); err != nil {
			t.Fatalf("command %d within the burst: %v", i+1, err)
		}
	}
	_, err := c.Command(ctx, s, protocol.OpTriggerList, struct{}{})
	if pe, ok := err.(*protocol.Error); !ok || pe.Code != protocol.CodeRateLimited {
		t.Fatalf("the frame past the burst: %v", err)
	}
	if got := len(th.vaults.only().ran()); got != 2 {
		t.Fatalf("the vault took %d commands, want 2", got)
	}
}

// TestSocketsNotSignedInArePerAddress: an address may hold only so many
// sockets that have not signed in; signing in frees its place.
func TestSocketsNotSignedInArePerAddress(t *testing.T) {
	th := startHub(t, func(c *Config) { c.MaxPendingPerAddress = 2 })
	a := th.dial(t)
	th.dial(t)
	if _, err := th.tryDial(); dialStatus(err) != http.StatusTooManyRequests {
		t.Fatalf("a third pending socket: %v, want HTTP 429", err)
	}
	signIn(t, a, nil)
	th.dial(t) // a's place is free again
	if got := testutil.ToFloat64(th.metrics.Refused.WithLabelValues("per_address")); got != 1 {
		t.Fatalf("per_address refusals: %g", got)
	}
}

// TestSignInAttemptsArePerAddress: past its budget, an address's sign-in
// is refused before any vault sees it.
func TestSignInAttemptsArePerAddress(t *testing.T) {
	th := startHub(t, func(c *Config) { c.SignInRate, c.SignInBurst = 0.001, 1 })
	signIn(t, th.dial(t), nil)
	c := th.dial(t)
	w, _ := client.NewWallet()
	_, err := c.SignIn(testCtx(t), w, client.SignInParams{}, nil)
	if pe, ok := err.(*protocol.Error); !ok || pe.Code != protocol.CodeRateLimited {
		t.Fatalf("a second sign-in from the address: %v", err)
	}
	th.vaults.mu.Lock()
	n := len(th.vaults.sessions)
	th.vaults.mu.Unlock()
	if n != 1 {
		t.Fatalf("the vaults saw %d sign-ins, want 1", n)
	}
}

// TestConnectionLimitAndOrigin: upgrades past MaxConnections get 503, and
// a browser Origin that is neither the node's host nor a pattern gets 403.
func TestConnectionLimitAndOrigin(t *testing.T) {
	th := startHub(t, func(c *Config) { c.MaxConnections = 1; c.OriginPatterns = []string{"*.example.com"} })
	ctx := testCtx(t)
	if _, err := client.Dial(ctx, th.url, &client.DialOptions{Origin: "https://evil.example.org"}); dialStatus(err) != http.StatusForbidden {
		t.Fatalf("a foreign origin: %v, want HTTP 403", err)
	}
	c, err := client.Dial(ctx, th.url, &client.DialOptions{Origin: "https://app.example.com"})
	if err != nil {
		t.Fatalf("an allowed origin: %v", err)
	}
	defer c.CloseNow()
	if _, err := th.tryDial(); dialStatus(err) != http.StatusServiceUnavailable {
		t.Fatalf("past the connection limit: %v, want HTTP 503", err)
	}
	if got := testutil.ToFloat64(th.metrics.OriginRefused); got != 1 {
		t.Fatalf("origin refusals: %g", got)
	}
}

// TestASocketThatNeverSignsInIsClosed.
func TestASocketThatNeverSignsInIsClosed(t *testing.T) {
	th := startHub(t, func(c *Config) { c.SignInTimeout = 50 * time.Millisecond })
	if code := closedWith(t, th.dial(t)); code != protocol.CloseSignInTimeout {
		t.Fatalf("closed with %d, want %d", code, protocol.CloseSignInTimeout)
	}
}

// TestResumeOnANewSocket: the session outlives its socket; a resume on
// another binds it again, and commands carry on.
func TestResumeOnANewSocket(t *testing.T) {
	th := startHub(t, nil)
	a := th.dial(t)
	s, _ := signIn(t, a, nil)
	ctx := testCtx(t)
	if _, err := a.Command(ctx, s, protocol.OpTriggerList, struct{}{}); err != nil {
		t.Fatal(err)
	}
	a.Close()
	sess := th.vaults.only()
	waitUntil(t, "the closed socket to be detached", func() bool { return sess.subscribers() == 0 })

	b := th.dial(t)
	if err := b.Resume(ctx, s, 1); err != nil {
		t.Fatalf("resume: %v", err)
	}
	if _, err := b.Command(ctx, s, protocol.OpTriggerList, struct{}{}); err != nil {
		t.Fatalf("a command after resume: %v", err)
	}
	if got := sess.subscribers(); got != 1 {
		t.Fatalf("the session sends to %d sockets, want 1", got)
	}
}

// TestRevokeEndsEverySessionOfTheVault: the owner's revoke on a fresh
// socket ends the vault's sessions; their sockets close with 4003 once
// the frames queued before it are out.
func TestRevokeEndsEverySessionOfTheVault(t *testing.T) {
	th := startHub(t, nil)
	a, b := th.dial(t), th.dial(t)
	_, w := signIn(t, a, nil)
	signIn(t, b, w)
	n, err := th.dial(t).Revoke(testCtx(t), w, client.SignInParams{})
	if err != nil || n != 2 {
		t.Fatalf("revoke: %d sessions, %v", n, err)
	}
	for _, c := range []*client.Conn{a, b} {
		if code := closedWith(t, c); code != protocol.CloseSessionEnded {
			t.Fatalf("closed with %d, want %d", code, protocol.CloseSessionEnded)
		}
	}
}

// TestAVaultEndingUnderASocketSaysWhy: a vault that reloaded, or moved to
// another node, closes its sockets with the code that tells the client to
// resume.
func TestAVaultEndingUnderASocketSaysWhy(t *testing.T) {
	th := startHub(t, nil)
	for _, tc := range []struct {
		do   func(Subscriber)
		code websocket.StatusCode
	}{
		{func(s Subscriber) { s.(interface{ Gone() }).Gone() }, websocket.StatusTryAgainLater},
		{func(s Subscriber) { s.(interface{ Moved() }).Moved() }, protocol.CloseVaultMoved},
	} {
		c := th.dial(t)
		s, _ := signIn(t, c, nil)
		th.vaults.mu.Lock()
		sess := th.vaults.sessions[s.ID]
		th.vaults.mu.Unlock()
		sess.each(tc.do)
		if code := closedWith(t, c); code != tc.code {
			t.Fatalf("closed with %d, want %d", code, tc.code)
		}
	}
}

// TestAQueueThatOverflowsClosesTheSocket: when a vault's frames come faster
// than the socket takes them, the connection is closed with 4002 once its
// queue is full, and the vault is told (Send returns false) rather than
// kept waiting.
func TestAQueueThatOverflowsClosesTheSocket(t *testing.T) {
	th := startHub(t, func(c *Config) { c.SendQueue, c.WriteTimeout = 8, time.Second })
	c := th.dial(t)
	signIn(t, c, nil)
	sess := th.vaults.only()
	var sub Subscriber
	sess.each(func(s Subscriber) { sub = s })
	frame := []byte(`{"type":"diff","pad":"` + strings.Repeat("x", 16<<10) + `"}`)
	sent := 0
	for sub.Send(frame) {
		sent++
		if sent > 10000 {
			t.Fatal("the queue never filled")
		}
	}
	if got := testutil.ToFloat64(th.metrics.Disconnects.WithLabelValues("slow_consumer")); got != 1 {
		t.Fatalf("slow_consumer disconnects: %g", got)
	}
	if sub.Send([]byte(`{}`)) {
		t.Fatal("a killed connection took another frame")
	}
	if code := closedWith(t, c); code != protocol.CloseSlowConsumer {
		t.Fatalf("closed with %d, want %d", code, protocol.CloseSlowConsumer)
	}
}

// TestAWriteThatOutlastsWriteTimeoutClosesTheSocket: a client that stops
// reading while its frames still fit the queue blocks the writer once the
// socket's buffers are full; the write watch cuts it short after
// WriteTimeout and closes the connection, so the writer and its frames
// are not held for ever.
func TestAWriteThatOutlastsWriteTimeoutClosesTheSocket(t *testing.T) {
	const timeout = 300 * time.Millisecond
	th := startHub(t, func(c *Config) { c.SendQueue, c.WriteTimeout = 1000, timeout })
	c := stallingDial(t, th, 4096)
	signIn(t, c, nil)
	sess := th.vaults.only()
	var sub Subscriber
	sess.each(func(s Subscriber) { sub = s })
	// 400 frames of 64 KiB: more than the node's send buffer and the
	// client's small receive buffer hold.
	frame := []byte(`{"type":"diff","pad":"` + strings.Repeat("x", 64<<10) + `"}`)
	for i := 0; i < 400; i++ {
		if !sub.Send(frame) {
			t.Fatalf("frame %d refused before the socket's buffers could fill", i)
		}
	}
	began := time.Now()
	timedOut := th.metrics.Disconnects.WithLabelValues("write_timeout")
	for testutil.ToFloat64(timedOut) != 1 {
		if time.Since(began) > 10*time.Second {
			t.Fatal("a writer blocked on a client that does not read was never cut short")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if sub.Send([]byte(`{}`)) {
		t.Fatal("a connection cut short took another frame")
	}
}

// TestSignalsReachSignedInSocketsOnly: a published value goes to the
// vaults and to every signed-in socket, not to one still signing in.
func TestSignalsReachSignedInSocketsOnly(t *testing.T) {
	th := startHub(t, nil)
	th.vaults.signals = make(chan Signal, 1)
	in, out := th.dial(t), th.dial(t)
	signIn(t, in, nil)
	// Live signals start with the signals frame that follows ready.
	next(t, in, protocol.TypeSignals)
	if err := th.bus.Publish(testCtx(t), Signal{Name: "ETH/USD", Value: 2400.5, At: 1}); err != nil {
		t.Fatal(err)
	}
	if f := next(t, in, protocol.TypeSignal); f.Name != "ETH/USD" || f.Value != 2400.5 {
		t.Fatalf("signal frame: %+v", f)
	}
	if s := <-th.vaults.signals; s.Value != 2400.5 {
		t.Fatalf("the vaults got %+v", s)
	}
	// Once in has a later signal, the first one's fan-out is over (the
	// fan-out is one goroutine, in order): out signs in after it, and
	// never gets it.
	if err := th.bus.Publish(testCtx(t), Signal{Name: "SYNC", Value: 1, At: 2}); err != nil {
		t.Fatal(err)
	}
	<-th.vaults.signals
	if f := next(t, in, protocol.TypeSignal); f.Name != "SYNC" {
		t.Fatalf("signal frame: %+v", f)
	}
	signIn(t, out, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	for {
		f, err := out.Next(ctx)
		if err != nil {
			break
		}
		if f.Type == protocol.TypeSignal && f.Name == "ETH/USD" {
			t.Fatal("a socket got a signal published before it signed in")
		}
	}
}

// TestShutdownClosesEverySocketWith1001: shutdown closes each socket with
// "going away", waits for its goroutines, and refuses new upgrades.
func TestShutdownClosesEverySocketWith1001(t *testing.T) {
	th := startHub(t, nil)
	a, b := th.dial(t), th.dial(t)
	signIn(t, a, nil)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := th.h.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	for _, c := range []*client.Conn{a, b} {
		if code := closedWith(t, c); code != websocket.StatusGoingAway {
			t.Fatalf("closed with %d, want 1001", code)
		}
	}
	if _, err := th.tryDial(); dialStatus(err) != http.StatusServiceUnavailable {
		t.Fatalf("an upgrade after shutdown: %v, want HTTP 503", err)
	}
	if n := th.h.Connections(); n != 0 {
		t.Fatalf("%d connections left", n)
	}
}

func TestSourceKey(t *testing.T) {
	for remote, want := range map[string]string{
		"192.0.2.7:5000":                    "192.0.2.7/32",
		"[::ffff:192.0.2.7]:5000":           "192.0.2.7/32",
		"[2001:db8:1:2:3:4:5:6]:443":        "2001:db8:1:2::/64",
		"[2001:db8:1:2:ffff:4:5:6]:443":     "2001:db8:1:2::/64",
		"[2001:db8:1:3::1]:443":             "2001:db8:1:3::/64",
		"not an address":                    "invalid Prefix",
		"198.51.100.1":                      "198.51.100.1/32",
		"[fe80::1%eth0]:1":                  "fe80::/64",
		"[2001:db8:ffff:ffff:ffff::]:65535": "2001:db8:ffff:ffff::/64",
	} {
		if got := SourceKey(remote).String(); got != want {
			t.Errorf("SourceKey(%q) = %s, want %s", remote, got, want)
		}
	}
}
