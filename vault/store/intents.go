package store

import (
	"encoding/json"
	"fmt"
	"strings"

	"zombiezen.com/go/sqlite"

	"github.com/spells-dev/spells/protocol"
)

// Intents: what a firing wants done, and every signed transaction it sent
// (the raw bytes, to send again, never signed anew).

// intentColumns are intentRow's columns, in its order.
const intentColumns = `id, trigger_id, idem_key, action, status, created_at, detail, tx, updated_at, grant_id, fired_value`

// intentRow reads an intent from the columns intentColumns names.
func intentRow(s *sqlite.Stmt) (protocol.Intent, error) {
	in := protocol.Intent{ID: s.ColumnText(0), TriggerID: s.ColumnText(1), IdempotencyKey: s.ColumnText(2),
		Status: s.ColumnText(4), CreatedAt: s.ColumnInt64(5), Detail: s.ColumnText(6), UpdatedAt: s.ColumnInt64(8), Grant: s.ColumnText(9)}
	if err := json.Unmarshal([]byte(s.ColumnText(3)), &in.Action); err != nil {
		return in, fmt.Errorf("intent %s action: %w", in.ID, err)
	}
	if s.ColumnType(10) != sqlite.TypeNull {
		v := s.ColumnFloat(10)
		in.FiredValue = &v
	}
	if tx := s.ColumnText(7); tx != "" {
		in.Tx = &protocol.IntentTx{}
		if err := json.Unmarshal([]byte(tx), in.Tx); err != nil {
			return in, fmt.Errorf("intent %s tx: %w", in.ID, err)
		}
	}
	return in, nil
}

// readIntents runs query, whose columns are intentColumns, and collects
// its rows.
func readIntents(conn *sqlite.Conn, query string, args ...any) ([]protocol.Intent, error) {
	out := []protocol.Intent{}
	err := each(conn, query, func(s *sqlite.Stmt) error {
		in, err := intentRow(s)
		out = append(out, in)
		return err
	}, args...)
	if err != nil {
		return nil, fmt.Errorf("read intents: %w", err)
	}
	return out, nil
}

// InsertIntent records a new intent.
func InsertIntent(conn *sqlite.Conn, in protocol.Intent) error {
	action, err := json.Marshal(in.Action)
	if err != nil {
		return err
	}
	var fired any
	if in.FiredValue != nil {
		fired = *in.FiredValue
	}
	return exec(conn, `INSERT INTO intents (id, trigger_id, idem_key, action, status, created_at, grant_id, fired_value) VALUES (?, ?, ?, ?, ?, ?, ?, ?);`,
		in.ID, in.TriggerID, in.IdempotencyKey, string(action), in.Status, in.CreatedAt, in.Grant, fired)
}

// UpdateIntent writes an intent's status, detail, transaction and time of
// update.
func UpdateIntent(conn *sqlite.Conn, in protocol.Intent) error {
	txJSON := ""
	if in.Tx != nil {
		b, err := json.Marshal(in.Tx)
		if err != nil {
			return err
		}
		txJSON = string(b)
	}
	return exec(conn, `UPDATE intents SET status = ?, detail = ?, tx = ?, updated_at = ? WHERE id = ?;`,
		in.Status, in.Detail, txJSON, in.UpdatedAt, in.ID)
}

// LoadIntent reads one intent.
func LoadIntent(conn *sqlite.Conn, id string) (protocol.Intent, bool, error) {
	ins, err := readIntents(conn, `SELECT `+intentColumns+` FROM intents WHERE id = ?;`, id)
	if err != nil || len(ins) == 0 {
		return protocol.Intent{}, false, err
	}
	return ins[0], true, nil
}

// statusList is "?, ?, …" for n statuses, and them as arguments.
func statusList(statuses []string) (string, []any) {
	args := make([]any, len(statuses))
	for i, s := range statuses {
		args[i] = s
	}
	return strings.TrimSuffix(strings.Repeat("?, ", len(statuses)), ", "), args
}

// IntentsWith reads the intents in one of statuses, oldest first.
func IntentsWith(conn *sqlite.Conn, statuses ...string) ([]protocol.Intent, error) {
	list, args := statusList(statuses)
	return readIntents(conn, `SELECT `+intentColumns+` FROM intents WHERE status IN (`+list+`) ORDER BY rowid;`, args...)
}

// AnyIntentWith reports whether an intent is in one of statuses.
func AnyIntentWith(conn *sqlite.Conn, statuses ...string) (bool, error) {
	list, args := statusList(statuses)
	return exists(conn, `SELECT 1 FROM intents WHERE status IN (`+list+`) LIMIT 1;`, args...)
}

// RecentIntents returns the last n intents, oldest first.
func RecentIntents(conn *sqlite.Conn, n int) ([]protocol.Intent, error) {
	return readIntents(conn, `SELECT `+intentColumns+` FROM
		(SELECT rowid AS r, * FROM intents ORDER BY rowid DESC LIMIT ?) ORDER BY r;`, n)
}

// OlderIntents returns up to n intents recorded before the intent with id
// before (empty: the newest), of trigger if it is set, newest first.
func OlderIntents(conn *sqlite.Conn, before, trigger string, n int) ([]protocol.Intent, error) {
	return readIntents(conn, `SELECT `+intentColumns+` FROM intents
		WHERE rowid < COALESCE((SELECT rowid FROM intents WHERE id = ?), 9223372036854775807)
		AND (? = '' OR trigger_id = ?) ORDER BY rowid DESC LIMIT ?;`, before, trigger, trigger, n)
}

// AddSignedTx stores a signed transaction of intent, by its hash.
func AddSignedTx(conn *sqlite.Conn, hash, intent string, raw []byte) error {
	return exec(conn, `INSERT INTO intent_txs (hash, intent_id, raw, sent_at) VALUES (?, ?, ?, 0);`, hash, intent, raw)
}

// SignedTx reads a stored signed transaction's bytes (nil if there is none).
func SignedTx(conn *sqlite.Conn, hash string) ([]byte, error) {
	var raw []byte
	err := each(conn, `SELECT raw FROM intent_txs WHERE hash = ?;`, func(s *sqlite.Stmt) error { raw = columnBytes(s, 0); return nil }, hash)
	return raw, err
}

// MarkSent records that a signed transaction was (last) sent at unix ms at.
func MarkSent(conn *sqlite.Conn, hash string, at int64) error {
	return exec(conn, `UPDATE intent_txs SET sent_at = ? WHERE hash = ?;`, at, hash)
}

// SentAt is when a signed transaction was last sent (unix ms), 0 if never.
func SentAt(conn *sqlite.Conn, hash string) (int64, error) {
	var at int64
	err := each(conn, `SELECT sent_at FROM intent_txs WHERE hash = ?;`, func(s *sqlite.Stmt) error { at = s.ColumnInt64(0); return nil }, hash)
	return at, err
}

// IntentCount is how many intents trigger recorded, over its whole life.
func IntentCount(conn *sqlite.Conn, trigger string) (int64, error) {
	var n int64
	err := each(conn, `SELECT COUNT(*) FROM intents WHERE trigger_id = ?;`, func(s *sqlite.Stmt) error { n = s.ColumnInt64(0); return nil }, trigger)
	return n, err
}
