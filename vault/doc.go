// Package vault hosts a node's vaults: the Manager starts each vault's
// actor (package actor) when something needs it, routes sign-ins, signals,
// alarms and chain results to it, puts it to sleep when it is idle, keeps
// what the node must know of it while it sleeps (its next alarm, the
// thresholds it reacts to), sets a damaged file aside, and moves vaults to
// and from other nodes. Its parts below it: actor (one vault's goroutine),
// exec (an intent's life), rules (what triggers mean), store (a vault's
// SQLite file), keys (its sealed keys).
//
// Two state machines hold a vault's standing on the node, each with one
// setter and one table: an instance's life (life.go: opening, open,
// dozing, closing…), and the vault's place (place.go: held, quarantined,
// leaving, moved, arriving…).
//
// Files, from the ground up:
//   - place.go, life.go: the two tables.
//   - index.go: the interest index, which finds the vaults a signal value
//     crosses without touching the others.
//   - metrics.go, config.go: the collectors, and the options with their
//     defaults.
//   - manager.go: the manager's state, and the goroutines it owns.
//   - places.go: a vault's moves between places.
//   - slots.go: an instance's moves in its life, the file slots MaxOpen
//     bounds, and evictions.
//   - route.go: signals, alarms and chain results routed to vaults without
//     waiting on one.
//   - storage.go: a full disk, and the probe that finds room again.
//   - quarantine.go: a damaged file set aside.
//   - instance.go: what an instance tells the manager (actor.Host).
//   - acquire.go: starting an instance.
//   - fire.go: hibernated vaults fired without opening them: the firing
//     journal (package journal) written in batches, its records handed to
//     the vaults, applied, and replayed at start.
//   - waker.go: starting instances for the events that wait for them, then
//     for the journal's records.
//   - move.go: moving a vault to or from another node.
//   - events.go: the log watcher as the vaults use it: telling a vault of
//     logs past its cursor, its asks, and the logs handed back.
//   - signin.go: the node's half of sign-in, resume and revoke.
//   - restore.go: restores in place: the copy read from the backup off the
//     vault's goroutine, then handed to the vault.
//   - scan.go: the start-up scan of every vault file.
//   - integrity.go: every closed file read in the background (quick_check),
//     a damaged one quarantined.
//   - janitor.go: idle vaults put to sleep; the disk probed; files the scan
//     could not read tried again.
//   - node.go: NewManager, Start, Close, and what the node tells of its
//     vaults.
package vault
