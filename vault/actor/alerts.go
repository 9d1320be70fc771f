package actor

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"strconv"
	"strings"

	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/vault/notify"
	"github.com/spells-dev/spells/vault/rules"
	"github.com/spells-dev/spells/vault/store"
)

// Alerts: the vault's settings (alerts.set), the alerts its events raise,
// each written in the event's own transaction (so a crash loses none and
// a replayed event raises none twice), their delivery by the node's
// Notifier once that transaction commits, and what each try came to.

// alertLogKeep is how many delivered or failed alerts the outbox keeps.
const alertLogKeep = 200

// setAlerts is alerts.set.
func (v *Vault) setAlerts(t *store.Tx, raw json.RawMessage) (any, error) {
	var a protocol.AlertsArgs
	if err := decodeArgs(raw, &a); err != nil {
		return nil, err
	}
	cur, err := store.AlertSettings(v.conn)
	if err != nil {
		return nil, err
	}
	next := protocol.AlertSettings{On: a.On}
	if a.Webhook != nil {
		url := strings.TrimSpace(a.Webhook.URL)
		if a.Webhook.Secret != "" {
			return nil, protocol.Errorf(protocol.CodeBadCommand, "a webhook's secret is made by the vault: leave it out (rotateSecret makes a new one)")
		}
		if err := notify.CheckURL(url, v.cfg.Notifier != nil && v.cfg.Notifier.AllowPrivate()); err != nil {
			return nil, protocol.Errorf(protocol.CodeBadCommand, "%s", err.Error())
		}
		secret := ""
		if cur.Webhook != nil && !a.RotateSecret {
			secret = cur.Webhook.Secret
		} else {
			b := make([]byte, 32)
			_, _ = rand.Read(b)
			secret = "whsec_" + hex.EncodeToString(b)
		}
		next.Webhook = &protocol.WebhookChannel{URL: url, Secret: secret}
	} else if names := v.notifyTriggers(); len(names) > 0 {
		return nil, protocol.Errorf(protocol.CodeBadCommand, "the vault's only alert channel cannot go while trigger %s notifies: change or delete it first", strings.Join(names, ", "))
	}
	if err := store.SetAlertSettings(v.conn, next); err != nil {
		return nil, err
	}
	if err := t.Put(protocol.KindAlerts, "alerts", next); err != nil {
		return nil, err
	}
	return next, nil
}

// notifyTriggers are the quoted names of the active or paused triggers
// whose action is notify.
func (v *Vault) notifyTriggers() []string {
	var out []string
	for _, tr := range v.triggers {
		if tr.Action.Kind == "notify" && (tr.Status == protocol.StatusActive || tr.Status == protocol.StatusPaused) {
			out = append(out, strconv.Quote(tr.Name))
		}
	}
	return out
}

// checkNotify refuses a notify action while the vault has no channel to
// deliver its alerts on, saying what to set up.
func (v *Vault) checkNotify(spec protocol.TriggerSpec) error {
	if spec.Action.Kind != "notify" {
		return nil
	}
	s, err := store.AlertSettings(v.conn)
	if err != nil {
		return err
	}
	if s.Webhook == nil {
		return protocol.Errorf(protocol.CodeInvalidTrigger, "a notify action needs an alert channel: set a webhook first (alerts.set, or Alerts on the dashboard)")
	}
	return nil
}

// raiseFired writes the alert of a notify intent, in its firing's
// transaction.
func (v *Vault) raiseFired(t *store.Tx, ev rules.Event, tr *rules.Trigger, in protocol.Intent) error {
	detail := ev.Cause
	if sig, ok := strings.CutPrefix(ev.Cause, "signal:"); ok && ev.HasValue {
		detail = sig + " at " + strconv.FormatFloat(ev.Value, 'f', -1, 64)
	}
	return v.raise(t, protocol.Alert{ID: "fired-" + in.ID, Kind: protocol.AlertTriggerFired, TriggerID: tr.ID, IntentID: in.ID,
		Title: tr.Name + " fired", Detail: detail, At: ev.Now.UnixMilli()})
}

// raise writes alert a in t if the vault's settings ask for one of its
// kind, and queues its delivery once t commits. An alert already in the
// outbox (a journaled firing applied again) is not raised twice. Without
// a channel it is kept as failed, saying so.
func (v *Vault) raise(t *store.Tx, a protocol.Alert) error {
	s, err := store.AlertSettings(v.conn)
	if err != nil {
		return err
	}
	if a.Kind == protocol.AlertIntentFailed && !s.On.IntentFailed {
		return nil
	}
	if _, ok, err := store.GetAlert(v.conn, a.ID); err != nil || ok {
		return err
	}
	a.Status, a.Channel = protocol.AlertPending, "webhook"
	if s.Webhook == nil {
		a.Status, a.Channel, a.LastError = protocol.AlertFailed, "", "no alert channel is set up"
	}
	if err := store.PutAlert(v.conn, a); err != nil {
		return err
	}
	if err := store.TrimAlerts(v.conn, alertLogKeep); err != nil {
		return err
	}
	if a.Status == protocol.AlertPending {
		t.Then(func() { v.deliver(*s.Webhook, a) })
	}
	return t.Put(protocol.KindAlert, a.ID, a)
}

func (v *Vault) deliver(w protocol.WebhookChannel, a protocol.Alert) {
	if v.cfg.Notifier != nil {
		v.cfg.Notifier.Send(notify.Job{Vault: v.id, Webhook: w, Alert: a})
	}
}

// alertResult records what a delivery try came to; a late or repeated one
// (the alert is no longer pending) changes nothing. Resume queues every
// pending alert again (the node started).
func (v *Vault) alertResult(r *notify.Result) {
	if r.Resume {
		v.resumeAlerts()
		return
	}
	a, ok, err := store.GetAlert(v.conn, r.Alert)
	if err != nil {
		v.fault("read alert "+r.Alert, err)
		return
	}
	if !ok || a.Status != protocol.AlertPending || (r.Status != protocol.AlertCoalesced && r.Attempts <= a.Attempts) {
		return
	}
	a.Status, a.Attempts, a.LastError = r.Status, r.Attempts, r.Err
	if r.Status == protocol.AlertDelivered {
		a.DeliveredAt, a.LastError = r.At, ""
	}
	_, err = v.write(func(t *store.Tx) error {
		if err := store.PutAlert(v.conn, a); err != nil {
			return err
		}
		return t.Put(protocol.KindAlert, a.ID, a)
	})
	if err != nil {
		v.fault("record alert "+a.ID, err)
	}
}

// resumeAlerts queues again every alert the outbox holds pending.
func (v *Vault) resumeAlerts() {
	as, err := store.PendingAlerts(v.conn)
	if err != nil {
		v.fault("read pending alerts", err)
		return
	}
	s, err := store.AlertSettings(v.conn)
	if err != nil {
		v.fault("read alert settings", err)
		return
	}
	var w protocol.WebhookChannel
	if s.Webhook != nil {
		w = *s.Webhook
	}
	for _, a := range as {
		v.deliver(w, a)
	}
}
