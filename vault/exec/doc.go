// Package exec is an intent's life: what a firing wants done becomes a
// transaction the vault signs with its session key, within the grants its
// owner signed, and follows to its end on the chain (ARCHITECTURE.md §5
// draws its statuses, §8 its execution).
//
// The vault drives it on its own goroutine through a Runner: every step is
// one vault transaction and a pushed diff, taken only as the table of
// statuses allows. The node's Executor makes every chain call off the
// vaults' goroutines, and posts each result to the vault's inbox, like a
// signal; its retries wait on the node's clock.
//
// Files, from the ground up:
//   - chain.go, vault.go: what an intent needs of an EVM chain, and of
//     the vault it runs in.
//   - status.go: the statuses, the steps and the one table of moves.
//   - metrics.go: the moves counted, the illegal ones apart.
//   - revert.go: what a chain's errors mean (a revert, no answer, known).
//   - action.go: a swap (through the router, to the owner), a transfer or a
//     call resolved into calls.
//   - bound.go: a trigger's own grant: the rules its delegation must set,
//     the unsigned delegation to sign, and the check of a signed one.
//   - grants.go: the vault's check of a grant the owner adds.
//   - policy.go: the vault's check of the grants before it signs, and the
//     counters it reserves.
//   - read.go: a trigger's chain reads resolved into the calls the node
//     makes (a balance, a view function's number).
//   - event.go: a trigger's event filters resolved into what the node's
//     log watcher reads, and a log described in words.
//   - cost.go: what an intent's receipt says it cost and moved.
//   - usage.go: the alerts a grant's use calls for (allowance nearly spent,
//     calls used up, its end near).
//   - executor.go: the node's workers, chain watcher and retries.
//   - runner.go: a vault's runner, and the one setter of a status.
//   - send.go, sign.go, follow.go: sending, signing and replacing, and
//     following a transaction to its end.
//   - life.go: starting, resuming and moving intents on each result.
package exec
