package main

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/protocol/client"
	"github.com/spells-dev/spells/vault/notify/bottest"
	"github.com/spells-dev/spells/vault/notify/pushtest"
	"github.com/spells-dev/spells/vault/notify/smtptest"
)

// webhook is an alert receiver as an owner would run one: it checks each
// delivery's signature under the vault's secret and keeps what arrived.
// While down it answers 503.
type webhook struct {
	url    string
	secret atomic.Pointer[string]
	down   atomic.Bool
	mu     sync.Mutex
	got    []delivery
}

type delivery struct {
	id       string
	verified bool
	payload  protocol.WebhookPayload
	answered int
}

func newWebhook(t testing.TB) *webhook {
	h := &webhook{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		d := delivery{id: r.Header.Get("X-Spells-Alert"), answered: http.StatusOK}
		_ = json.Unmarshal(body, &d.payload)
		if s := h.secret.Load(); s != nil {
			ts, sig, _ := strings.Cut(strings.TrimPrefix(r.Header.Get("X-Spells-Signature"), "t="), ",v1=")
			mac := hmac.New(sha256.New, []byte(*s))
			mac.Write([]byte(ts + "." + string(body)))
			d.verified = hmac.Equal([]byte(hex.EncodeToString(mac.Sum(nil))), []byte(sig))
		}
		if h.down.Load() {
			d.answered = http.StatusServiceUnavailable
		}
		h.mu.Lock()
		h.got = append(h.got, d)
		h.mu.Unlock()
		w.WriteHeader(d.answered)
	}))
	t.Cleanup(srv.Close)
	h.url = srv.URL + "/hook"
	return h
}

func (h *webhook) deliveries() []delivery {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]delivery(nil), h.got...)
}

// alertsTo points the vault's alerts at url and keeps the secret the vault
// made, for the receiver to check.
func (s *session) alertsTo(t testing.TB, url string) protocol.AlertSettings {
	t.Helper()
	ack, err := s.cmd(t, protocol.OpAlertsSet, protocol.AlertsArgs{Webhook: &protocol.WebhookChannel{URL: url}, On: protocol.AlertRules{IntentFailed: true}})
	if err != nil {
		t.Fatalf("alerts.set: %v", err)
	}
	var set protocol.AlertSettings
	if err := json.Unmarshal(ack.Result, &set); err != nil || set.Webhook == nil {
		t.Fatalf("alerts.set answered %s: %v", ack.Result, err)
	}
	return set
}

// mirrorUntil waits until cond holds of the mirror: at once if it does
// already (the frames that made it so may have been applied while waiting
// for something else), else after each frame applied.
func (s *session) mirrorUntil(t testing.TB, what string, cond func() bool) {
	t.Helper()
	if cond() {
		return
	}
	s.until(t, what, func(protocol.ServerFrame) bool { return cond() })
}

// mirrorWithin is mirrorUntil with a longer wait than a frame's.
func (s *session) mirrorWithin(t testing.TB, what string, d time.Duration, cond func() bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	for !cond() {
		f, err := s.c.Next(ctx)
		if err != nil {
			t.Fatalf("waiting for %s: %v", what, err)
		}
		if err := s.mirror.Apply(f); err != nil {
			t.Fatalf("waiting for %s: %v", what, err)
		}
	}
}

// alertWith waits until the mirror's alert log holds an alert for which ok
// holds, and returns it.
func (s *session) alertWith(t testing.TB, what string, ok func(protocol.Alert) bool) protocol.Alert {
	t.Helper()
	find := func() (protocol.Alert, bool) {
		for _, a := range s.mirror.AlertLog {
			if ok(a) {
				return a, true
			}
		}
		return protocol.Alert{}, false
	}
	if a, found := find(); found {
		return a
	}
	var a protocol.Alert
	s.until(t, what, func(protocol.ServerFrame) bool {
		var found bool
		a, found = find()
		return found
	})
	return a
}

// TestAlertsReachTheOwner: a notify trigger that fires sends its alert to
// the owner's webhook, signed with the vault's secret; the owner's
// dashboard sees it delivered. A node without --alerts-allow-private
// refuses a webhook on its own network, naming the flag.
func TestAlertsReachTheOwner(t *testing.T) {
	tn := startNode(t, testOptions(t), nil)
	hook := newWebhook(t)
	s := tn.signIn(t, nil)
	set := s.alertsTo(t, hook.url)
	hook.secret.Store(&set.Webhook.Secret)
	spec := dip(2500)
	spec.Action = protocol.Action{Kind: "notify"}
	id, _ := s.create(t, spec)
	tn.mustPublish(t, "ETH/USD", 2600)
	tn.mustPublish(t, "ETH/USD", 2400)
	a := s.alertWith(t, "the alert delivered", func(a protocol.Alert) bool { return a.Status == protocol.AlertDelivered })
	if a.TriggerID != id || a.Kind != protocol.AlertTriggerFired || a.Attempts != 1 || a.Detail != "ETH/USD at 2400" {
		t.Fatalf("alert %+v", a)
	}
	got := hook.deliveries()
	if len(got) != 1 || !got[0].verified || got[0].id != a.ID || got[0].payload.Alert.Title != spec.Name+" fired" ||
		!strings.EqualFold(got[0].payload.Vault, s.w.Address().Hex()) {
		t.Fatalf("the webhook received %+v", got)
	}

	o := testOptions(t)
	o.AlertsAllowPrivate = false
	strict := startNode(t, o, nil)
	s2 := strict.signIn(t, nil)
	_, err := s2.cmd(t, protocol.OpAlertsSet, protocol.AlertsArgs{Webhook: &protocol.WebhookChannel{URL: hook.url}})
	wantCode(t, err, protocol.CodeBadCommand)
	if !strings.Contains(err.Error(), "--alerts-allow-private") {
		t.Fatalf("a loopback webhook refused with %q; want the flag named", err)
	}
}

