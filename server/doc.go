// Command server runs a Spells node: `go run ./server`. With no flags it
// serves one node on :8080 with data in ./data, no Redis, and the demo
// signal feed on. See OPERATING.md for every flag.
//
// Files, from the ground up:
//   - options.go: the flags, their environment variables and checks.
//   - masterkey.go: the key-encryption key: from a file, the environment, or
//     a dev key.
//   - bus.go: the signal bus the node runs: in memory, or Redis in a cluster.
//   - cluster.go: the cluster's parts: its secret, the node's id and address,
//     the directory, links and handoff.
//   - vaults.go: the vault manager adapted to what the hub and the cluster
//     need of it.
//   - chain.go: the chain the node executes on.
//   - faucet.go: the dev chain's faucet, its requests journaled so a crash
//     loses none.
//   - relay.go: the dashboard's chain requests relayed to the chain.
//   - txview.go: one transaction as a block explorer shows it, decoded
//     with the contracts the node knows.
//   - signals.go: POST /v1/signals.
//   - history.go: the signals' recent points, kept across restarts.
//   - demo.go: the demo price feed.
//   - feeds.go: the chain's price feeds, read at every block and published
//     as signals with their source.
//   - reads.go: the chain reads the vaults' read conditions wait on, made
//     at every block and published as their signals.
//   - moves.go: the moves the vaults' move conditions wait on, made from
//     each value of their signal and published as their signals.
//   - events.go: the logs the vaults' event conditions wait on, read at
//     every block into a cache of recent logs, and older ones for a
//     vault's ask, back to its cursor.
//   - admin.go: drain and forget-node, the admin endpoints.
//   - backup.go: -backup's shipper, and POST /v1/admin/restore.
//   - limiter.go: a token bucket per source address.
//   - create.go: the bound on new vaults (per address, per node, an
//     allowlist).
//   - journal.go: the signal journal: an accepted signal is durable before
//     its 202, and published again at the next start.
//   - debug.go: pprof and the node's own metrics on the debug listener.
//   - daemon.go: the running node's state, its processors, logger and node
//     key.
//   - starting.go: what the node answers over HTTP while it starts, and the
//     disk probe at start.
//   - server.go: wiring the parts, the HTTP routes, serving, and the ordered
//     shutdown.
//   - healthcheck.go: `spells healthcheck`, a container's health check.
//   - main.go: main.
package main
