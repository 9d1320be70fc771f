// Package pushtest is a local Web Push endpoint for tests, standing for a
// browser's push service and the browser together: it checks each push's
// VAPID token against the node's key, decrypts the payload (RFC 8291) with
// the subscription's private key, and keeps what it read; it can answer
// 410 Gone as a push service does for a dropped subscription.
//
// Files, from the ground up:
//   - pushtest.go: the endpoint, its subscription and what it read.
package pushtest
