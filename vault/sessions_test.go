package vault

import (
	"context"
	"encoding/json"
	"fmt"
	"sync/atomic"
	"testing"

	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/protocol/client"
)

// endedSub is a subscriber that records being ended.
type endedSub struct {
	*sub
	ended atomic.Value // reason
}

func (s *endedSub) Ended(reason string) { s.ended.Store(reason) }

// signInEnded signs w in with a subscriber that records Ended.
func (e *env) signInEnded(t *testing.T, w *client.Wallet) (*user, *endedSub) {
	t.Helper()
	d := mustDelegate(t)
	s := &endedSub{sub: newSub()}
	b, err := e.signInWith(w, e.params(w, d), s)
	if err != nil {
		t.Fatal(err)
	}
	return &user{w: w, v: b.Vault, sub: s.sub, sess: &client.Session{Vault: w.Address().Hex(), ID: b.Session, Delegate: d}}, s
}

func (s *endedSub) wait(t *testing.T) string {
	t.Helper()
	waitFor(t, "the subscriber to be ended", func() bool { return s.ended.Load() != nil })
	return s.ended.Load().(string)
}

// TestSessionEndSignsOutOneSession: session.end ends the sending session
// only: its sockets are closed (Ended), its key is refused from then on,
// also after a restart, and the vault's other sessions go on.
func TestSessionEndSignsOutOneSession(t *testing.T) {
	e := newEnv(t)
	w, _ := client.NewWallet()
	a, aSub := e.signInEnded(t, w)
	b, bSub := e.signInEnded(t, w)
	ack := a.mustCmd(t, protocol.OpSessionEnd, struct{}{})
	if !json.Valid(ack.Result) {
		t.Fatalf("ack %+v", ack)
	}
	if r := aSub.wait(t); r != "signed out" {
		t.Fatalf("ended with %q", r)
	}
	_, err := a.cmd(t, protocol.OpTriggerList, struct{}{})
	wantCode(t, err, protocol.CodeSessionUnknown)
	b.mustCmd(t, protocol.OpTriggerList, struct{}{})
	if bSub.ended.Load() != nil {
		t.Fatal("the other session was ended too")
	}
	e.restart()
	nonce := e.nonces.Issue(e.clock.Now())
	f, _ := a.sess.SignResumeSnapshot(nonce)
	_, err = e.m.Resume(context.Background(), f.Body, f.Sig, nonce, newSub())
	wantCode(t, err, protocol.CodeSessionUnknown)
}

// TestRevokeEndsEverySession: a revoke signed by the owner's wallet ends
// every session of the vault (a leaked delegate key is useless from then
// on); one signed by anyone else, or replayed, changes nothing.
func TestRevokeEndsEverySession(t *testing.T) {
	e := newEnv(t)
	w, _ := client.NewWallet()
	a, aSub := e.signInEnded(t, w)
	_, bSub := e.signInEnded(t, w)
	revoke := func(signer *client.Wallet, nonce string) (int, error) {
		p := e.params(w, nil)
		p.Nonce = nonce
		m := w.Message(p)
		m.Resources = []string{protocol.RevokeResource}
		text := m.String()
		sig, _ := signer.Sign(text)
		return e.m.Revoke(context.Background(), SignInRequest{Message: text, Signature: sig, Nonce: nonce})
	}
	stranger, _ := client.NewWallet()
	_, err := revoke(stranger, e.nonces.Issue(e.clock.Now()))
	wantCode(t, err, protocol.CodeBadSignature)
	a.mustCmd(t, protocol.OpTriggerList, struct{}{})
	nonce := e.nonces.Issue(e.clock.Now())
	n, err := revoke(w, nonce)
	if err != nil || n != 2 {
		t.Fatalf("revoke: %d sessions, %v; want 2", n, err)
	}
	aSub.wait(t)
	bSub.wait(t)
	_, err = a.cmd(t, protocol.OpTriggerList, struct{}{})
	wantCode(t, err, protocol.CodeSessionUnknown)
	_, err = revoke(w, nonce)
	wantCode(t, err, protocol.CodeNonceReused)
	// A sign-in message is no revoke, and a revoke no sign-in.
	p := e.params(w, mustDelegate(t))
	msg, sig, _ := w.SignIn(p)
	_, err = e.m.Revoke(context.Background(), SignInRequest{Message: msg, Signature: sig, Nonce: p.Nonce})
	wantCode(t, err, protocol.CodeBadCommand)
	e.signIn(w) // signing in again works
}

