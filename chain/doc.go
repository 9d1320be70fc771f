// Package chain connects a Spells node to an EVM chain: the embedded dev
// chain (a go-ethereum node in the process, its state in the data
// directory, blocks on an interval, JSON-RPC on loopback, the delegation
// framework and a demo market deployed at first start), or any node over
// JSON-RPC. Both are served to the vaults by one Client (exec.Chain).
//
// Files, from the ground up:
//   - client.go: the Client the vaults execute through, Dial for a JSON-RPC
//     chain, and waiting for a transaction to be mined.
//   - deploy.go: deploying the delegation framework, the demo tokens, pool,
//     router and price feed on a chain, and verifying a deployment (feeds'
//     decimals included).
//   - trader.go: the demo trader that moves the feed and swaps on the pool,
//     and the pool's price.
//   - dev.go: the embedded dev chain: its node, miner, faucet and JSON-RPC on
//     loopback.
package chain
