package vault

import (
	"encoding/json"
	"io"
	"math/big"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"

	"github.com/spells-dev/spells/chain"
	"github.com/spells-dev/spells/delegation"
	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/vault/exec"
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

// alertKinds waits until the vault's alert log holds every kind in want,
// delivered, and returns the log.
func alertKinds(t *testing.T, u *user, want ...string) []protocol.Alert {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		log := u.state(t).AlertLog
		have := map[string]bool{}
		for _, a := range log {
			if a.Status == protocol.AlertDelivered {
				have[a.Kind] = true
			}
		}
		all := true
		for _, k := range want {
			all = all && have[k]
		}
		if all {
			return log
		}
		if time.Now().After(deadline) {
			t.Fatalf("alert log %+v; want %v delivered", log, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestGrantAlerts: an intent that spends 95 % of its grant's daily
// allowance, uses its one call and runs under a grant that ends in two
// days raises the three grant alerts, each once, with the amounts in the
// token's units; a vault that does not ask for grant alerts gets none.
func TestGrantAlerts(t *testing.T) {
	ce := newChainEnv(t)
	ce.latest["X"] = 15
	u, _ := ce.funded(t, true)
	hook := newHookReceiver(t)
	u.mustCmd(t, protocol.OpAlertsSet, protocol.AlertsArgs{Webhook: &protocol.WebhookChannel{URL: hook.URL},
		On: protocol.AlertRules{IntentFailed: true, Grants: true}})
	end := uint64(ce.clock.Now().Add(48 * time.Hour).Unix())
	ce.grant(t, u, delegation.Rules{MaxCalls: 1, NotAfter: end, Token: &delegation.TokenPeriod{Token: ce.token("dUSD"),
		Period: delegation.Period{Amount: chain.Units(10), Duration: 86400, Start: 1}}})
	stranger := common.BytesToAddress(crypto.Keccak256([]byte("payee"))[:20])
	u.create(t, protocol.TriggerSpec{Name: "pay", Condition: below("X", 10),
		Action: actionOf("transfer", protocol.TransferParams{Token: "dUSD", To: stranger.Hex(), Amount: "9.5"})})
	ce.cross(t, u)
	in := waitIntent(t, u)
	if !confirmed(in.Status) {
		t.Fatalf("the transfer: %s %q", in.Status, in.Detail)
	}
	// Money as money: what it cost, what it moved, what the firing saw, and
	// what the grant has left.
	if in.FiredValue == nil || *in.FiredValue != 5 || in.Tx.Fee == "" || in.Tx.Fee == "0" || in.Tx.GasPrice == "" ||
		len(in.Tx.Moved) != 1 || in.Tx.Moved[0] != (protocol.TokenMove{Token: "dUSD", Amount: "9.5"}) {
		t.Fatalf("the intent's money: fired at %v, tx %+v", in.FiredValue, in.Tx)
	}
	st := u.state(t)
	if len(st.Grants) != 1 || st.Grants[0].Delegations[0].Used == nil || st.Grants[0].Delegations[0].Used.Calls != 1 ||
		st.Grants[0].Delegations[0].Used.Spent != new(big.Int).Div(chain.Units(19), big.NewInt(2)).String() {
		t.Fatalf("the grant's use: %+v", st.Grants[0].Delegations[0].Used)
	}
	log := alertKinds(t, u, protocol.AlertGrantUsed, protocol.AlertGrantEnding)
	var titles []string
	for _, a := range log {
		titles = append(titles, a.Title+": "+a.Detail)
	}
	all := strings.Join(titles, "\n")
	for _, want := range []string{"A grant is 95% used this period: 9.5 of 10 dUSD per day", "A grant's calls are used up: 1 of 1", "A grant ends within three days"} {
		if strings.Count(all, want) != 1 {
			t.Errorf("want %q once in the alerts:\n%s", want, all)
		}
	}
}

// TestStuckIntentAlert: an intent in no block within the bump delay (its
// fees raised) raises one alert; it then confirms as usual.
func TestStuckIntentAlert(t *testing.T) {
	ce := newChainEnv(t)
	ce.latest["X"] = 15
	u, _ := ce.funded(t, true)
	hook := newHookReceiver(t)
	u.mustCmd(t, protocol.OpAlertsSet, protocol.AlertsArgs{Webhook: &protocol.WebhookChannel{URL: hook.URL}, On: protocol.AlertRules{IntentFailed: true}})
	ce.payTrigger(t, u, "2")
	low := func(p *exec.Prepared) { p.Tip = big.NewInt(1) } // no block takes it
	ce.hooks.Exec.Price.Store(&low)
	ce.cross(t, u)
	waitFor(t, "the intent sent", func() bool {
		st := u.state(t)
		return len(st.Intents) > 0 && st.Intents[len(st.Intents)-1].Status == protocol.IntentSubmitted
	})
	ce.clock.Advance(ce.m.cfg.BumpAfter)
	log := alertKinds(t, u, protocol.AlertIntentStuck)
	stuck := 0
	for _, a := range log {
		if a.Kind == protocol.AlertIntentStuck {
			stuck++
		}
	}
	if in := waitIntent(t, u); !confirmed(in.Status) {
		t.Fatalf("after the stuck alert: %s %q", in.Status, in.Detail)
	}
	if stuck != 1 {
		t.Fatalf("%d stuck alerts; want 1", stuck)
	}
}