// TestCommandsAreInTheActivity: creating, editing, pausing, resuming and
// deleting a trigger each leave an evaluation with cause "command" naming
// the trigger, and activity.list pages through older entries.
func TestCommandsAreInTheActivity(t *testing.T) {
	e := newEnv(t)
	e.latest["X"] = 15
	u := e.newUser()
	spec := protocol.TriggerSpec{Name: "x", Condition: below("X", 10), Action: swap}
	id := u.create(t, spec)
	spec.Name = "renamed"
	u.mustCmd(t, protocol.OpTriggerUpdate, protocol.UpdateArgs{ID: id, Spec: spec})
	u.mustCmd(t, protocol.OpTriggerPause, protocol.IDArgs{ID: id})
	u.mustCmd(t, protocol.OpTriggerResume, protocol.IDArgs{ID: id})
	other := u.create(t, protocol.TriggerSpec{Name: "other", Condition: below("X", 10), Action: swap})
	for i := 0; i < 3; i++ {
		e.cross(t, u)
	}
	u.mustCmd(t, protocol.OpTriggerDelete, protocol.IDArgs{ID: id})
	var got []string
	for _, ev := range u.state(t).Evaluations {
		if ev.Cause == "command" && ev.TriggerID == id {
			got = append(got, ev.Outcome+":"+ev.Detail)
		}
	}
	want := "[created:x edited:renamed paused:renamed resumed:renamed deleted:renamed]"
	if fmt.Sprint(got) != want {
		t.Fatalf("activity of the trigger %v, want %s", got, want)
	}
	page := func(args protocol.ActivityArgs) []protocol.Evaluation {
		t.Helper()
		ack := u.mustCmd(t, protocol.OpActivityList, args)
		var r struct{ Evaluations []protocol.Evaluation }
		if err := json.Unmarshal(ack.Result, &r); err != nil {
			t.Fatal(err)
		}
		return r.Evaluations
	}
	first := page(protocol.ActivityArgs{Kind: "evaluation", Limit: 2})
	if len(first) != 2 || first[0].ID <= first[1].ID {
		t.Fatalf("first page %+v: want the 2 newest, newest first", first)
	}
	next := page(protocol.ActivityArgs{Kind: "evaluation", Limit: 2, Before: fmt.Sprint(first[1].ID)})
	if len(next) != 2 || next[0].ID >= first[1].ID {
		t.Fatalf("next page %+v after %d", next, first[1].ID)
	}
	for _, ev := range page(protocol.ActivityArgs{Kind: "evaluation", Trigger: other, Limit: 100}) {
		if ev.TriggerID != other {
			t.Fatalf("filtered page holds %+v", ev)
		}
	}
	ack := u.mustCmd(t, protocol.OpActivityList, protocol.ActivityArgs{Kind: "intent", Limit: 1})
	var r struct{ Intents []protocol.Intent }
	_ = json.Unmarshal(ack.Result, &r)
	if len(r.Intents) != 1 {
		t.Fatalf("intents page %s", ack.Result)
	}
	ack = u.mustCmd(t, protocol.OpActivityList, protocol.ActivityArgs{Kind: "intent", Before: r.Intents[0].ID, Limit: 100})
	var older struct{ Intents []protocol.Intent }
	_ = json.Unmarshal(ack.Result, &older)
	if len(older.Intents) != 5 { // 6 firings in all (2 triggers × 3 crossings)
		t.Fatalf("%d older intents, want 5", len(older.Intents))
	}
	for _, bad := range []protocol.ActivityArgs{{Kind: "nope"}, {Kind: "evaluation", Limit: 101}, {Kind: "evaluation", Before: "x"}} {
		_, err := u.cmd(t, protocol.OpActivityList, bad)
		wantCode(t, err, protocol.CodeBadCommand)
	}
}
