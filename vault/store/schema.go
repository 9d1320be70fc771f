package store

import "zombiezen.com/go/sqlite/sqlitemigration"

// appID marks a SQLite file as a Spells vault; a file with another
// application id is refused when opened.
const appID = 0x5350454c // "SPEL"

// schema is the vault's append-only list of migrations; the applied count
// is kept in the file's user_version. Never edit a migration that has
// shipped: append a new one.
var schema = sqlitemigration.Schema{
	AppID: appID,
	Migrations: []string{
		`CREATE TABLE vault (
			id         INTEGER PRIMARY KEY CHECK (id = 1),
			address    TEXT NOT NULL,
			owner      TEXT NOT NULL,
			version    INTEGER NOT NULL,
			created_at INTEGER NOT NULL
		);
		CREATE TABLE triggers (
			id            TEXT PRIMARY KEY,
			spec          TEXT NOT NULL,
			status        TEXT NOT NULL,
			fires         INTEGER NOT NULL DEFAULT 0,
			last_fired_at INTEGER NOT NULL DEFAULT 0,
			state         TEXT NOT NULL,
			created_at    INTEGER NOT NULL,
			updated_at    INTEGER NOT NULL
		);
		CREATE TABLE intents (
			id         TEXT PRIMARY KEY,
			trigger_id TEXT NOT NULL,
			idem_key   TEXT NOT NULL UNIQUE,
			action     TEXT NOT NULL,
			status     TEXT NOT NULL,
			created_at INTEGER NOT NULL
		);
		CREATE TABLE evaluations (
			id         INTEGER PRIMARY KEY,
			trigger_id TEXT NOT NULL,
			at         INTEGER NOT NULL,
			cause      TEXT NOT NULL,
			value      REAL,
			outcome    TEXT NOT NULL,
			detail     TEXT NOT NULL DEFAULT ''
		);
		CREATE TABLE changes (
			version INTEGER PRIMARY KEY,
			at      INTEGER NOT NULL,
			changes TEXT NOT NULL
		);
		CREATE TABLE sessions (
			id         TEXT PRIMARY KEY,
			delegate   TEXT NOT NULL,
			created_at INTEGER NOT NULL,
			expires_at INTEGER NOT NULL,
			last_seq   INTEGER NOT NULL DEFAULT 0
		);
		CREATE TABLE nonces (
			nonce   TEXT PRIMARY KEY,
			used_at INTEGER NOT NULL
		);`,
		// A trigger's firings over its whole life: trigger.update starts
		// fires again, and the idempotency key <trigger>/<n> must never
		// repeat. Existing triggers start above every key they used (each
		// firing wrote one intent, and n never exceeded their count).
		`ALTER TABLE triggers ADD COLUMN fired_total INTEGER NOT NULL DEFAULT 0;
		UPDATE triggers SET fired_total = (SELECT COUNT(*) FROM intents WHERE intents.trigger_id = triggers.id);`,
		// The vault's keys (keys.go): its data key wrapped by the node's
		// key-encryption key, and its session keys sealed by the data key;
		// the current one has retired_at 0.
		`ALTER TABLE vault ADD COLUMN data_key BLOB;
		ALTER TABLE vault ADD COLUMN kek_id TEXT;
		CREATE TABLE session_keys (
			id         INTEGER PRIMARY KEY,
			address    TEXT NOT NULL,
			sealed     BLOB NOT NULL,
			created_at INTEGER NOT NULL,
			retired_at INTEGER NOT NULL DEFAULT 0
		);`,
		// Grants (grants.go): the signed delegations as the owner sent
		// them, and each delegation's hash and rules.
		`CREATE TABLE grants (
			id          TEXT PRIMARY KEY,
			status      TEXT NOT NULL,
			session_key TEXT NOT NULL,
			delegations TEXT NOT NULL,
			created_at  INTEGER NOT NULL,
			revoked_at  INTEGER NOT NULL DEFAULT 0
		);
		CREATE TABLE grant_delegations (
			hash     TEXT PRIMARY KEY,
			grant_id TEXT NOT NULL,
			rules    TEXT NOT NULL
		);`,
		// Execution (exec.go): an intent's transaction (tx, JSON as shown)
		// and why it ended (detail); every signed transaction it sent
		// (intent_txs, the raw bytes to send again); the session key's
		// next nonce; what the vault used of each delegation (actions.go).
		`ALTER TABLE intents ADD COLUMN detail TEXT NOT NULL DEFAULT '';
		ALTER TABLE intents ADD COLUMN tx TEXT NOT NULL DEFAULT '';
		ALTER TABLE intents ADD COLUMN updated_at INTEGER NOT NULL DEFAULT 0;
		ALTER TABLE vault ADD COLUMN next_nonce INTEGER NOT NULL DEFAULT 0;
		CREATE TABLE intent_txs (
			hash      TEXT PRIMARY KEY,
			intent_id TEXT NOT NULL,
			raw       BLOB NOT NULL,
			sent_at   INTEGER NOT NULL DEFAULT 0
		);
		CREATE INDEX intent_txs_intent ON intent_txs (intent_id);
		CREATE TABLE grant_calls (
			hash  TEXT PRIMARY KEY,
			calls INTEGER NOT NULL
		);
		CREATE TABLE grant_spend (
			hash   TEXT NOT NULL,
			period INTEGER NOT NULL,
			spent  TEXT NOT NULL,
			PRIMARY KEY (hash, period)
		);`,
		// Nodes (cluster): the vault's epoch, which rises at every move to
		// another node; the directory's home of the vault names it.
		// A move (move.go): the node it goes to and the epoch it has there,
		// written before the file is shipped; moved once the directory
		// names that node. A vault with move_to set refuses every write.
		`ALTER TABLE vault ADD COLUMN epoch INTEGER NOT NULL DEFAULT 1;
		ALTER TABLE vault ADD COLUMN move_to TEXT NOT NULL DEFAULT '';
		ALTER TABLE vault ADD COLUMN move_epoch INTEGER NOT NULL DEFAULT 0;
		ALTER TABLE vault ADD COLUMN moved INTEGER NOT NULL DEFAULT 0;`,
		// A trigger's own grant (grants.go): the trigger it serves, and
		// the grant each intent executes under (its delegation's hash).
		`ALTER TABLE grants ADD COLUMN trigger_id TEXT NOT NULL DEFAULT '';
		ALTER TABLE intents ADD COLUMN grant_id TEXT NOT NULL DEFAULT '';`,
		// The node's firing journal (vault/journal): the number of the
		// last of its records this vault applied, so none applies twice.
		`ALTER TABLE vault ADD COLUMN journal_seq INTEGER NOT NULL DEFAULT 0;`,
		// Alerts (alerts.go): the vault's settings (JSON), the code that
		// confirms its mail address (never in a diff), and its outbox:
		// each alert written with the event that raised it, kept with its
		// delivery's status.
		// An intent's signal value at its firing (NULL: an alarm's).
		`ALTER TABLE vault ADD COLUMN alerts TEXT NOT NULL DEFAULT '';
		ALTER TABLE intents ADD COLUMN fired_value REAL;
		ALTER TABLE vault ADD COLUMN alert_code TEXT NOT NULL DEFAULT '';
		CREATE TABLE alerts (
			id     TEXT PRIMARY KEY,
			at     INTEGER NOT NULL,
			status TEXT NOT NULL,
			data   TEXT NOT NULL
		);
		CREATE INDEX alerts_at ON alerts (at);
		CREATE INDEX alerts_pending ON alerts (status) WHERE status = 'pending';`,
	},
}

// SchemaAt is the schema as its first n migrations left it: a file of an
// older node, for tests of what a migration does to it.
func SchemaAt(n int) sqlitemigration.Schema {
	return sqlitemigration.Schema{AppID: appID, Migrations: schema.Migrations[:n]}
}
