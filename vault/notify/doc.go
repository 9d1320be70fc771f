// Package notify delivers a vault's alerts: the node's Notifier posts each
// alert to the vault's webhook, signed with the vault's secret, retries
// with backoff, and posts every outcome back to the vault, which keeps its
// outbox (vault/store: alerts) and shows the delivery log to its owner.
// A vault only queues an alert here; no vault waits on a channel.
//
// Files, from the ground up:
//   - guard.go: which addresses a delivery may reach (no server-side
//     request forgery: loopback and private ranges refused unless allowed).
//   - webhook.go: one webhook delivery: the payload, its signature, the
//     answer read as delivered, worth a retry, or refused for good.
//   - notifier.go: the Notifier: its queue, workers and retries.
package notify
