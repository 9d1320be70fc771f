package hub

import (
	"context"
	"encoding/json"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/ethereum/go-ethereum/common"

	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/protocol/client"
)

// The two halves of a forwarded session, each against a stand-in for the
// other: the entry (a socket whose vault lives on another node) with a
// fake Router, and the vault's node (ServeForwarded) with a fake
// Upstream.

// fakeRouter routes every vault to one fake node, or refuses with err.
type fakeRouter struct {
	err    error
	routes chan common.Address // every vault routed
	node   *fakeNode
}

func (r *fakeRouter) Route(ctx context.Context, vault common.Address) (Forwarder, error) {
	r.routes <- vault
	if r.err != nil {
		return nil, r.err
	}
	return r.node, nil
}

// fakeNode answers a forwarded sign-in as the vault's node would: with
// ready and Bound, or with refuse (an error frame) and an unbound end.
type fakeNode struct {
	refuse  *protocol.Error
	streams chan *fakeStream
}

func (n *fakeNode) Open(ctx context.Context, nonce, remote string, down Downstream) (Stream, error) {
	s := &fakeStream{node: n, nonce: nonce, down: down, frames: make(chan protocol.ClientFrame, 64)}
	n.streams <- s
	return s, nil
}

type fakeStream struct {
	node   *fakeNode
	nonce  string
	down   Downstream
	frames chan protocol.ClientFrame
	mu     sync.Mutex
	closed bool
}

func (s *fakeStream) Send(frame []byte, binary bool) error {
	f, err := protocol.DecodeClientFrame(frame)
	if err != nil {
		return err
	}
	s.frames <- f
	switch {
	case f.Type == protocol.TypeSignIn && s.node.refuse != nil:
		s.down.Deliver(mustJSON(protocol.NewErrorFrame(s.node.refuse, nil)))
		s.down.Closed(StreamUnbound, "not bound")
	case f.Type == protocol.TypeSignIn:
		s.down.Deliver(mustJSON(protocol.Ready{Type: protocol.TypeReady, Vault: "0x01", Session: s.nonce}))
		s.down.Bound()
	case f.Type == protocol.TypeCmd:
		seq := peekSeq(f.Body)
		s.down.Deliver(mustJSON(protocol.Ack{Type: protocol.TypeAck, Seq: *seq, Version: *seq}))
	}
	return nil
}

func (s *fakeStream) Close() {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
}

func forwarding(t *testing.T, r *fakeRouter) *testHub {
	r.routes = make(chan common.Address, 16)
	if r.node != nil {
		r.node.streams = make(chan *fakeStream, 16)
	}
	return startHub(t, func(c *Config) { c.Router = r })
}

// TestTheEntryRelaysABoundSession: the sign-in goes to the vault's node
// with this socket's nonce, the local vaults never see it, every later
// frame follows it there, and the vault's node ending the session closes
// the socket with its code.
func TestTheEntryRelaysABoundSession(t *testing.T) {
	r := &fakeRouter{node: &fakeNode{}}
	th := forwarding(t, r)
	c := th.dial(t)
	s, w := signIn(t, c, nil)
	if got := <-r.routes; got != w.Address() {
		t.Fatalf("routed %s, want the signer's vault %s", got, w.Address())
	}
	st := <-r.node.streams
	if f := <-st.frames; f.Type != protocol.TypeSignIn || st.nonce != c.Challenge.Nonce {
		t.Fatalf("the vault's node got %s with nonce %q, want the sign-in with %q", f.Type, st.nonce, c.Challenge.Nonce)
	}
	if _, err := c.Command(testCtx(t), s, protocol.OpTriggerList, struct{}{}); err != nil {
		t.Fatalf("a forwarded command: %v", err)
	}
	if f := <-st.frames; f.Type != protocol.TypeCmd {
		t.Fatalf("the vault's node got %s, want the command", f.Type)
	}
	th.vaults.mu.Lock()
	local := len(th.vaults.sessions)
	th.vaults.mu.Unlock()
	if local != 0 {
		t.Fatalf("the entry's own vaults saw %d sign-ins", local)
	}
	st.down.Closed(protocol.CloseNodeLink, "link lost")
	if code := closedWith(t, c); code != protocol.CloseNodeLink {
		t.Fatalf("closed with %d, want %d", code, protocol.CloseNodeLink)
	}
}

// TestAForwardedRefusalLeavesTheSocketOpen: a sign-in the vault's node
// refuses is answered, the socket stays unbound, and its next sign-in is
// routed afresh.
func TestAForwardedRefusalLeavesTheSocketOpen(t *testing.T) {
	r := &fakeRouter{node: &fakeNode{refuse: protocol.Errorf(protocol.CodeBadSignature, "no")}}
	th := forwarding(t, r)
	c := th.dial(t)
	w, _ := client.NewWallet()
	for i := 0; i < 2; i++ {
		_, err := c.SignIn(testCtx(t), w, client.SignInParams{}, nil)
		if pe, ok := err.(*protocol.Error); !ok || pe.Code != protocol.CodeBadSignature {
			t.Fatalf("attempt %d: %v", i+1, err)
		}
		<-r.routes
	}
}

