package main

import (
	"bytes"
	"errors"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/coder/websocket"

	"github.com/spells-dev/spells/hub"
	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/protocol/client"
)

// syncBuffer is a log destination tests can read while the node writes.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// TestRefusalsAreLogged checks that a refused command is answered, logged
// with its code, and leaves the vault as it was; also after a reconnect.
func TestRefusalsAreLogged(t *testing.T) {
	logs := &syncBuffer{}
	opts := testOptions(t)
	opts.LogLevel, opts.logOut = "info", logs
	tn := startNode(t, opts, nil)
	a := tn.signIn(t, nil)
	f, seq, _ := a.s.SignCommand(protocol.OpTriggerCreate, dip(2500))
	if _, err := a.c.SendCommand(ctxT(t), f, seq); err != nil {
		t.Fatal(err)
	}
	a.untilVersion(t, 1)
	// The same command again on a new socket after a reconnect.
	c := tn.dial(t)
	if err := c.Resume(ctxT(t), a.s, a.mirror.Version); err != nil {
		t.Fatal(err)
	}
	_, err := c.SendCommand(ctxT(t), f, seq)
	wantCode(t, err, protocol.CodeBadSeq)
	_, err = c.Command(ctxT(t), a.s, protocol.OpTriggerCreate, protocol.TriggerSpec{Name: "x",
		Condition: protocol.Condition{Signal: "ETH/USD", Op: "sideways", Threshold: f64(1)}, Action: swap})
	wantCode(t, err, protocol.CodeInvalidTrigger)
	waitFor(t, "the refusals in the log", func() bool {
		l := logs.String()
		return strings.Contains(l, `"code":"bad_seq"`) && strings.Contains(l, `"code":"invalid_trigger"`) &&
			strings.Contains(l, "command refused")
	})
	fresh := tn.signIn(t, a.w)
	if fresh.mirror.Version != 1 || len(fresh.mirror.Triggers) != 1 {
		t.Fatalf("refusals changed the vault: version %d, %d triggers", fresh.mirror.Version, len(fresh.mirror.Triggers))
	}
}

func TestSocketWithoutSignInIsClosed(t *testing.T) {
	opts := testOptions(t)
	opts.hubTweak = func(c *hub.Config) { c.SignInTimeout = time.Second } // room for a sign-in on a loaded -race run
	tn := startNode(t, opts, nil)
	w, _ := client.NewWallet()
	s := tn.signIn(t, w) // connected before c, so it has lived longer when c is closed
	c := tn.dial(t)
	waitFor(t, "the close", func() bool { return c.Err() != nil })
	if got := websocket.CloseStatus(c.Err()); got != protocol.CloseSignInTimeout {
		t.Fatalf("close status %d, want %d", got, protocol.CloseSignInTimeout)
	}
	// The signed-in socket outlived the timeout.
	if _, err := s.cmd(t, protocol.OpTriggerList, struct{}{}); err != nil {
		t.Fatal(err)
	}
}

func TestSecondSignInOnASocketRefused(t *testing.T) {
	tn := startNode(t, testOptions(t), nil)
	a := tn.signIn(t, nil)
	w, _ := client.NewWallet()
	_, err := a.c.SignIn(ctxT(t), w, client.SignInParams{}, nil)
	wantCode(t, err, protocol.CodeAlreadySignedIn)
}

// TestHeartbeatDropsADeadPeer: a client that stops reading cannot answer
// pings; the node notices within a ping interval plus the write timeout
// and closes the connection.
func TestHeartbeatDropsADeadPeer(t *testing.T) {
	opts := testOptions(t)
	opts.hubTweak = func(c *hub.Config) { c.PingInterval, c.WriteTimeout = 50*time.Millisecond, 200*time.Millisecond }
	tn := startNode(t, opts, nil)
	live := tn.signIn(t, nil) // reads all the time: answers pings
	c, err := client.Dial(ctxT(t), tn.wsURL(), &client.DialOptions{Buffer: 1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseNow)
	w, _ := client.NewWallet()
	// ready + snapshot + signals fill the one-frame buffer: the client's
	// reader blocks and no longer answers pings.
	tn.mustPublish(t, "ETH/USD", 1)
	if _, err := c.SignIn(ctxT(t), w, client.SignInParams{}, nil); err != nil {
		t.Fatal(err)
	}
	lost := tn.n.hubMetrics.Disconnects.WithLabelValues("heartbeat")
	waitFor(t, "the dead peer to be dropped", func() bool { return testutil.ToFloat64(lost) == 1 })
	if _, err := live.cmd(t, protocol.OpTriggerList, struct{}{}); err != nil {
		t.Fatalf("the live connection was dropped too: %v", err)
	}
}

func TestConnectionLimitRefusesCleanly(t *testing.T) {
	opts := testOptions(t)
	opts.MaxConns = 2
	tn := startNode(t, opts, nil)
	a, b := tn.dial(t), tn.dial(t)
	_, err := client.Dial(ctxT(t), tn.wsURL(), nil)
	var de *client.DialError
	if !errors.As(err, &de) || de.Status != http.StatusServiceUnavailable {
		t.Fatalf("third connection: %v, want HTTP 503", err)
	}
	if got := testutil.ToFloat64(tn.n.hubMetrics.Refused.WithLabelValues("connection_limit")); got != 1 {
		t.Fatalf("spells_ws_refused_total = %g", got)
	}
	a.CloseNow()
	waitFor(t, "room for a new connection", func() bool { return tn.n.hub.Connections() < 2 })
	c, err := client.Dial(ctxT(t), tn.wsURL(), nil)
	if err != nil {
		t.Fatalf("after a close: %v", err)
	}
	c.CloseNow()
	b.CloseNow()
}
