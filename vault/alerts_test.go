package vault

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spells-dev/spells/protocol"
)

// hookReceiver is a webhook endpoint that keeps every alert it receives.
type hookReceiver struct {
	URL string
	mu  sync.Mutex
	got []protocol.WebhookPayload
}

func newHookReceiver(t *testing.T) *hookReceiver {
	h := &hookReceiver{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var p protocol.WebhookPayload
		if json.Unmarshal(b, &p) == nil {
			h.mu.Lock()
			h.got = append(h.got, p)
			h.mu.Unlock()
		}
	}))
	t.Cleanup(srv.Close)
	h.URL = srv.URL
	return h
}

func (h *hookReceiver) alerts() []protocol.WebhookPayload {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]protocol.WebhookPayload(nil), h.got...)
}

// TestNotifyNeedsAChannel: a notify trigger is refused until the vault has
// a webhook, saying what to set up; the channel cannot go while a notify
// trigger needs it; the secret is the vault's and survives an edit.
func TestNotifyNeedsAChannel(t *testing.T) {
	e := newEnv(t)
	e.latest["ETH/USD"] = 2600
	u := e.newUser()
	spec := protocol.TriggerSpec{Name: "tell me", Action: protocol.Action{Kind: "notify"}, Condition: below("ETH/USD", 2500)}
	_, err := u.cmd(t, protocol.OpTriggerCreate, spec)
	wantCode(t, err, protocol.CodeInvalidTrigger)
	if !strings.Contains(err.Error(), "set up a webhook") {
		t.Fatalf("refusal %q does not say what to set up", err)
	}
	_, err = u.cmd(t, protocol.OpAlertsSet, protocol.AlertsArgs{Webhook: &protocol.WebhookChannel{URL: "ftp://x"}})
	wantCode(t, err, protocol.CodeBadCommand)
	_, err = u.cmd(t, protocol.OpAlertsSet, protocol.AlertsArgs{Webhook: &protocol.WebhookChannel{URL: "https://h.example/", Secret: "mine"}})
	wantCode(t, err, protocol.CodeBadCommand)

	hook := newHookReceiver(t)
	ack := u.mustCmd(t, protocol.OpAlertsSet, protocol.AlertsArgs{Webhook: &protocol.WebhookChannel{URL: hook.URL}})
	var set protocol.AlertSettings
	_ = json.Unmarshal(ack.Result, &set)
	if set.Webhook == nil || !strings.HasPrefix(set.Webhook.Secret, "whsec_") {
		t.Fatalf("alerts.set answered %s", ack.Result)
	}
	u.create(t, spec)
	_, err = u.cmd(t, protocol.OpAlertsSet, protocol.AlertsArgs{})
	wantCode(t, err, protocol.CodeBadCommand)
	if !strings.Contains(err.Error(), `"tell me"`) {
		t.Fatalf("refusal %q does not name the trigger", err)
	}
	ack = u.mustCmd(t, protocol.OpAlertsSet, protocol.AlertsArgs{Webhook: &protocol.WebhookChannel{URL: hook.URL}, On: protocol.AlertRules{IntentFailed: true}})
	var again protocol.AlertSettings
	_ = json.Unmarshal(ack.Result, &again)
	if again.Webhook.Secret != set.Webhook.Secret || !again.On.IntentFailed {
		t.Fatalf("an edit changed the secret or dropped a rule: %s", ack.Result)
	}
	st := u.state(t)
	if st.Alerts.Webhook == nil || st.Alerts.Webhook.URL != hook.URL || !st.Alerts.On.IntentFailed {
		t.Fatalf("the snapshot shows the settings as %+v", st.Alerts)
	}

	// The crossing raises the alert in the firing's transaction; the
	// webhook gets it, and the outbox says so.
	e.signal(t, u, "ETH/USD", 2400)
	deadline := time.Now().Add(10 * time.Second)
	for {
		log := u.state(t).AlertLog
		if len(log) == 1 && log[0].Status == protocol.AlertDelivered {
			a := log[0]
			if a.Kind != protocol.AlertTriggerFired || a.Title != "tell me fired" || a.Detail != "ETH/USD at 2400" || a.Attempts != 1 || a.DeliveredAt == 0 {
				t.Fatalf("alert %+v", a)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("alert log %+v; the webhook got %d", log, len(hook.alerts()))
		}
		time.Sleep(10 * time.Millisecond)
	}
	got := hook.alerts()
	if len(got) != 1 || got[0].Alert.Title != "tell me fired" || !strings.EqualFold(got[0].Vault, u.w.Address().Hex()) {
		t.Fatalf("the webhook received %+v", got)
	}
}
