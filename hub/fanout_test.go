package hub

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/protocol/client"
	"github.com/spells-dev/spells/vault"
	"github.com/spells-dev/spells/vault/keys"
)

// frames collects what a vault sends a subscriber.
type frames chan []byte

func (f frames) Send(b []byte) bool {
	select {
	case f <- b:
		return true
	default:
		return false
	}
}

// TestEvaluationDoesNotWaitForTheFanout: with the dashboards' fan-out
// held up, publishing never waits, a crossing still fires its trigger at
// once, and the fan-out then hands out the newest value instead of the
// backlog it missed (counted as conflated).
func TestEvaluationDoesNotWaitForTheFanout(t *testing.T) {
	ctx := context.Background()
	nonces := protocol.NewNonceIssuer([]byte("test-node-key-0123456789abcdef!!"))
	kek, _, err := keys.GenerateKEK()
	if err != nil {
		t.Fatal(err)
	}
	mgr, err := vault.NewManager(vault.Config{Dir: t.TempDir(), Domains: []string{"localhost:8080"}, Nonces: nonces, KEK: kek})
	if err != nil {
		t.Fatal(err)
	}
	if err := mgr.Start(ctx); err != nil {
		t.Fatal(err)
	}
	defer mgr.Close(ctx)
	bus := NewMemoryBus(0, nil)
	defer bus.Close()
	metrics := NewMetrics(nil)
	held, release := make(chan struct{}, 1), make(chan struct{})
	fanoutHook = func() {
		select {
		case held <- struct{}{}:
			<-release
		default:
		}
	}
	defer func() { fanoutHook = nil }() // after the hub's fan-out has stopped
	h := New(Config{Manager: mgr, Nonces: nonces, Bus: bus, Metrics: metrics})
	defer h.Shutdown(ctx)

	w, _ := client.NewWallet()
	d, _ := protocol.NewDelegate()
	p := client.SignInParams{Domain: "localhost:8080", Nonce: nonces.Issue(time.Now()), IssuedAt: time.Now(), Delegate: d}
	msg, sig, _ := w.SignIn(p)
	sub := make(frames, 100)
	b, err := mgr.SignIn(ctx, vault.SignInRequest{Message: msg, Signature: sig, Nonce: p.Nonce, Sub: sub})
	if err != nil {
		t.Fatal(err)
	}
	s := &client.Session{Vault: w.Address().Hex(), ID: b.Session, Delegate: d}
	th := 10.0
	f, _, _ := s.SignCommand(protocol.OpTriggerCreate, protocol.TriggerSpec{Name: "x",
		Condition: protocol.Condition{Signal: "X", Op: protocol.OpBelow, Threshold: &th}, Action: protocol.Action{Kind: "swap"}})
	if _, err := b.Vault.Command(ctx, b.Session, f.Body, f.Sig); err != nil {
		t.Fatal(err)
	}

	publish := func(v float64) {
		t.Helper()
		if err := bus.Publish(ctx, Signal{Name: "X", Value: v, At: time.Now().UnixMilli()}); err != nil {
			t.Fatal(err)
		}
	}
	publish(15)
	<-held // the fan-out is stuck on the first value
	publish(5)
	deadline := time.After(5 * time.Second)
	for fired := false; !fired; {
		select {
		case fr := <-sub:
			var d protocol.Diff
			_ = json.Unmarshal(fr, &d)
			for _, c := range d.Changes {
				fired = fired || c.Kind == protocol.KindIntent
			}
		case <-deadline:
			t.Fatal("the crossing did not fire while the fan-out was held up")
		}
	}
	began := time.Now()
	for i := 0; i < 1000; i++ {
		publish(20 + float64(i))
	}
	if d := time.Since(began); d > time.Second {
		t.Fatalf("1000 publishes took %s behind a stuck fan-out", d)
	}
	close(release)
	waitUntil(t, "the fan-out to conflate what it missed", func() bool { return testutil.ToFloat64(metrics.FanoutConflated) > 0 })
}

func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
