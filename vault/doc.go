// Package vault owns the Spells vault: an actor that is at once one user's
// database and execution engine.
//
// Each vault is one goroutine and one SQLite file. The goroutine is fed by a
// mailbox of closures (see vault.go) and is the only code that touches the
// vault's *sqlite.Conn and its in-memory triggers; there are no locks around
// vault state. Every state change is one immediate transaction that bumps
// the vault's version and appends the change to a log in the same
// transaction, so dashboards can get a snapshot at version N and then
// exactly the diffs after it.
//
// Where to read:
//   - manager.go: the Manager opens, creates and closes vaults on a node and
//     routes sign-ins, resumes, signals and alarms to them; life.go is a
//     vault's life on the node as one state machine (the file slots, the
//     evictions, the invariant tests check); inbox.go is how signals and
//     alarms reach vaults without ever waiting on one; scan.go is the
//     start-up scan; janitor.go hibernates and dozes idle vaults.
//   - vault.go: the actor, its mailbox and its transactions; file.go opens
//     and (atomically) creates its file; doze.go closes it when idle;
//     batch.go is the group commit.
//   - identity.go and command.go: the Fortress checks. The vault itself
//     verifies every sign-in (SIWE + EIP-191), resume and command (P-256
//     delegate signature, sequence number, vault and session binding).
//   - triggers.go and eval.go: trigger validation, CRUD, and evaluation of
//     conditions on signals and alarms, recording evaluations and intents.
//   - quarantine.go: what a damaged file or a full disk does (one vault can
//     never take the node down).
//   - store.go and schema.go: the SQL.
//   - time is injected (internal/clock), so tests move a fake clock instead of
//     sleeping.
package vault
