package vault

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"zombiezen.com/go/sqlite"
	"zombiezen.com/go/sqlite/sqlitex"

	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/protocol/client"
	"github.com/spells-dev/spells/vault/actor"
	"github.com/spells-dev/spells/vault/store"
)

func TestFirstSignInCreatesVaultOwnedBySigner(t *testing.T) {
	e := newEnv(t)
	u := e.newUser()
	st := u.state(t)
	if st.Owner != u.w.Address().Hex() || st.Vault != u.w.Address().Hex() {
		t.Fatalf("owner %s vault %s, want %s", st.Owner, st.Vault, u.w.Address().Hex())
	}
	if _, err := os.Stat(actor.Path(e.dir, actor.ID(u.w.Address()))); err != nil {
		t.Fatalf("vault file: %v", err)
	}
}

// TestSignInRefusals tries every bad sign-in on a new address (no file may
// be created) and on an existing vault (its version may not move).
func TestSignInRefusals(t *testing.T) {
	e := newEnv(t)
	other := protocol.NewNonceIssuer([]byte("some other node's key..........."))
	stranger, _ := client.NewWallet()
	cases := []struct {
		name   string
		code   protocol.Code
		modify func(p *client.SignInParams)
		tamper func(msg, sig string) (string, string)
		nonce  func(p client.SignInParams) string // the nonce the hub says it issued
	}{
		{name: "wrong domain", code: protocol.CodeSIWEDomain, modify: func(p *client.SignInParams) { p.Domain = "evil.example:8080" }},
		{name: "wrong uri", code: protocol.CodeSIWEURI, modify: func(p *client.SignInParams) { p.URI = "http://evil.example/login" }},
		{name: "wrong chain", code: protocol.CodeSIWEChain, modify: func(p *client.SignInParams) { p.ChainID = 5 }},
		{name: "expired", code: protocol.CodeSIWEExpired, modify: func(p *client.SignInParams) { p.Expiration = t0.Add(-time.Second) }},
		{name: "not yet valid", code: protocol.CodeSIWENotYetValid, modify: func(p *client.SignInParams) { p.NotBefore = t0.Add(time.Hour) }},
		{name: "issued in the future", code: protocol.CodeSIWEIssuedAt, modify: func(p *client.SignInParams) { p.IssuedAt = t0.Add(time.Hour) }},
		{name: "nonce never issued", code: protocol.CodeNonceUnknown, modify: func(p *client.SignInParams) { p.Nonce = other.Issue(t0) }},
		{name: "nonce of another socket", code: protocol.CodeNonceUnknown, nonce: func(client.SignInParams) string { return e.nonces.Issue(t0) }},
		{name: "nonce too old", code: protocol.CodeNonceExpired, modify: func(p *client.SignInParams) { p.Nonce = e.nonces.Issue(t0.Add(-time.Hour)) }},
		{name: "nonce from before the node started", code: protocol.CodeNonceExpired, modify: func(p *client.SignInParams) { p.Nonce = e.nonces.Issue(t0.Add(-time.Millisecond)) }},
		{name: "no delegate", code: protocol.CodeDelegateMissing, modify: func(p *client.SignInParams) { p.Delegate = nil }},
		{name: "tampered text", code: protocol.CodeBadSignature, tamper: func(m, s string) (string, string) {
			return strings.Replace(m, ".000Z", ".001Z", 1), s
		}},
		{name: "signature from another key", code: protocol.CodeBadSignature, tamper: func(m, _ string) (string, string) {
			s, _ := stranger.Sign(m)
			return m, s
		}},
		{name: "malformed text", code: protocol.CodeSIWEMalformed, tamper: func(m, s string) (string, string) { return "hello " + m, s }},
		{name: "signature 0 bytes", code: protocol.CodeBadSignature, tamper: func(m, _ string) (string, string) { return m, "0x" }},
		{name: "signature 64 bytes", code: protocol.CodeBadSignature, tamper: func(m, s string) (string, string) { return m, s[:130] }},
		{name: "signature 66 bytes", code: protocol.CodeBadSignature, tamper: func(m, s string) (string, string) { return m, s + "00" }},
		{name: "signature v=29", code: protocol.CodeBadSignature, tamper: func(m, s string) (string, string) { return m, s[:130] + "1d" }},
		{name: "signature not hex", code: protocol.CodeBadSignature, tamper: func(m, s string) (string, string) { return m, "0xzz" + s[4:] }},
	}
	existing := e.newUser()
	before := existing.state(t).Version
	for _, c := range cases {
		for _, who := range []string{"new", "existing"} {
			t.Run(c.name+"/"+who, func(t *testing.T) {
				w := existing.w
				if who == "new" {
					w, _ = client.NewWallet()
				}
				d, _ := protocol.NewDelegate()
				p := e.params(w, d)
				if c.modify != nil {
					c.modify(&p)
				}
				msg, sig, err := w.SignIn(p)
				if err != nil {
					t.Fatal(err)
				}
				if c.tamper != nil {
					msg, sig = c.tamper(msg, sig)
				}
				expect := p.Nonce
				if c.nonce != nil {
					expect = c.nonce(p)
				}
				_, err = e.m.SignIn(context.Background(), SignInRequest{Message: msg, Signature: sig, Nonce: expect, Sub: newSub()})
				wantCode(t, err, c.code)
				if who == "new" {
					if _, err := os.Stat(actor.Path(e.dir, actor.ID(w.Address()))); !os.IsNotExist(err) {
						t.Fatalf("a refused first sign-in left a vault file: %v", err)
					}
				}
			})
		}
	}
	if got := existing.state(t).Version; got != before {
		t.Fatalf("refused sign-ins moved the version from %d to %d", before, got)
	}
}

