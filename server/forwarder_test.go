package main

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/rs/zerolog"

	"github.com/spells-dev/spells/cluster"
	"github.com/spells-dev/spells/hub"
	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/protocol/client"
)

// recorder is a forwarding node's receiver of one stream: the frames the
// vault's node sends back, and the stream's end.
type recorder struct {
	frames chan protocol.ServerFrame
	bound  chan struct{}
	closed chan websocket.StatusCode
	once   sync.Once
}

func newRecorder() *recorder {
	return &recorder{frames: make(chan protocol.ServerFrame, 256), bound: make(chan struct{}), closed: make(chan websocket.StatusCode, 1)}
}

func (r *recorder) Deliver(msg []byte) {
	fs, _ := protocol.DecodeServerMessage(msg)
	for _, f := range fs {
		r.frames <- f
	}
}
func (r *recorder) Bound() { r.once.Do(func() { close(r.bound) }) }
func (r *recorder) Closed(code websocket.StatusCode, _ string) {
	r.closed <- code
}

// next returns the next frame that is not a live signal.
func (r *recorder) next(t *testing.T) protocol.ServerFrame {
	t.Helper()
	for {
		select {
		case f := <-r.frames:
			if f.Type != protocol.TypeSignal && f.Type != protocol.TypeSignals && f.Type != protocol.TypePortfolio {
				return f
			}
		case <-time.After(10 * time.Second):
			t.Fatal("no frame from the vault's node")
		}
	}
}

// refusal waits for an error frame and returns its code.
func (r *recorder) refusal(t *testing.T) protocol.Code {
	t.Helper()
	for {
		f := r.next(t)
		if f.Type == protocol.TypeError {
			return f.Code
		}
	}
}

