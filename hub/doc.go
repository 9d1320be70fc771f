// Package hub owns the node's WebSocket sessions and its signals.
//
// A Hub accepts WebSockets (coder/websocket) after checking their Origin,
// issues each socket a single-use sign-in nonce, hands sign-ins, resumes and
// commands to the vault they name (the vault decides who may do what; the
// hub only routes), and fans the vault's frames out to every connection
// subscribed to it. Each connection has one read loop and one writer with a
// bounded queue; a reader too slow to drain its queue is disconnected with
// close code 4002 and resumes from its last version when it comes back.
//
// Signals (market data) arrive on a Bus. The in-memory bus serves a single
// node; a Redis bus comes with the cluster. The hub keeps a short History
// per signal, pushes each value to every signed-in connection as live data,
// and gives it to the vault Manager, which wakes only vaults with a trigger
// on that signal.
//
// Start with hub.go (construction, HTTP handler, shutdown), then conn.go.
package hub
