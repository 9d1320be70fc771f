// Package actor is one vault: a goroutine that owns one SQLite file and is
// at once one user's database and execution engine. It is the thin piece
// that ties the others: the store (its file), the rules (what its triggers
// mean), exec (its intents' lives) and keys (its sealed keys); the host
// (package vault) runs its goroutine, routes work to it and decides when
// it sleeps.
//
// The goroutine is fed by a mailbox of letters (closures its callers post
// and may wait on) and an inbox of events (signal values, alarms, chain
// results, pushed without waiting). Only it touches the vault's
// *sqlite.Conn and its in-memory state; no lock guards them. Every state
// change is one transaction that bumps the vault's version and appends the
// change to a log, so dashboards get a snapshot at version N and then
// exactly the diffs after it.
//
// Files, from the ground up:
//   - config.go, errors.go, metrics.go, args.go: what every vault shares,
//     what it answers when it cannot serve, its counters, and reading a
//     command's arguments.
//   - inbox.go: events and the bounded queue they wait in.
//   - vault.go: the vault, its subscribers, and what the host reads of it.
//   - fault.go: what an error of its file does (quarantine, a full disk).
//   - tx.go: its transactions, the group commit, the diff they push.
//   - keys.go: its sealed keys read, made and rotated; signing.
//   - triggers.go: trigger commands, checked by the rules.
//   - eval.go: triggers evaluated on an event, and what the host is told.
//   - events.go: an event condition's logs asked for from its cursor and
//     taken one transaction each, the bound's skipped logs told.
//   - sessions.go, nonces.go: its sessions and the nonces it has seen.
//   - file.go: opening, creating, loading and closing its file, and what
//     it gives the backup.
//   - asleep.go: firing a sleeping vault's triggers without its file (the
//     host's side), and the vault applying the firing journal's records.
//   - summary.go: what the host keeps of a sleeping vault, read from its
//     file.
//   - grants.go: grant.add and grant.revoke.
//   - intents.go: what it lends its intents' runner.
//   - alerts.go: alerts.set, the alerts its events raise (its outbox), and
//     what each delivery came to.
//   - mailbox.go: letters, and waiting on them.
//   - view.go: its snapshot, catch-up, activity and balances; Detach,
//     State and Inspect.
//   - doze.go: hibernating and dozing when idle.
//   - identity.go: the vault's half of sign-in, resume and revoke.
//   - restore.go: a restore in place: the triggers of a backup copy, as
//     one new version, and the restore frame.
//   - command.go: a signed command checked and applied.
//   - run.go: the goroutine, the group commit, the events, and the host's
//     letters (rest, move out).
package actor
