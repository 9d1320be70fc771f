// Package client is a Go client for a Spells node: it signs in with an
// Ethereum key (SIWE + a fresh P-256 delegate), sends delegate-signed
// commands with increasing sequence numbers, receives the snapshot, diffs
// and signals, and resumes a session after a reconnect from its last
// version. The tests and the bench drive nodes with it, as any external
// client would.
//
// Wallet (wallet.go) builds and signs sign-in messages without a network;
// Conn (client.go) speaks the protocol over a WebSocket.
//
// Files, from the ground up:
//   - json.go: encoding a command's arguments.
//   - wallet.go: an account key that signs sign-in messages.
//   - mirror.go: a vault's copy kept from its snapshot and diffs.
//   - client.go: one session: dial, sign in, commands, resume.
package client