// TestAnUnreachableNodeIsRetryable: a vault whose node cannot be reached
// gets the router's error, and the socket stays open.
func TestAnUnreachableNodeIsRetryable(t *testing.T) {
	r := &fakeRouter{err: protocol.Errorf(protocol.CodeNodeUnreachable, "node-2 is not answering")}
	th := forwarding(t, r)
	c := th.dial(t)
	w, _ := client.NewWallet()
	_, err := c.SignIn(testCtx(t), w, client.SignInParams{}, nil)
	pe, ok := err.(*protocol.Error)
	if !ok || pe.Code != protocol.CodeNodeUnreachable {
		t.Fatalf("sign-in: %v", err)
	}
	if !protocol.Retryable(pe.Code) {
		t.Fatal("node_unreachable is not retryable")
	}
}

// fakeUp is the vault node's end of a stream: what the link would carry
// back to the entry.
type fakeUp struct {
	frames chan protocol.ServerFrame
	bound  chan struct{}
	closed chan websocket.StatusCode
	once   sync.Once
}

func newFakeUp() *fakeUp {
	return &fakeUp{frames: make(chan protocol.ServerFrame, 1024), bound: make(chan struct{}), closed: make(chan websocket.StatusCode, 1)}
}

func (u *fakeUp) Write(msg []byte) error {
	frames, err := protocol.DecodeServerMessage(msg)
	for _, f := range frames {
		u.frames <- f
	}
	return err
}

func (u *fakeUp) Bound() { u.once.Do(func() { close(u.bound) }) }

func (u *fakeUp) Close(code websocket.StatusCode, reason string) {
	select {
	case u.closed <- code:
	default:
	}
}

func (u *fakeUp) next(t *testing.T, typ string) protocol.ServerFrame {
	t.Helper()
	for {
		select {
		case f := <-u.frames:
			if f.Type == typ {
				return f
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("no %s frame on the stream", typ)
		}
	}
}

// forwardedSignIn is a sign-in frame for nonce, as the entry relays it.
func forwardedSignIn(t *testing.T, nonce string) ([]byte, *client.Session) {
	t.Helper()
	w, _ := client.NewWallet()
	d, err := protocol.NewDelegate()
	if err != nil {
		t.Fatal(err)
	}
	msg, sig, err := w.SignIn(client.SignInParams{Domain: "localhost", Nonce: nonce, Delegate: d})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(protocol.ClientFrame{Type: protocol.TypeSignIn, Message: msg, Signature: sig})
	return b, &client.Session{Vault: w.Address().Hex(), ID: nonce, Delegate: d}
}

// TestAForwardedSessionIsServedLikeASocket: on the vault's node a stream
// is a connection like any other: the sign-in with the entry's nonce binds
// it, commands are acked through it, it gets no signals of its own (the
// entry sends them), and its end detaches it from the vault.
func TestAForwardedSessionIsServedLikeASocket(t *testing.T) {
	th := startHub(t, nil)
	nonce := th.h.cfg.Nonces.Issue(time.Now())
	up := newFakeUp()
	fw, err := th.h.ServeForwarded(up, nonce, "192.0.2.1:5000")
	if err != nil {
		t.Fatal(err)
	}
	frame, s := forwardedSignIn(t, nonce)
	fw.Frame(frame, false)
	up.next(t, protocol.TypeReady)
	select {
	case <-up.bound:
	case <-time.After(5 * time.Second):
		t.Fatal("the stream was never told it is bound")
	}
	cmd, seq, err := s.SignCommand(protocol.OpTriggerList, struct{}{})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(cmd)
	fw.Frame(b, false)
	if f := up.next(t, protocol.TypeAck); f.Seq != seq {
		t.Fatalf("ack seq %d, want %d", f.Seq, seq)
	}
	if err := th.bus.Publish(testCtx(t), Signal{Name: "X", Value: 1, At: 1}); err != nil {
		t.Fatal(err)
	}
	sess := th.vaults.only()
	fw.Close()
	waitUntil(t, "the stream to be detached from its session", func() bool { return sess.subscribers() == 0 })
	for len(up.frames) > 0 {
		if f := <-up.frames; f.Type == protocol.TypeSignal {
			t.Fatal("a forwarded session got a signal from the vault's node")
		}
	}
}

// TestAForwardedBacklogClosesTheStream: a stream whose frames pile up
// behind a busy vault is closed (1013) rather than hold up the link.
func TestAForwardedBacklogClosesTheStream(t *testing.T) {
	th := startHub(t, nil)
	th.vaults.hold = make(chan struct{})
	nonce := th.h.cfg.Nonces.Issue(time.Now())
	up := newFakeUp()
	fw, err := th.h.ServeForwarded(up, nonce, "192.0.2.1:5000")
	if err != nil {
		t.Fatal(err)
	}
	resume, _ := json.Marshal(protocol.ClientFrame{Type: protocol.TypeResume, Body: `{"vault":"x"}`})
	fw.Frame(resume, false) // the worker waits in the vaults
	for i := 0; i <= maxForwardedIn+1; i++ {
		fw.Frame(resume, false)
	}
	select {
	case code := <-up.closed:
		if code != websocket.StatusTryAgainLater {
			t.Fatalf("closed with %d, want 1013", code)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the stream was not closed")
	}
	close(th.vaults.hold)
	fw.Close()
}
