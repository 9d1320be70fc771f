// Package notify delivers a vault's alerts: the node's Notifier posts each
// alert to the vault's webhook (signed with the vault's secret), its
// Telegram chat, its mail address or its browsers (Web Push), retries with
// backoff, and posts every outcome back to the vault, which keeps its
// outbox (vault/store: alerts) and shows the delivery log to its owner.
// A vault only queues an alert here; no vault waits on a channel.
//
// Files, from the ground up:
//   - guard.go: which addresses a delivery may reach (no server-side
//     request forgery: loopback and private ranges refused unless allowed).
//   - webhook.go: one webhook delivery: the payload, its signature, the
//     answer read as delivered, worth a retry, or refused for good.
//   - telegram.go: one chat message from the node's bot (the Bot API's
//     sendMessage), and an alert as text.
//   - email.go: one mail through the node's SMTP server, and the mail
//     that asks an address's confirmation code.
//   - push.go: the node's VAPID key, a browser's subscription checked, one
//     push encrypted for it (RFC 8291) under a VAPID token (RFC 8292).
//   - notifier.go: the Notifier: its queue, workers and retries.
package notify