// TestAlertOutboxSurvivesSIGKILL: the webhook is down when the trigger
// fires; the node is killed while the alert waits for its next try. After
// the restart the alert is delivered: not lost, and every try carries the
// one alert's id, so the receiver keeps it once.
func TestAlertOutboxSurvivesSIGKILL(t *testing.T) {
	hook := newWebhook(t)
	hook.down.Store(true)
	data := t.TempDir()
	args := []string{"-alerts-allow-private"}
	p := startProc(t, data, args...)
	w, _ := client.NewWallet()
	s := p.signIn(t, w)
	set := s.alertsTo(t, hook.url)
	hook.secret.Store(&set.Webhook.Secret)
	spec := dip(2500)
	spec.Action = protocol.Action{Kind: "notify"}
	s.create(t, spec)
	p.publish(t, "ETH/USD", 2600)
	p.publish(t, "ETH/USD", 2400)
	a := s.alertWith(t, "a failed try", func(a protocol.Alert) bool { return a.Attempts >= 1 })
	if a.Status != protocol.AlertPending || !strings.Contains(a.LastError, "503") {
		t.Fatalf("after a 503 the alert is %+v", a)
	}
	p.kill()
	hook.down.Store(false)

	p = startProc(t, data, args...)
	deadline := time.Now().Add(30 * time.Second)
	for {
		ok := false
		for _, d := range hook.deliveries() {
			ok = ok || d.answered == http.StatusOK
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the alert was not delivered after the restart; the node's log:\n%s", p.log())
		}
		time.Sleep(20 * time.Millisecond)
	}
	ids := map[string]bool{}
	for _, d := range hook.deliveries() {
		ids[d.id] = true
		if !d.verified {
			t.Fatalf("a delivery's signature does not verify: %+v", d)
		}
	}
	if len(ids) != 1 || !ids[a.ID] {
		t.Fatalf("the webhook received alerts %v; want %s alone", ids, a.ID)
	}
	s = p.signIn(t, w)
	if a := s.alertWith(t, "the alert delivered", func(a protocol.Alert) bool { return a.Status == protocol.AlertDelivered }); a.Attempts < 2 {
		t.Fatalf("the delivered alert counts %d tries", a.Attempts)
	}
	if err := p.stop(syscall.SIGTERM, 20*time.Second); err != nil {
		t.Fatal(err)
	}
}