func TestSignInHighSTwinRefused(t *testing.T) {
	e := newEnv(t)
	w, _ := client.NewWallet()
	d, _ := protocol.NewDelegate()
	p := e.params(w, d)
	msg, sig, _ := w.SignIn(p)
	raw, _ := protocol.DecodeHexSignature(sig)
	twin := highSTwin(raw)
	_, err := e.m.SignIn(context.Background(), SignInRequest{Message: msg, Signature: "0x" + hexOf(twin), Nonce: p.Nonce, Sub: newSub()})
	wantCode(t, err, protocol.CodeBadSignature)
}

func TestNonceIsSingleUse(t *testing.T) {
	e := newEnv(t)
	w, _ := client.NewWallet()
	d, _ := protocol.NewDelegate()
	p := e.params(w, d)
	if _, err := e.signInWith(w, p, newSub()); err != nil {
		t.Fatal(err)
	}
	_, err := e.signInWith(w, p, newSub())
	wantCode(t, err, protocol.CodeNonceReused)
	e.restart()
	_, err = e.signInWith(w, p, newSub())
	wantCode(t, err, protocol.CodeNonceReused)
}

func TestCommandRefusals(t *testing.T) {
	e := newEnv(t)
	u := e.newUser()
	u.create(t, protocol.TriggerSpec{Name: "dip", Condition: below("ETH/USD", 2500), Action: swap})
	base := u.state(t)
	send := func(f protocol.ClientFrame) error {
		_, err := u.v.Command(context.Background(), u.sess.ID, f.Body, f.Sig)
		return err
	}
	// Replay of an accepted command.
	f, _, _ := u.sess.SignCommandSeq(u.sess.Seq, protocol.OpTriggerCreate, protocol.TriggerSpec{Name: "again", Condition: below("ETH/USD", 1), Action: swap})
	wantCode(t, send(f), protocol.CodeBadSeq)
	// Out of order: seq 5 accepted, then 4.
	f5, _, _ := u.sess.SignCommandSeq(5, protocol.OpTriggerList, struct{}{})
	if err := send(f5); err != nil {
		t.Fatal(err)
	}
	f4, _, _ := u.sess.SignCommandSeq(4, protocol.OpTriggerList, struct{}{})
	wantCode(t, send(f4), protocol.CodeBadSeq)
	u.sess.Seq = 5
	// Signed by another delegate.
	stranger := &client.Session{Vault: u.sess.Vault, ID: u.sess.ID, Delegate: mustDelegate(t), Seq: 10}
	fs, _, _ := stranger.SignCommand(protocol.OpTriggerList, struct{}{})
	wantCode(t, send(fs), protocol.CodeBadCmdSignature)
	// Tampered body.
	ft, _, _ := u.sess.SignCommandSeq(20, protocol.OpTriggerList, struct{}{})
	ft.Body = strings.Replace(ft.Body, `"seq":20`, `"seq":21`, 1)
	wantCode(t, send(ft), protocol.CodeBadCmdSignature)
	// Signed for another vault.
	other := e.newUser()
	cross := &client.Session{Vault: other.sess.Vault, ID: u.sess.ID, Delegate: u.sess.Delegate, Seq: 30}
	fc, _, _ := cross.SignCommand(protocol.OpTriggerList, struct{}{})
	wantCode(t, send(fc), protocol.CodeWrongVault)
	// Another vault's session, on this vault.
	_, err := u.v.Command(context.Background(), other.sess.ID, fc.Body, fc.Sig)
	wantCode(t, err, protocol.CodeSessionUnknown)
	// Unknown op and bad args.
	_, err = u.cmd(t, "trigger.explode", struct{}{})
	wantCode(t, err, protocol.CodeUnknownOp)
	_, err = u.cmd(t, protocol.OpTriggerCreate, map[string]any{"name": 5})
	wantCode(t, err, protocol.CodeBadCommand)
	_, err = u.cmd(t, protocol.OpTriggerPause, protocol.IDArgs{ID: "t_missing"})
	wantCode(t, err, protocol.CodeNotFound)
	// Arguments are checked for every op, in the project's own words.
	for op, args := range map[string]string{
		protocol.OpTriggerList:       `{"foo":1}`,
		protocol.OpTriggerList + " ": `[1]`,
		protocol.OpTriggerCreate:     `{"name":"x","condition":{"signal":"ETH/USD","op":"below","threshold":1e999},"action":{"kind":"swap"}}`,
		protocol.OpTriggerPause:      `{"id":7}`,
	} {
		_, err = u.cmd(t, strings.TrimSpace(op), json.RawMessage(args))
		wantCode(t, err, protocol.CodeBadCommand)
		if m := err.Error(); strings.Contains(m, "Go ") || strings.Contains(m, "json:") || strings.Contains(m, "unmarshal") {
			t.Errorf("%s %s: the refusal shows a Go decoder message: %s", op, args, m)
		}
	}
	if got := u.state(t); got.Version != base.Version || len(got.Triggers) != 1 {
		t.Fatalf("refused commands changed the vault: version %d→%d, %d triggers", base.Version, got.Version, len(got.Triggers))
	}
}

