package actor

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"math/big"
	"strconv"
	"strings"
	"time"

	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/vault/notify"
	"github.com/spells-dev/spells/vault/rules"
	"github.com/spells-dev/spells/vault/store"
)

// Alerts: the vault's channels (alerts.set, alerts.confirm), the alerts its
// events raise, one per channel, each written in the event's own
// transaction (so a crash loses none and a replayed event raises none
// twice), their delivery by the node's Notifier once that transaction
// commits, and what each try came to.

const (
	// alertLogKeep is how many delivered or failed alerts the outbox keeps.
	alertLogKeep = 200
	// A mail address is confirmed with a code mailed to it, good for
	// codeTTL and codeTries wrong guesses (counted while the vault runs).
	codeTTL   = 30 * time.Minute
	codeTries = 5
	// alertConfirm is the kind of the mail that asks the code.
	alertConfirm = "email.confirm"
	// maxPush is how many browsers a vault's alerts are pushed to.
	maxPush = 10
)

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
	n := v.cfg.Notifier
	next := protocol.AlertSettings{On: a.On}
	if a.Webhook != nil {
		url := strings.TrimSpace(a.Webhook.URL)
		if a.Webhook.Secret != "" {
			return nil, protocol.Errorf(protocol.CodeBadCommand, "a webhook's secret is made by the vault: leave it out (rotateSecret makes a new one)")
		}
		if err := notify.CheckURL(url, n != nil && n.AllowPrivate()); err != nil {
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
	}
	if a.Telegram != nil {
		if n == nil || !n.HasTelegram() {
			return nil, protocol.Errorf(protocol.CodeBadCommand, "this node has no Telegram bot: its operator sets SPELLS_TELEGRAM_BOT_TOKEN")
		}
		chat := strings.TrimSpace(a.Telegram.ChatID)
		if err := notify.CheckChat(chat); err != nil {
			return nil, protocol.Errorf(protocol.CodeBadCommand, "%s", err.Error())
		}
		next.Telegram = &protocol.TelegramChannel{ChatID: chat}
	}
	if len(a.Push) > 0 {
		if n == nil || !n.HasPush() {
			return nil, protocol.Errorf(protocol.CodeBadCommand, "this node has no push key: Web Push is off")
		}
		if len(a.Push) > maxPush {
			return nil, protocol.Errorf(protocol.CodeBadCommand, "at most %d browsers get a vault's alerts by push", maxPush)
		}
		seen := map[string]bool{}
		for _, p := range a.Push {
			if err := notify.CheckSubscription(p, n.AllowPrivate()); err != nil {
				return nil, protocol.Errorf(protocol.CodeBadCommand, "%s", err.Error())
			}
			sum := sha256.Sum256([]byte(p.Endpoint))
			p.ID = hex.EncodeToString(sum[:8])
			if !seen[p.ID] {
				seen[p.ID] = true
				next.Push = append(next.Push, p)
			}
		}
	}
	askCode := false
	if a.Email != nil {
		if n == nil || !n.HasMail() {
			return nil, protocol.Errorf(protocol.CodeBadCommand, "this node has no mail server: its operator sets --smtp and --smtp-from")
		}
		to := strings.TrimSpace(a.Email.To)
		if err := notify.CheckAddress(to); err != nil {
			return nil, protocol.Errorf(protocol.CodeBadCommand, "%s", err.Error())
		}
		if cur.Email != nil && strings.EqualFold(cur.Email.To, to) {
			next.Email = cur.Email
		} else {
			next.Email = &protocol.EmailChannel{To: to}
			askCode = true
		}
	}
	if len(next.Channels()) == 0 && next.Email == nil {
		if names := v.notifyTriggers(); len(names) > 0 {
			return nil, protocol.Errorf(protocol.CodeBadCommand, "the vault's alert channels cannot all go while trigger %s notifies: change or delete it first", strings.Join(names, ", "))
		}
	}
	if err := store.SetAlertSettings(v.conn, next); err != nil {
		return nil, err
	}
	if err := t.Put(protocol.KindAlerts, "alerts", next); err != nil {
		return nil, err
	}
	if askCode {
		if err := v.askCode(t, next); err != nil {
			return nil, err
		}
	} else if next.Email == nil {
		if err := store.SetAlertCode(v.conn, "", 0); err != nil {
			return nil, err
		}
	}
	return next, nil
}

