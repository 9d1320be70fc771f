package cluster

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/rs/zerolog"

	"github.com/spells-dev/spells/cluster/redistest"
	"github.com/spells-dev/spells/protocol"
)

// TestLinkNeedsTheSecret: a node that does not hold the cluster secret
// gets no link, however it claims to be a member; one that does gets one,
// and only one per pair.
func TestLinkNeedsTheSecret(t *testing.T) {
	srv := redistest.Start(t)
	rdb := dial(t, srv.URL())
	hs := httptest.NewUnstartedServer(nil)
	addr := hs.Listener.Addr().String()
	da := newDir(t, rdb, DirectoryConfig{Node: "node-a", Addr: addr, Lease: time.Second, Logger: zerolog.Nop()})
	da.Start(context.Background())
	defer da.Close()
	listener := NewLinks(LinksConfig{Secret: []byte("the right secret"), Logger: zerolog.Nop(), Dir: da})
	hs.Config.Handler = listener
	hs.Start()
	defer hs.Close()
	defer listener.Close()

	dialer := func(secret string) *Links {
		d := newDir(t, rdb, DirectoryConfig{Node: "node-b", Addr: "127.0.0.1:1", Lease: time.Second, Logger: zerolog.Nop()})
		d.Start(context.Background())
		t.Cleanup(d.Close)
		waitFor(t, "node-a in the members", func() bool { _, ok := d.Member("node-a"); return ok })
		waitFor(t, "node-b in node-a's members", func() bool { _, ok := da.Member("node-b"); return ok })
		l := NewLinks(LinksConfig{Dir: d, Secret: []byte(secret), Logger: zerolog.Nop()})
		t.Cleanup(l.Close)
		return l
	}
	wrong := dialer("a wrong secret")
	_, err := wrong.link(context.Background(), "node-a")
	if pe := protocol.AsError(err); pe == nil || pe.Code != protocol.CodeNodeUnreachable {
		t.Fatalf("link with a wrong secret: %v", err)
	}
	if testutil.ToFloat64(listener.m.AuthFailed) != 1 {
		t.Fatal("the refused handshake was not counted")
	}
	right := dialer("the right secret")
	lk, err := right.link(context.Background(), "node-a")
	if err != nil {
		t.Fatalf("link with the secret: %v", err)
	}
	again, err := right.link(context.Background(), "node-a")
	if err != nil || again != lk {
		t.Fatalf("a second link to the same node: %v", err)
	}
	waitFor(t, "the listener's side of the link", func() bool { return testutil.ToFloat64(listener.m.Links) == 1 })
}

// TestLinkHandshakesAreBounded: a handshake from an address that is no
// member's is refused before the upgrade; from a member's address at most
// maxHandshakesPerAddr run at once (the next is refused before the
// upgrade), and each stalled one ends by itself.
func TestLinkHandshakesAreBounded(t *testing.T) {
	srv := redistest.Start(t)
	rdb := dial(t, srv.URL())
	d := newDir(t, rdb, DirectoryConfig{Node: "node-a", Addr: "127.0.0.1:1", Logger: zerolog.Nop()})
	d.Start(context.Background())
	defer d.Close()
	l := NewLinks(LinksConfig{Secret: []byte("s"), Logger: zerolog.Nop(), Dir: d})
	hs := httptest.NewServer(l)
	defer hs.Close()
	defer l.Close()
	waitFor(t, "the directory to list its member", func() bool { return len(d.Members()) == 1 })
	url := "ws" + strings.TrimPrefix(hs.URL, "http")
	stranger := &http.Client{Transport: &http.Transport{DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}).DialContext}}
	_, resp, err := websocket.Dial(context.Background(), url, &websocket.DialOptions{Subprotocols: []string{linkProto}, HTTPClient: stranger})
	if err == nil || resp == nil || resp.StatusCode != http.StatusForbidden {
		t.Fatalf("a handshake from no member's address: %v %v", resp, err)
	}
	var held []*websocket.Conn
	for i := 0; i < maxHandshakesPerAddr; i++ {
		c, _, err := websocket.Dial(context.Background(), url, &websocket.DialOptions{Subprotocols: []string{linkProto}})
		if err != nil {
			t.Fatalf("handshake %d: %v", i, err)
		}
		held = append(held, c)
	}
	_, resp, err = websocket.Dial(context.Background(), url, &websocket.DialOptions{Subprotocols: []string{linkProto}})
	if err == nil || resp == nil || resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("handshake past the bound: %v %v", resp, err)
	}
	// The stalled ones are closed by their deadline, and the slots free.
	for _, c := range held {
		ctx, cancel := context.WithTimeout(context.Background(), 2*handshakeTimeout)
		for {
			if _, _, err := c.Read(ctx); err != nil {
				break
			}
		}
		cancel()
	}
	c, _, err := websocket.Dial(context.Background(), url, &websocket.DialOptions{Subprotocols: []string{linkProto}})
	if err != nil {
		t.Fatalf("after the stalled handshakes ended: %v", err)
	}
	c.CloseNow()
}

// TestAProofAnswersOneChallengeInOneRole: a proof is bound to who proves,
// the challenge and both ids, so one seen on the wire cannot be played
// back in the other role, to another node, or for another challenge.
func TestAProofAnswersOneChallengeInOneRole(t *testing.T) {
	l := &Links{cfg: LinksConfig{Secret: []byte("s")}}
	other := &Links{cfg: LinksConfig{Secret: []byte("t")}}
	c := challenge()
	p := l.proof("dialer", c, "node-b", "node-a")
	if len(p) != 64 || p != l.proof("dialer", c, "node-b", "node-a") {
		t.Fatalf("proof %q is not a stable HMAC-SHA256", p)
	}
	for name, q := range map[string]string{
		"the other role":    l.proof("listener", c, "node-b", "node-a"),
		"another challenge": l.proof("dialer", challenge(), "node-b", "node-a"),
		"another dialer":    l.proof("dialer", c, "node-c", "node-a"),
		"the ids swapped":   l.proof("dialer", c, "node-a", "node-b"),
		"another secret":    other.proof("dialer", c, "node-b", "node-a"),
		"ids run together":  l.proof("dialer", c, "node-b\x00node", "a"),
	} {
		if q == p {
			t.Errorf("the proof for %s is the same", name)
		}
	}
	if challenge() == c {
		t.Fatal("two challenges are the same")
	}
}