func TestReplayRefusedAfterRestart(t *testing.T) {
	e := newEnv(t)
	u := e.newUser()
	f, _, _ := u.sess.SignCommand(protocol.OpTriggerCreate, protocol.TriggerSpec{Name: "dip", Condition: below("ETH/USD", 2500), Action: swap})
	if _, err := u.v.Command(context.Background(), u.sess.ID, f.Body, f.Sig); err != nil {
		t.Fatal(err)
	}
	e.restart()
	v, err := e.m.Vault(context.Background(), u.w.Address())
	if err != nil {
		t.Fatal(err)
	}
	_, err = v.Command(context.Background(), u.sess.ID, f.Body, f.Sig)
	wantCode(t, err, protocol.CodeBadSeq)
	st, _ := v.State(context.Background())
	if len(st.Triggers) != 1 {
		t.Fatalf("replay after restart: %d triggers, want 1", len(st.Triggers))
	}
}

func TestSessionExpiresWithTheClock(t *testing.T) {
	e := newEnv(t)
	w, _ := client.NewWallet()
	d, _ := protocol.NewDelegate()
	p := e.params(w, d)
	p.Expiration = t0.Add(10 * time.Minute)
	b, err := e.signInWith(w, p, newSub())
	if err != nil {
		t.Fatal(err)
	}
	u := &user{w: w, v: b.Vault, sess: &client.Session{Vault: w.Address().Hex(), ID: b.Session, Delegate: d}}
	u.mustCmd(t, protocol.OpTriggerList, struct{}{})
	e.clock.Advance(10 * time.Minute)
	_, err = u.cmd(t, protocol.OpTriggerList, struct{}{})
	wantCode(t, err, protocol.CodeSessionExpired)
}