// askCode makes a new confirmation code for the address in s and mails it.
func (v *Vault) askCode(t *store.Tx, s protocol.AlertSettings) error {
	d, _ := rand.Int(rand.Reader, big.NewInt(1_000_000))
	code := fmt.Sprintf("%06d", d.Int64())
	if err := store.SetAlertCode(v.conn, code, t.Now.UnixMilli()); err != nil {
		return err
	}
	v.codeMisses = 0
	event := "confirm-" + strconv.FormatInt(t.Now.UnixNano(), 36)
	a := protocol.Alert{ID: event + ":" + protocol.ChannelEmail, Event: event, Kind: alertConfirm, Channel: protocol.ChannelEmail,
		Title: "Confirmation code sent to " + s.Email.To, At: t.Now.UnixMilli(), Status: protocol.AlertPending}
	return v.putAlert(t, a, s, code)
}

// confirmAlerts is alerts.confirm: the code mailed to the address set.
func (v *Vault) confirmAlerts(t *store.Tx, raw json.RawMessage) (any, error) {
	var a protocol.ConfirmArgs
	if err := decodeArgs(raw, &a); err != nil {
		return nil, err
	}
	s, err := store.AlertSettings(v.conn)
	if err != nil {
		return nil, err
	}
	if s.Email == nil || s.Email.Confirmed {
		return nil, protocol.Errorf(protocol.CodeBadCommand, "no mail address waits for its code: set one with alerts.set")
	}
	code, made, err := store.AlertCode(v.conn)
	if err != nil {
		return nil, err
	}
	switch {
	case code == "" || t.Now.Sub(time.UnixMilli(made)) > codeTTL:
		return nil, protocol.Errorf(protocol.CodeBadCommand, "the code mailed to %s has expired: save the address again for a new one", s.Email.To)
	case v.codeMisses >= codeTries:
		return nil, protocol.Errorf(protocol.CodeBadCommand, "too many wrong codes: save the address again for a new one")
	case strings.TrimSpace(a.Code) != code:
		v.codeMisses++
		return nil, protocol.Errorf(protocol.CodeBadCommand, "that is not the code mailed to %s", s.Email.To)
	}
	s.Email.Confirmed = true
	if err := store.SetAlertSettings(v.conn, s); err != nil {
		return nil, err
	}
	if err := store.SetAlertCode(v.conn, "", 0); err != nil {
		return nil, err
	}
	return s, t.Put(protocol.KindAlerts, "alerts", s)
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
	if len(s.Channels()) == 0 {
		return protocol.Errorf(protocol.CodeInvalidTrigger, "a notify action needs an alert channel: set up a webhook, a Telegram chat or a confirmed mail address first (alerts.set, or Alerts on the dashboard)")
	}
	return nil
}

// raiseFired writes the alerts of a notify intent, in its firing's
// transaction.
func (v *Vault) raiseFired(t *store.Tx, ev rules.Event, tr *rules.Trigger, in protocol.Intent) error {
	detail := ev.Cause
	if sig, ok := strings.CutPrefix(ev.Cause, "signal:"); ok && ev.HasValue {
		detail = readName(tr, sig) + " at " + strconv.FormatFloat(ev.Value, 'f', -1, 64)
	} else if ev.Log != nil {
		detail = ev.Log.Detail // the event, its arguments, its block and transaction
	}
	return v.raise(t, protocol.Alert{Event: "fired-" + in.ID, Kind: protocol.AlertTriggerFired, TriggerID: tr.ID, IntentID: in.ID,
		Title: tr.Name + " fired", Detail: detail, At: ev.Now.UnixMilli()})
}

