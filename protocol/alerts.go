package protocol

// Alerts: where a vault's alerts go, which events raise one, and each
// alert as its outbox keeps it. PROTOCOL.md §"Alerts" documents the
// webhook's payload and signature.

// AlertSettings are a vault's: its channels and the events that raise an
// alert besides a notify action, which always does.
type AlertSettings struct {
	Webhook  *WebhookChannel    `json:"webhook,omitempty"`
	Telegram *TelegramChannel   `json:"telegram,omitempty"`
	Email    *EmailChannel      `json:"email,omitempty"`
	Push     []PushSubscription `json:"push,omitempty"`
	On       AlertRules         `json:"on"`
}

// Channels are the channels an alert goes to: those set up (an e-mail
// address once confirmed).
func (s AlertSettings) Channels() []string {
	var out []string
	if s.Webhook != nil {
		out = append(out, ChannelWebhook)
	}
	if s.Telegram != nil {
		out = append(out, ChannelTelegram)
	}
	if s.Email != nil && s.Email.Confirmed {
		out = append(out, ChannelEmail)
	}
	for _, p := range s.Push {
		out = append(out, ChannelPush+":"+p.ID)
	}
	return out
}

// PushTo returns the push subscription a channel "push:<id>" names.
func (s AlertSettings) PushTo(channel string) (PushSubscription, bool) {
	for _, p := range s.Push {
		if ChannelPush+":"+p.ID == channel {
			return p, true
		}
	}
	return PushSubscription{}, false
}

// Alert channels.
const (
	ChannelWebhook  = "webhook"
	ChannelTelegram = "telegram"
	ChannelEmail    = "email"
	ChannelPush     = "push" // one channel per subscription: push:<its id>
)

// PushSubscription is a browser's Web Push subscription (what
// PushSubscription.toJSON() gives), and the id the vault gives it.
type PushSubscription struct {
	ID       string `json:"id,omitempty"` // the vault's: the first 16 hex digits of the endpoint's SHA-256
	Endpoint string `json:"endpoint"`
	Keys     struct {
		P256dh string `json:"p256dh"`
		Auth   string `json:"auth"`
	} `json:"keys"`
}

// TelegramChannel sends each alert as a message from the node's bot to
// ChatID (the owner starts a chat with the bot first; a bot cannot write
// to anyone who did not).
type TelegramChannel struct {
	ChatID string `json:"chatId"`
}

// EmailChannel mails each alert to To through the node's SMTP server, once
// the owner confirmed the address with the code mailed to it.
type EmailChannel struct {
	To        string `json:"to"`
	Confirmed bool   `json:"confirmed"`
}

// WebhookChannel posts each alert to URL, signed with Secret (HMAC-SHA256;
// the vault makes the secret when a webhook is first set and keeps it
// until the owner asks for a new one).
type WebhookChannel struct {
	URL    string `json:"url"`
	Secret string `json:"secret,omitempty"`
}

// AlertRules say which events raise an alert.
type AlertRules struct {
	IntentFailed bool `json:"intentFailed,omitempty"` // an intent refused, failed or reverted, or stuck
	Grants       bool `json:"grants,omitempty"`       // a grant's period allowance 90 % spent, its calls used up, its end near
}

// AlertsArgs are alerts.set's: the settings (a webhook's secret is the
// vault's, never sent), and RotateSecret to replace the webhook's secret.
type AlertsArgs struct {
	Webhook      *WebhookChannel    `json:"webhook"`
	Telegram     *TelegramChannel   `json:"telegram,omitempty"`
	Email        *EmailChannel      `json:"email,omitempty"`
	Push         []PushSubscription `json:"push,omitempty"`
	On           AlertRules         `json:"on"`
	RotateSecret bool               `json:"rotateSecret,omitempty"`
}

// ConfirmArgs are alerts.confirm's: the code mailed to the address set.
type ConfirmArgs struct {
	Code string `json:"code"`
}

// Alert kinds.
const (
	AlertTriggerFired = "trigger.fired"     // a notify action
	AlertIntentFailed = "intent.failed"     // an intent refused, failed or reverted
	AlertIntentStuck  = "intent.stuck"      // an intent in no block within the bump delay (its fees were raised)
	AlertGrantUsed    = "grant.used"        // a grant's period allowance 90 % spent, or its calls used up
	AlertGrantEnding  = "grant.expiring"    // a grant ends within three days
	AlertQuarantined  = "vault.quarantined" // the node set the vault's file aside as damaged
	AlertDigest       = "digest"            // the alerts of a minute past the vault's limit, in one
)

// Alert delivery statuses.
const (
	AlertPending   = "pending"   // not delivered yet; tried again with backoff
	AlertDelivered = "delivered" // the channel answered 2xx
	AlertFailed    = "failed"    // given up: every try failed, or the channel refuses it for good
	AlertCoalesced = "coalesced" // one of too many at once: sent in a digest with the others, not alone
)

// Alert is one alert to one channel in the vault's outbox: written in the
// same transaction as the event that raised it, delivered once or more
// (each delivery carries ID, so a receiver drops a repeat). An event
// raises one per channel set up; their ids share Event.
type Alert struct {
	ID          string `json:"id"`    // <event>:<channel>
	Event       string `json:"event"` // the event's id, the same on every channel
	Kind        string `json:"kind"`
	TriggerID   string `json:"triggerId,omitempty"`
	IntentID    string `json:"intentId,omitempty"`
	Title       string `json:"title"`
	Detail      string `json:"detail,omitempty"`
	At          int64  `json:"at"` // when the event happened (unix ms)
	Channel     string `json:"channel"`
	Status      string `json:"status"`
	Attempts    int    `json:"attempts"`
	LastError   string `json:"lastError,omitempty"`
	DeliveredAt int64  `json:"deliveredAt,omitempty"`
}

// WebhookPayload is the body a webhook receives.
type WebhookPayload struct {
	Vault string `json:"vault"`
	Alert Alert  `json:"alert"`
}