func TestResume(t *testing.T) {
	e := newEnv(t)
	u := e.newUser()
	u.create(t, protocol.TriggerSpec{Name: "a", Condition: below("ETH/USD", 2500), Action: swap})
	since := u.state(t).Version
	u.create(t, protocol.TriggerSpec{Name: "b", Condition: below("ETH/USD", 2400), Action: swap})
	u.create(t, protocol.TriggerSpec{Name: "c", Condition: below("ETH/USD", 2300), Action: swap})

	nonce := e.nonces.Issue(e.clock.Now())
	f, _ := u.sess.SignResume(nonce, since)
	s := newSub()
	if _, err := e.m.Resume(context.Background(), f.Body, f.Sig, nonce, s); err != nil {
		t.Fatal(err)
	}
	if r := s.next(t); r.Type != protocol.TypeReady || r.LastSeq != u.sess.Seq {
		t.Fatalf("ready %+v, lastSeq want %d", r, u.sess.Seq)
	}
	for want := since + 1; want <= since+2; want++ {
		if d := s.next(t); d.Type != protocol.TypeDiff || d.Version != want {
			t.Fatalf("got %s v%d, want diff v%d", d.Type, d.Version, want)
		}
	}
	// The same resume again: its nonce is spent.
	_, err := e.m.Resume(context.Background(), f.Body, f.Sig, nonce, newSub())
	wantCode(t, err, protocol.CodeNonceReused)
	// A resume signed by another key.
	n2 := e.nonces.Issue(e.clock.Now())
	bad := &client.Session{Vault: u.sess.Vault, ID: u.sess.ID, Delegate: mustDelegate(t)}
	fb, _ := bad.SignResume(n2, 0)
	_, err = e.m.Resume(context.Background(), fb.Body, fb.Sig, n2, newSub())
	wantCode(t, err, protocol.CodeBadCmdSignature)
}

