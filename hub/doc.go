// Package hub owns the node's WebSocket sessions and its signals.
//
// A Hub accepts WebSockets (coder/websocket) after checking their Origin
// and what their source address may still cost before it signs in
// (limits.go), issues each socket a single-use sign-in nonce, hands
// sign-ins, resumes and
// commands to the vault they name (the vault decides who may do what; the
// hub only routes), and fans the vault's frames out to every connection
// subscribed to it. Each connection has one read loop and one writer with a
// bounded queue; a reader too slow to drain its queue is disconnected with
// close code 4002 and resumes from its last version when it comes back.
//
// Signals (market data) arrive on a Bus. The in-memory bus serves a single
// node, and conflates rather than queues when values come faster than the
// node takes them; a Redis bus comes with the cluster. The hub keeps a
// short History per signal, gives each value to the vault Manager (which
// hands it only to vaults with a trigger it crosses, never waiting on one),
// and pushes it to every signed-in connection from a fan-out goroutine of
// its own, conflated per signal.
//
// Start with hub.go (construction, HTTP handler, fan-out, shutdown), then
// conn.go (a session), read.go and write.go (its two halves).
package hub
