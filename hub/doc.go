// Package hub owns the node's WebSocket sessions and its signals.
//
// A Hub accepts WebSockets (coder/websocket) after checking their Origin
// and what their source address may still cost before it signs in
// (limits.go), issues each socket a single-use sign-in nonce, hands
// sign-ins, resumes and commands to the node's vaults (Vaults: the vaults
// decide who may do what; the hub only routes), and queues the vaults'
// frames to every connection subscribed to them. Each connection has one
// read loop and one writer with a bounded queue; a reader too slow to
// drain its queue is disconnected with close code 4002 and resumes from
// its last version when it comes back.
//
// Signals (market data) arrive on a Bus. The in-memory bus serves a single
// node, and conflates rather than queues when values come faster than the
// node takes them; a Redis bus comes with the cluster. The hub keeps a
// short History per signal, gives each value to the vaults (which hand it
// only to those with a trigger it crosses, never waiting on one), and
// pushes it to every signed-in connection from a fan-out goroutine of its
// own, conflated per signal.
//
// Files, from the ground up:
//   - vaults.go: what the hub needs of the node's vaults.
//   - route.go: what forwarding needs of a cluster (a Router, streams).
//   - bus.go, history.go: signals, the in-memory bus, and their history.
//   - limits.go: what one source address may cost before it signs in.
//   - hijack.go: small buffers for an upgraded socket.
//   - wire.go: the bytes under a WebSocket: the hub's own framing, writes
//     that never wait, and the library's control frames in between.
//   - metrics.go: the hub's collectors.
//   - hub.go: the options, and the state of the hub and of a connection.
//   - socket.go: what a connection's writer writes to.
//   - close.go: closing a connection.
//   - write.go: a connection's write half: its queue, conflated signals,
//     heartbeats, and the write watch that cuts short a stuck writer.
//   - conn.go: a connection signing in, refusing a frame.
//   - fanout.go: live signals to every signed-in connection.
//   - forward.go: a session forwarded to the vault's node.
//   - session.go: sign-in, resume, revoke and commands.
//   - read.go: a connection's read half and the worker that handles its
//     frames in order.
//   - serve.go: the upgrade, a connection's life, sessions forwarded here,
//     and shutdown.
package hub