// A resume writes nothing: its nonce is held in the vault's memory, which
// already refuses a replay, and written to the file with the next batch of
// them or when the file closes, so a replay after a hibernation is refused
// too. The socket's nonce can then not sign in either.
func TestResumeNonceHeldUntilTheFileCloses(t *testing.T) {
	e := newHibernatingEnv(t)
	u := e.newUser()
	inFile := func(nonce string) bool {
		t.Helper()
		var used bool
		if err := u.v.Inspect(context.Background(), func(conn *sqlite.Conn) error {
			var err error
			used, err = store.NonceUsed(conn, nonce)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return used
	}
	resume := func(nonce string) (*protocol.ClientFrame, error) {
		f, _ := u.sess.SignResume(nonce, 0)
		s := newSub()
		_, err := e.m.Resume(context.Background(), f.Body, f.Sig, nonce, s)
		u.v.Detach(s) // so that it can hibernate
		return &f, err
	}
	nonce := e.nonces.Issue(e.clock.Now())
	f, err := resume(nonce)
	if err != nil {
		t.Fatal(err)
	}
	if inFile(nonce) {
		t.Fatal("the resume wrote its nonce to the file on its way")
	}
	_, err = e.m.Resume(context.Background(), f.Body, f.Sig, nonce, newSub())
	wantCode(t, err, protocol.CodeNonceReused)
	p := e.params(u.w, mustDelegate(t))
	p.Nonce = nonce
	_, err = e.signInWith(u.w, p, newSub())
	wantCode(t, err, protocol.CodeNonceReused)

	// Enough of them (this one and actor.MaxUnwrittenNonces-1 more) are written
	// at once, with the vault still open.
	var batch []string
	for range actor.MaxUnwrittenNonces - 1 {
		n := e.nonces.Issue(e.clock.Now())
		if _, err := resume(n); err != nil {
			t.Fatal(err)
		}
		batch = append(batch, n)
	}
	for _, n := range append(batch, nonce) {
		if !inFile(n) {
			t.Fatalf("nonce %s not in the file after %d resumes", n, actor.MaxUnwrittenNonces)
		}
	}

	// One more, then the vault hibernates: its close writes it.
	last := e.nonces.Issue(e.clock.Now())
	fl, err := resume(last)
	if err != nil {
		t.Fatal(err)
	}
	e.hibernateAll(t, u)
	v, err := e.m.Vault(context.Background(), u.w.Address())
	if err != nil {
		t.Fatal(err)
	}
	u.v = v
	if !inFile(last) {
		t.Fatal("the nonce was not written when the file closed")
	}
	_, err = e.m.Resume(context.Background(), fl.Body, fl.Sig, last, newSub())
	wantCode(t, err, protocol.CodeNonceReused)
}

// A resume's nonce is written without syncing (flushNonces, writeVolatile).
// The record still reaches the file, the connection is durable again right
// after, and a replay is refused even when the record is lost, as it could
// be with the node: a restarted node refuses every nonce issued before it.
func TestResumeNonceRecordedWithoutSync(t *testing.T) {
	e := newHibernatingEnv(t)
	u := e.newUser()
	u.v.Detach(u.sub)
	nonce := e.nonces.Issue(e.clock.Now())
	f, _ := u.sess.SignResume(nonce, 0)
	s := newSub()
	if _, err := e.m.Resume(context.Background(), f.Body, f.Sig, nonce, s); err != nil {
		t.Fatal(err)
	}
	u.v.Detach(s)
	err := u.v.Inspect(context.Background(), func(conn *sqlite.Conn) error {
		durable, err := store.Durable(conn)
		if err == nil && !durable {
			t.Error("after the resume, the connection does not sync every commit (synchronous FULL, automatic checkpoints)")
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	// Hibernated and reopened: the record is in the file.
	e.hibernateAll(t)
	_, err = e.m.Resume(context.Background(), f.Body, f.Sig, nonce, newSub())
	wantCode(t, err, protocol.CodeNonceReused)

	// The machine lost the record: a node started after it refuses the
	// nonce all the same, and a fresh one still resumes.
	e.m.Close(context.Background())
	conn, err := sqlite.OpenConn(actor.Path(e.dir, actor.ID(u.w.Address())), sqlite.OpenReadWrite)
	if err != nil {
		t.Fatal(err)
	}
	err = sqlitex.ExecuteTransient(conn, "DELETE FROM nonces WHERE nonce = ?;", &sqlitex.ExecOptions{Args: []any{nonce}})
	if cerr := conn.Close(); err != nil || cerr != nil {
		t.Fatal(err, cerr)
	}
	e.clock.Advance(time.Millisecond)
	e.start()
	_, err = e.m.Resume(context.Background(), f.Body, f.Sig, nonce, newSub())
	wantCode(t, err, protocol.CodeNonceExpired)
	fresh := e.nonces.Issue(e.clock.Now())
	f2, _ := u.sess.SignResume(fresh, 0)
	if _, err := e.m.Resume(context.Background(), f2.Body, f2.Sig, fresh, newSub()); err != nil {
		t.Fatalf("a nonce issued after the restart: %v", err)
	}
}

func TestResumeAfterTrimGetsSnapshot(t *testing.T) {
	e := newEnv(t) // ChangeLogKeep: 50, trimmed every 32 versions
	u := e.newUser()
	for i := 0; i < 90; i++ {
		u.mustCmd(t, protocol.OpTriggerCreate, protocol.TriggerSpec{Name: "t", Condition: below("X", float64(i)), Action: swap})
	}
	nonce := e.nonces.Issue(e.clock.Now())
	f, _ := u.sess.SignResume(nonce, 1)
	s := newSub()
	if _, err := e.m.Resume(context.Background(), f.Body, f.Sig, nonce, s); err != nil {
		t.Fatal(err)
	}
	s.nextOf(t, protocol.TypeReady)
	snap := s.next(t)
	if snap.Type != protocol.TypeSnapshot || len(snap.State.Triggers) != 90 || snap.State.Version != u.state(t).Version {
		t.Fatalf("got %s with %v, want a snapshot of 90 triggers", snap.Type, snap.State)
	}
}

func mustDelegate(t testing.TB) *protocol.Delegate {
	d, err := protocol.NewDelegate()
	if err != nil {
		t.Fatal(err)
	}
	return d
}
