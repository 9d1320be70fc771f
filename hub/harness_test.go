package hub

import (
	"context"
	"errors"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/protocol/client"
)

// testHub is a Hub on a loopback HTTP server, with fakeVaults behind it.
type testHub struct {
	h       *Hub
	vaults  *fakeVaults
	bus     *MemoryBus
	metrics *Metrics
	url     string // ws://…/v1/ws
}

// startHub serves a hub configured by mod (nil: defaults) until the test
// ends, then shuts it down and checks that it stopped.
func startHub(t *testing.T, mod func(*Config)) *testHub {
	t.Helper()
	th := &testHub{vaults: newFakeVaults(), bus: NewMemoryBus(0, nil), metrics: NewMetrics(nil)}
	cfg := Config{
		Vaults:  th.vaults,
		Nonces:  protocol.NewNonceIssuer([]byte("test-node-key-0123456789abcdef!!")),
		Bus:     th.bus,
		Domains: []string{"localhost"},
		Metrics: th.metrics,
		// No per-address limits unless a test sets them: every test
		// client comes from 127.0.0.1.
		MaxPendingPerAddress: -1,
		SignInRate:           -1,
	}
	if mod != nil {
		mod(&cfg)
	}
	th.h = New(cfg)
	srv := httptest.NewServer(th.h)
	th.url = "ws" + strings.TrimPrefix(srv.URL, "http") + "/v1/ws"
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := th.h.Shutdown(ctx); err != nil {
			t.Errorf("hub shutdown: %v", err)
		}
		srv.Close()
		th.bus.Close()
	})
	return th
}

func (th *testHub) dial(t *testing.T) *client.Conn {
	t.Helper()
	c, err := th.tryDial()
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.CloseNow)
	return c
}

func (th *testHub) tryDial() (*client.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return client.Dial(ctx, th.url, nil)
}

// signIn signs c in as w (a fresh wallet when nil).
func signIn(t *testing.T, c *client.Conn, w *client.Wallet) (*client.Session, *client.Wallet) {
	t.Helper()
	if w == nil {
		var err error
		if w, err = client.NewWallet(); err != nil {
			t.Fatal(err)
		}
	}
	s, err := c.SignIn(testCtx(t), w, client.SignInParams{}, nil)
	if err != nil {
		t.Fatalf("sign-in: %v", err)
	}
	return s, w
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// next returns c's next frame of type typ, skipping others.
func next(t *testing.T, c *client.Conn, typ string) protocol.ServerFrame {
	t.Helper()
	ctx := testCtx(t)
	for {
		f, err := c.Next(ctx)
		if err != nil {
			t.Fatalf("waiting for a %s frame: %v", typ, err)
		}
		if f.Type == typ {
			return f
		}
	}
}

// closedWith reads c until the server closes it, and returns the close
// code.
func closedWith(t *testing.T, c *client.Conn) websocket.StatusCode {
	t.Helper()
	ctx := testCtx(t)
	for {
		if _, err := c.Next(ctx); err != nil {
			if ctx.Err() != nil {
				t.Fatal("the socket was not closed")
			}
			return websocket.CloseStatus(c.Err())
		}
	}
}

// refusedWith sends f and returns the error frame that answers it.
func refusedWith(t *testing.T, c *client.Conn, f protocol.ClientFrame) protocol.ServerFrame {
	t.Helper()
	if err := c.Send(testCtx(t), f); err != nil {
		t.Fatal(err)
	}
	return next(t, c, protocol.TypeError)
}

func dialStatus(err error) int {
	var de *client.DialError
	if errors.As(err, &de) {
		return de.Status
	}
	return 0
}
