// Package protocol owns the Spells wire format: the JSON frames exchanged over
// the WebSocket subprotocol [Subprotocol], the error codes a client can act on,
// Sign-In with Ethereum (EIP-4361) parsing and verification, the server-issued
// sign-in nonces, and the P-256 delegate signatures that authenticate every
// command.
//
// Start with frames.go (what travels on the socket), then siwe.go and
// ethsig.go (how a wallet proves who it is), then delegate.go (how every
// later command proves it comes from that signed-in session). PROTOCOL.md at
// the repository root documents the same format for clients in any language.
//
// The package imports only the standard library and go-ethereum's crypto, so
// both the server and external clients (see package client) can use it.
//
// Files, from the ground up:
//   - errors.go: the error codes and close codes.
//   - jsonerr.go: why a JSON value could not be read, in the project's
//     own words.
//   - chain.go: the chain a node executes on, as GET /v1/chain serves it.
//   - state.go: a vault's state as a dashboard sees it (triggers,
//     intents, evaluations, grants, sessions).
//   - alerts.go: a vault's alert settings, its alerts, a webhook's body.
//   - command.go: the commands and their arguments.
//   - export.go: vault.export's answer and the check of its hash chain.
//   - frames.go: every frame on the socket.
//   - ethsig.go: EIP-191 signatures and recovery.
//   - signal.go: where a signal value came from, and a publisher's
//     signature of one.
//   - siwe.go: Sign-In with Ethereum messages.
//   - nonce.go: sign-in nonces any node with the key can check.
//   - delegate.go: the P-256 delegate key and the bytes it signs.
package protocol