// raise writes the alert of event a.Event in t, one per channel set up, if
// the vault's settings ask for one of its kind, and queues each delivery
// once t commits. An event already in the outbox (a journaled firing
// applied again) is not raised twice. Without a channel it is kept as
// failed, saying so.
func (v *Vault) raise(t *store.Tx, a protocol.Alert) error {
	s, err := store.AlertSettings(v.conn)
	if err != nil {
		return err
	}
	switch {
	case (a.Kind == protocol.AlertIntentFailed || a.Kind == protocol.AlertIntentStuck) && !s.On.IntentFailed,
		(a.Kind == protocol.AlertGrantUsed || a.Kind == protocol.AlertGrantEnding) && !s.On.Grants:
		return nil
	}
	channels := s.Channels()
	if len(channels) == 0 {
		channels = []string{""}
	}
	for _, ch := range channels {
		row := a
		row.ID, row.Channel, row.Status = a.Event+":"+ch, ch, protocol.AlertPending
		if ch == "" {
			row.ID, row.Status, row.LastError = a.Event+":none", protocol.AlertFailed, "no alert channel is set up"
		}
		if _, ok, err := store.GetAlert(v.conn, row.ID); err != nil || ok {
			return err
		}
		if err := v.putAlert(t, row, s, ""); err != nil {
			return err
		}
	}
	return nil
}

// putAlert writes a new alert and, if it is pending, queues its delivery
// once t commits.
func (v *Vault) putAlert(t *store.Tx, a protocol.Alert, s protocol.AlertSettings, code string) error {
	if err := store.PutAlert(v.conn, a); err != nil {
		return err
	}
	if err := store.TrimAlerts(v.conn, alertLogKeep); err != nil {
		return err
	}
	if a.Status == protocol.AlertPending {
		t.Then(func() { v.deliver(s, a, code) })
	}
	return t.Put(protocol.KindAlert, a.ID, a)
}

func (v *Vault) deliver(s protocol.AlertSettings, a protocol.Alert, code string) {
	if v.cfg.Notifier != nil {
		v.cfg.Notifier.Send(notify.Job{Vault: v.id, Settings: s, Alert: a, Code: code})
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
		if r.Gone {
			if err := v.dropPush(t, a.Channel); err != nil {
				return err
			}
		}
		return t.Put(protocol.KindAlert, a.ID, a)
	})
	if err != nil {
		v.fault("record alert "+a.ID, err)
	}
}

// dropPush removes the push subscription a channel names (its push
// service dropped it).
func (v *Vault) dropPush(t *store.Tx, channel string) error {
	s, err := store.AlertSettings(v.conn)
	if err != nil {
		return err
	}
	kept := s.Push[:0:0]
	for _, p := range s.Push {
		if protocol.ChannelPush+":"+p.ID != channel {
			kept = append(kept, p)
		}
	}
	if len(kept) == len(s.Push) {
		return nil
	}
	s.Push = kept
	if err := store.SetAlertSettings(v.conn, s); err != nil {
		return err
	}
	return t.Put(protocol.KindAlerts, "alerts", s)
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
	code, _, err := store.AlertCode(v.conn)
	if err != nil {
		v.fault("read alert settings", err)
		return
	}
	for _, a := range as {
		c := ""
		if a.Kind == alertConfirm {
			c = code
		}
		v.deliver(s, a, c)
	}
}

// readName is how an alert names a signal: a chain read by what it reads
// (the owner's balance of a token, or the function called), a move by the
// signal that moves and its window, any other signal by its name.
func readName(tr *rules.Trigger, signal string) string {
	if !strings.HasPrefix(signal, protocol.ReadPrefix) && !strings.HasPrefix(signal, protocol.MovePrefix) {
		return signal
	}
	name := signal
	rules.WalkLeaves(&tr.Condition, func(c *protocol.Condition) {
		switch {
		case c.Signal == signal && c.Move != nil:
			name = c.Move.Of + "'s move (%) within " + (time.Duration(c.Move.WindowMs) * time.Millisecond).String()
		case c.Signal != signal || c.Read == nil:
		case strings.EqualFold(c.Read.Balance, "native"):
			name = "your ETH balance"
		case c.Read.Balance != "":
			name = "your " + c.Read.Balance + " balance"
		default:
			fn, _, _ := strings.Cut(c.Read.Function, " returns")
			name = c.Read.Contract + "." + fn
		}
	})
	return name
}
