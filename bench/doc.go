// Command bench drives a running Spells node from outside, as real clients
// do (signed sign-ins, signed commands over WebSockets), and reports what
// it measured as a table and as JSON.
//
//	go run ./bench fanout      -node http://127.0.0.1:8080 -token T -vaults 10000 -connected 2000
//	go run ./bench peer        -node http://127.0.0.1:8080 -token T -centrifugo PATH -cpus 0 -dashboards 10000
//	go run ./bench commands    -node http://127.0.0.1:8080 -clients 64 -duration 10s -save /tmp/acked.json
//	  (restart the node)
//	go run ./bench verify      -node http://127.0.0.1:8080 -from /tmp/acked.json
//	go run ./bench connections -node http://127.0.0.1:8080 -conns 15000
//	go run ./bench storm       -node http://127.0.0.1:8080 -signins 10000 [-restart "CMD"]
//	go run ./bench cold        -node http://127.0.0.1:8080 -vaults 1000 -debug http://127.0.0.1:6060
//	go run ./bench baseline    -node http://127.0.0.1:8080 -token T -users 10000 -baseline-dsn postgres://…
//	go run ./bench execute     -node http://127.0.0.1:8080 -token T -vaults 50
//	go run ./bench events      -node http://127.0.0.1:8080 -token T -vaults 200 -rounds 5
//	go run ./bench cluster     -nodes http://127.0.0.1:8081,http://127.0.0.1:8082,http://127.0.0.1:8083 -single http://127.0.0.1:8090 -token T
//
// peer puts the same fan-out on the node and on a Centrifugo (v6) the
// bench starts itself: bench/peerpair.sh builds Centrifugo from its Go
// module, pins both servers to one CPU and the bench to the other, and
// prints the ratios (Spells over Centrifugo) of p99, CPU per delivered
// message and memory per dashboard, measured in the same run.
//
// cluster drives three nodes of one cluster (and, for its single-node
// figure, a node without -redis); BENCHMARKS.md, "A cluster of three
// nodes", has the commands that start them.
//
// The bench's clients all come from one address, so the node it drives
// must run without the limits per source address:
//
//	go run ./server -signal-token T -demo=false -chain-rpc none -max-pending-per-ip 0 -signin-rate-per-ip 0 -new-vaults-per-ip 0 -new-vaults-per-minute 0 -command-rate 100000 -command-burst 100000
//
// (-chain-rpc none: these scenarios measure the node without a chain, so
// the dev chain's blocks do not share the cores.) execute and events need
// the dev chain instead, with its JSON-RPC on and its demo feed off (and,
// for events, -alerts-allow-private: its notify triggers' webhook is the
// bench's own, on loopback):
//
//	go run ./server -signal-token T -demo=false -dev-chain-rpc 127.0.0.1:18545 -max-pending-per-ip 0 -signin-rate-per-ip 0 -new-vaults-per-ip 0 -new-vaults-per-minute 0
//
// -debug names the node's -debug-listen address: the bench then forces a
// garbage collection on the node before reading its memory, and polls the
// node's counters from /debug/metrics there instead of /metrics.
//
// -poll is the pause between reads of the node's counters while the bench
// times a tick (fanout's firing, baseline): default 5ms. Each read costs
// the node about 1 ms of CPU from /metrics and 0.27 ms from /debug/metrics
// (which leaves out the process and Go runtime metrics), so a longer pause
// takes less from the work being timed and marks its times less precisely.
//
// The node's memory and CPU come from its /metrics (process metrics). Each
// scenario's file says what it does; report.go prints the results.
//
// Files, from the ground up:
//   - report.go: what a scenario measured, and how it is printed.
//   - node.go: the node under test: publishing signals, reading its
//     counters, its CPU and memory.
//   - users.go: signed-in users made in parallel, and the trigger most
//     scenarios give them.
//   - saved.go: the vaults commands -save writes for verify to read.
//   - profile.go: a CPU profile of the node split between its embedded
//     dev chain and the rest (execute).
//   - centrifugo.go: a Centrifugo server the bench runs, and its clients
//     on Centrifugo's JSON protocol.
//   - fanout.go, peer.go, commands.go, connections.go, storm.go, cold.go,
//     baseline.go, execute.go, events.go, cluster.go, verify.go, backup.go: one
//     scenario each (backup against a node run with -backup and
//     -admin-token; peer with its dashboards in child processes of the
//     bench, "peer-clients").
//   - main.go: the scenario named on the command line.
package main