// TestForwardingNodeCannotForge plays a forwarding node that holds the
// cluster secret (it is a member: it can open streams and mint nonces)
// and relays a real owner's frames, altered, reordered and replayed. The
// vault on its own node refuses each one, and only what the owner signed
// is applied, once, in order.
func TestForwardingNodeCannotForge(t *testing.T) {
	tc := startCluster(t, 2)
	home := tc.nodes[1]
	w := tc.walletPlacedOn(t, 1)
	owner := tc.nodes[0].signIn(t, w) // the owner's own dashboard, through node A
	v0 := owner.mirror.Version

	rdb, err := cluster.Dial(context.Background(), tc.redis.URL())
	if err != nil {
		t.Fatal(err)
	}
	defer rdb.Close()
	secret := []byte(testClusterSecret)
	// The forwarding node holds the secret and the key: it is a member.
	kekID, err := os.ReadFile(filepath.Join(home.opts.DataDir, "kek.id"))
	if err != nil {
		t.Fatal(err)
	}
	dir, err := cluster.NewDirectory(rdb, cluster.DirectoryConfig{Node: "node-evil", Addr: "127.0.0.1:1", Lease: time.Second,
		Secret: derive(secret, "membership"), KEKID: strings.TrimSpace(string(kekID)), Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	dir.Start(context.Background())
	defer dir.Close()
	waitFor(t, "the evil node's view of the members", func() bool { _, ok := dir.Member(home.opts.Node); return ok })
	evil := cluster.NewLinks(cluster.LinksConfig{Dir: dir, Secret: derive(secret, "node link"), Logger: zerolog.Nop()})
	defer evil.Close()
	fw, err := evil.Route(context.Background(), w.Address())
	if err != nil || fw == nil {
		t.Fatalf("route to the vault's node: %v %v", fw, err)
	}
	nonces := protocol.NewNonceIssuer(derive(secret, "sign-in nonces"))
	open := func(nonce string) (hub.Stream, *recorder) {
		t.Helper()
		r := newRecorder()
		s, err := fw.Open(context.Background(), nonce, "evil-test", r)
		if err != nil {
			t.Fatal(err)
		}
		return s, r
	}
	send := func(s hub.Stream, f protocol.ClientFrame) {
		t.Helper()
		b, _ := json.Marshal(f)
		if err := s.Send(b, false); err != nil {
			t.Fatal(err)
		}
	}
	domain := home.opts.SIWEDomains[0]
	signIn := func(signer *client.Wallet, nonce string, d *protocol.Delegate) protocol.ClientFrame {
		p := client.SignInParams{Domain: domain, ChainID: 1, Nonce: nonce, Delegate: d}
		m := w.Message(p) // always the owner's address
		text := m.String()
		sig, err := signer.Sign(text)
		if err != nil {
			t.Fatal(err)
		}
		return protocol.ClientFrame{Type: protocol.TypeSignIn, Message: text, Signature: sig}
	}

	// A sign-in for the owner's vault that the owner did not sign.
	stranger, _ := client.NewWallet()
	d, _ := protocol.NewDelegate()
	s1, r1 := open(nonces.Issue(time.Now()))
	n1 := nonces.Issue(time.Now())
	send(s1, signIn(stranger, n1, d))
	if code := r1.refusal(t); code != protocol.CodeBadSignature {
		t.Fatalf("forged sign-in: %s", code)
	}
	// The owner's real sign-in, with a nonce other than the one the
	// stream claims for the socket.
	s2, r2 := open(nonces.Issue(time.Now()))
	ownerSignIn := signIn(w, n1, d)
	send(s2, ownerSignIn)
	if code := r2.refusal(t); code != protocol.CodeNonceUnknown {
		t.Fatalf("sign-in under another socket's nonce: %s", code)
	}

	// Relayed honestly, it binds.
	s3, r3 := open(n1)
	send(s3, ownerSignIn)
	var ready protocol.ServerFrame
	for ready.Type != protocol.TypeReady {
		ready = r3.next(t)
		if ready.Type == protocol.TypeError {
			t.Fatalf("honest sign-in refused: %s %s", ready.Code, ready.Message)
		}
	}
	<-r3.bound
	sess := &client.Session{Vault: ready.Vault, ID: ready.Session, Delegate: d}

	// The same sign-in replayed on a new stream, with its nonce.
	s4, r4 := open(n1)
	send(s4, ownerSignIn)
	if code := r4.refusal(t); code != protocol.CodeNonceReused {
		t.Fatalf("replayed sign-in: %s", code)
	}

	spec := func(th float64) protocol.TriggerSpec {
		sp := dip(th)
		sp.Condition.Signal = "EVIL/X"
		return sp
	}
	ack := func() protocol.ServerFrame {
		t.Helper()
		for {
			f := r3.next(t)
			if f.Type == protocol.TypeAck || f.Type == protocol.TypeError {
				return f
			}
		}
	}
	// The owner's first command, relayed as it is: applied.
	c1, _, _ := sess.SignCommandSeq(1, protocol.OpTriggerCreate, spec(100))
	send(s3, c1)
	if f := ack(); f.Type != protocol.TypeAck {
		t.Fatalf("honest command: %s %s", f.Code, f.Message)
	}
	// Altered: another threshold under the owner's signature.
	c2, _, _ := sess.SignCommandSeq(2, protocol.OpTriggerCreate, spec(200))
	c2.Body = strings.Replace(c2.Body, "200", "999", 1)
	send(s3, c2)
	if f := ack(); f.Code != protocol.CodeBadCmdSignature {
		t.Fatalf("altered command: %+v", f)
	}
	// Replayed.
	send(s3, c1)
	if f := ack(); f.Code != protocol.CodeBadSeq {
		t.Fatalf("replayed command: %+v", f)
	}
	// Reordered: the owner signed 3 then 4; 4 goes first and is applied,
	// 3 after it is refused.
	c3, _, _ := sess.SignCommandSeq(3, protocol.OpTriggerCreate, spec(300))
	c4, _, _ := sess.SignCommandSeq(4, protocol.OpTriggerCreate, spec(400))
	send(s3, c4)
	if f := ack(); f.Type != protocol.TypeAck {
		t.Fatalf("command 4: %+v", f)
	}
	send(s3, c3)
	if f := ack(); f.Code != protocol.CodeBadSeq {
		t.Fatalf("command 3 after 4: %+v", f)
	}

	// The owner's dashboard saw exactly the two commands applied: trigger
	// 100 and trigger 400 (a session is not part of the vault's state).
	owner.untilVersion(t, v0+2)
	// A command of the owner's own lands right after them: nothing else
	// was written in between.
	if _, v := owner.create(t, spec(500)); v != v0+3 {
		t.Fatalf("the owner's next command is version %d, want %d", v, v0+3)
	}
	owner.untilVersion(t, v0+3)
	thresholds := map[float64]bool{}
	for _, tr := range owner.mirror.Triggers {
		if tr.Condition.Threshold != nil {
			thresholds[*tr.Condition.Threshold] = true
		}
	}
	if len(thresholds) != 3 || !thresholds[100] || !thresholds[400] || !thresholds[500] {
		t.Fatalf("triggers applied: %v; want 100, 400 and the owner's 500 only", thresholds)
	}
}
