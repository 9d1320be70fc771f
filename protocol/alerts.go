package protocol

// Alerts: where a vault's alerts go, which events raise one, and each
// alert as its outbox keeps it. PROTOCOL.md §"Alerts" documents the
// webhook's payload and signature.

// AlertSettings are a vault's: its channels and the events that raise an
// alert besides a notify action, which always does.
type AlertSettings struct {
	Webhook *WebhookChannel `json:"webhook,omitempty"`
	On      AlertRules      `json:"on"`
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
	IntentFailed bool `json:"intentFailed,omitempty"` // an intent refused, failed or reverted
}

// AlertsArgs are alerts.set's: the settings (a webhook's secret is the
// vault's, never sent), and RotateSecret to replace the webhook's secret.
type AlertsArgs struct {
	Webhook      *WebhookChannel `json:"webhook"`
	On           AlertRules      `json:"on"`
	RotateSecret bool            `json:"rotateSecret,omitempty"`
}

// Alert kinds.
const (
	AlertTriggerFired = "trigger.fired" // a notify action
	AlertIntentFailed = "intent.failed" // an intent refused, failed or reverted
	AlertDigest       = "digest"        // the alerts of a minute past the vault's limit, in one
)

// Alert delivery statuses.
const (
	AlertPending   = "pending"   // not delivered yet; tried again with backoff
	AlertDelivered = "delivered" // the channel answered 2xx
	AlertFailed    = "failed"    // given up: every try failed, or the channel refuses it for good
	AlertCoalesced = "coalesced" // one of too many at once: sent in a digest with the others, not alone
)

// Alert is one alert in the vault's outbox: written in the same
// transaction as the event that raised it, delivered once or more (each
// delivery carries ID, so a receiver drops a repeat).
type Alert struct {
	ID          string `json:"id"`
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