// TestAlertsOnEveryChannel: a vault with a webhook, a Telegram chat and a
// mail address gets each alert on all three. The address serves only once
// the owner enters the code mailed to it (a wrong code is refused; the
// code is in no frame the vault sends); a node without a bot or a mail
// server says what its operator must set.
func TestAlertsOnEveryChannel(t *testing.T) {
	mailSrv := smtptest.Start(t)
	bot := bottest.Start(t, "777:BOTTOKEN", "4242")
	hook := newWebhook(t)
	o := testOptions(t)
	o.SMTP, o.SMTPFrom, o.TelegramToken, o.TelegramAPI = mailSrv.URL(), "alerts@spells.example", "777:BOTTOKEN", bot.URL
	tn := startNode(t, o, nil)
	s := tn.signIn(t, nil)
	ack, err := s.cmd(t, protocol.OpAlertsSet, protocol.AlertsArgs{Webhook: &protocol.WebhookChannel{URL: hook.url},
		Telegram: &protocol.TelegramChannel{ChatID: "4242"}, Email: &protocol.EmailChannel{To: "owner@example.org"}})
	if err != nil {
		t.Fatal(err)
	}
	var set protocol.AlertSettings
	_ = json.Unmarshal(ack.Result, &set)
	if set.Email == nil || set.Email.Confirmed || len(set.Channels()) != 2 {
		t.Fatalf("settings before the code: %s", ack.Result)
	}
	hook.secret.Store(&set.Webhook.Secret)
	m := mailSrv.Wait(t, 1)[0]
	_, code, ok := strings.Cut(m.Body, "Confirmation code: ")
	if !ok || len(code) < 6 || m.To != "owner@example.org" {
		t.Fatalf("the confirmation mail: %+v", m)
	}
	code = code[:6]
	_, err = s.cmd(t, protocol.OpAlertsConfirm, protocol.ConfirmArgs{Code: "000000x"})
	wantCode(t, err, protocol.CodeBadCommand)
	ack, err = s.cmd(t, protocol.OpAlertsConfirm, protocol.ConfirmArgs{Code: code})
	if err != nil {
		t.Fatalf("the right code: %v", err)
	}
	_ = json.Unmarshal(ack.Result, &set)
	if !set.Email.Confirmed || len(set.Channels()) != 3 {
		t.Fatalf("settings after the code: %s", ack.Result)
	}

	spec := dip(2500)
	spec.Action = protocol.Action{Kind: "notify"}
	s.create(t, spec)
	tn.mustPublish(t, "ETH/USD", 2600)
	tn.mustPublish(t, "ETH/USD", 2400)
	for _, ch := range []string{protocol.ChannelWebhook, protocol.ChannelTelegram, protocol.ChannelEmail} {
		s.alertWith(t, ch+" delivered", func(a protocol.Alert) bool {
			return a.Channel == ch && a.Kind == protocol.AlertTriggerFired && a.Status == protocol.AlertDelivered
		})
	}
	if got := bot.Wait(t, 1); got[0].ChatID != "4242" || !strings.Contains(got[0].Text, spec.Name+" fired") {
		t.Fatalf("the bot sent %+v", got)
	}
	if ms := mailSrv.Wait(t, 2); !strings.Contains(ms[len(ms)-1].Header.Get("Subject"), spec.Name+" fired") {
		t.Fatalf("the alert mail: %v", ms[len(ms)-1].Header)
	}
	if d := hook.deliveries(); len(d) != 1 || !d[0].verified {
		t.Fatalf("the webhook received %+v", d)
	}
	seen, _ := json.Marshal(s.mirror)
	if strings.Contains(string(seen), "Confirmation code: ") || strings.Contains(string(seen), `"`+code+`"`) || strings.Contains(string(seen), " "+code) || strings.Contains(string(seen), "BOTTOKEN") {
		t.Fatalf("the vault showed the confirmation code or the bot's token: %s", seen)
	}

	bare := startNode(t, testOptions(t), nil)
	s2 := bare.signIn(t, nil)
	_, err = s2.cmd(t, protocol.OpAlertsSet, protocol.AlertsArgs{Telegram: &protocol.TelegramChannel{ChatID: "4242"}})
	if err == nil || !strings.Contains(err.Error(), "SPELLS_TELEGRAM_BOT_TOKEN") {
		t.Fatalf("a chat on a node without a bot: %v", err)
	}
	_, err = s2.cmd(t, protocol.OpAlertsSet, protocol.AlertsArgs{Email: &protocol.EmailChannel{To: "owner@example.org"}})
	if err == nil || !strings.Contains(err.Error(), "--smtp") {
		t.Fatalf("a mail address on a node without a mail server: %v", err)
	}
}

// TestAlertsByWebPush: the page subscribes with the node's push key (GET
// /v1/push/key); an alert reaches that browser encrypted for it; once its
// push service answers 410 the vault drops the subscription and says why.
func TestAlertsByWebPush(t *testing.T) {
	tn := startNode(t, testOptions(t), nil)
	res, err := http.Get("http://" + tn.addr + "/v1/push/key")
	if err != nil {
		t.Fatal(err)
	}
	var key struct{ PublicKey string }
	_ = json.NewDecoder(res.Body).Decode(&key)
	res.Body.Close()
	if len(key.PublicKey) != 87 {
		t.Fatalf("push key %q; want 65 bytes in base64url", key.PublicKey)
	}
	browser := pushtest.Start(t, key.PublicKey)
	s := tn.signIn(t, nil)
	ack, err := s.cmd(t, protocol.OpAlertsSet, protocol.AlertsArgs{Push: []protocol.PushSubscription{browser.Subscription()}})
	if err != nil {
		t.Fatalf("alerts.set with a push subscription: %v", err)
	}
	var set protocol.AlertSettings
	_ = json.Unmarshal(ack.Result, &set)
	if len(set.Push) != 1 || len(set.Push[0].ID) != 16 {
		t.Fatalf("settings %s", ack.Result)
	}
	spec := dip(2500)
	spec.Action = protocol.Action{Kind: "notify"}
	s.create(t, spec)
	tn.mustPublish(t, "ETH/USD", 2600)
	tn.mustPublish(t, "ETH/USD", 2400)
	if got := browser.Wait(t, 1); got[0]["title"] != "Spells: "+spec.Name+" fired" {
		t.Fatalf("the browser showed %+v", got)
	}
	s.alertWith(t, "the push delivered", func(a protocol.Alert) bool { return a.Status == protocol.AlertDelivered })

	browser.SetGone(true)
	tn.mustPublish(t, "ETH/USD", 2600)
	s2 := spec
	s2.Name = "again"
	s.create(t, s2)
	tn.mustPublish(t, "ETH/USD", 2400)
	a := s.alertWith(t, "the push failed", func(a protocol.Alert) bool { return a.Status == protocol.AlertFailed })
	if !strings.Contains(a.LastError, "410") {
		t.Fatalf("alert %+v", a)
	}
	s.mirrorUntil(t, "the subscription dropped", func() bool { return len(s.mirror.Alerts.Push) == 0 })
}
