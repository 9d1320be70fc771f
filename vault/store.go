package vault

import (
	"encoding/json"
	"fmt"
	"math"
	"time"

	"zombiezen.com/go/sqlite"
	"zombiezen.com/go/sqlite/sqlitex"

	"github.com/spells-dev/spells/protocol"
)

// This file holds the vault's SQL. Every function runs on the vault's
// goroutine with its connection; writes run inside Vault.write.

func exec(conn *sqlite.Conn, query string, args ...any) error {
	return sqlitex.Execute(conn, query, &sqlitex.ExecOptions{Args: args})
}

func loadTriggers(conn *sqlite.Conn) (map[string]*trigger, error) {
	out := map[string]*trigger{}
	err := sqlitex.ExecuteTransient(conn, `SELECT id, spec, status, fires, last_fired_at, state, created_at, updated_at, fired_total FROM triggers;`,
		&sqlitex.ExecOptions{ResultFunc: func(s *sqlite.Stmt) error {
			t := &trigger{}
			t.ID = s.ColumnText(0)
			if err := json.Unmarshal([]byte(s.ColumnText(1)), &t.TriggerSpec); err != nil {
				return fmt.Errorf("trigger %s spec: %w", t.ID, err)
			}
			t.Status = s.ColumnText(2)
			t.Fires = s.ColumnInt64(3)
			t.LastFiredAt = s.ColumnInt64(4)
			if err := json.Unmarshal([]byte(s.ColumnText(5)), &t.state); err != nil {
				return fmt.Errorf("trigger %s state: %w", t.ID, err)
			}
			t.CreatedAt, t.UpdatedAt, t.firedTotal = s.ColumnInt64(6), s.ColumnInt64(7), s.ColumnInt64(8)
			t.NextDueAt = t.scheduleDue()
			out[t.ID] = t
			return nil
		}})
	if err != nil {
		return nil, fmt.Errorf("load triggers: %w", err)
	}
	return out, nil
}

func saveTrigger(conn *sqlite.Conn, t *trigger) error {
	spec, err := json.Marshal(t.TriggerSpec)
	if err != nil {
		return err
	}
	state, err := json.Marshal(t.state)
	if err != nil {
		return err
	}
	return exec(conn, `INSERT OR REPLACE INTO triggers (id, spec, status, fires, last_fired_at, state, created_at, updated_at, fired_total)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?);`,
		t.ID, string(spec), t.Status, t.Fires, t.LastFiredAt, string(state), t.CreatedAt, t.UpdatedAt, t.firedTotal)
}

func deleteTrigger(conn *sqlite.Conn, id string) error {
	return exec(conn, `DELETE FROM triggers WHERE id = ?;`, id)
}

func insertIntent(conn *sqlite.Conn, in protocol.Intent) error {
	action, err := json.Marshal(in.Action)
	if err != nil {
		return err
	}
	return exec(conn, `INSERT INTO intents (id, trigger_id, idem_key, action, status, created_at) VALUES (?, ?, ?, ?, ?, ?);`,
		in.ID, in.TriggerID, in.IdempotencyKey, string(action), in.Status, in.CreatedAt)
}

// insertEvaluation writes e, sets its id, and trims the log to keep rows
// every trimEvery ids (as the change log), not at each: one statement
// less in every firing's transaction, and the log holds between keep and
// keep+trimEvery-1 rows.
func insertEvaluation(conn *sqlite.Conn, e *protocol.Evaluation, keep int) error {
	var value any
	if e.Value != nil {
		value = *e.Value
	}
	if err := exec(conn, `INSERT INTO evaluations (trigger_id, at, cause, value, outcome, detail) VALUES (?, ?, ?, ?, ?, ?);`,
		e.TriggerID, e.At, e.Cause, value, e.Outcome, e.Detail); err != nil {
		return err
	}
	e.ID = conn.LastInsertRowID()
	if e.ID%trimEvery != 0 {
		return nil
	}
	return exec(conn, `DELETE FROM evaluations WHERE id <= ?;`, e.ID-int64(keep))
}

func recentIntents(conn *sqlite.Conn, n int) ([]protocol.Intent, error) {
	return readIntents(conn, `SELECT `+intentColumns+` FROM
		(SELECT rowid AS r, * FROM intents ORDER BY rowid DESC LIMIT ?) ORDER BY r;`, n)
}

func recentEvaluations(conn *sqlite.Conn, n int) ([]protocol.Evaluation, error) {
	return readEvaluations(conn, `SELECT id, trigger_id, at, cause, value, outcome, detail FROM
		(SELECT * FROM evaluations ORDER BY id DESC LIMIT ?) ORDER BY id;`, n)
}

// readIntents runs query, whose columns are intentRow's, and collects its
// rows.
func readIntents(conn *sqlite.Conn, query string, args ...any) ([]protocol.Intent, error) {
	out := []protocol.Intent{}
	err := sqlitex.Execute(conn, query, &sqlitex.ExecOptions{Args: args, ResultFunc: func(s *sqlite.Stmt) error {
		in, err := intentRow(s)
		out = append(out, in)
		return err
	}})
	if err != nil {
		return nil, fmt.Errorf("read intents: %w", err)
	}
	return out, nil
}

// readEvaluations runs query, whose columns are evaluationRow's, and
// collects its rows.
func readEvaluations(conn *sqlite.Conn, query string, args ...any) ([]protocol.Evaluation, error) {
	out := []protocol.Evaluation{}
	err := sqlitex.Execute(conn, query, &sqlitex.ExecOptions{Args: args, ResultFunc: func(s *sqlite.Stmt) error {
		out = append(out, evaluationRow(s))
		return nil
	}})
	if err != nil {
		return nil, fmt.Errorf("read evaluations: %w", err)
	}
	return out, nil
}

// intentColumns are intentRow's columns, in its order.
const intentColumns = `id, trigger_id, idem_key, action, status, created_at, detail, tx, updated_at`

// intentRow reads an intent from the columns intentColumns names.
func intentRow(s *sqlite.Stmt) (protocol.Intent, error) {
	in := protocol.Intent{ID: s.ColumnText(0), TriggerID: s.ColumnText(1), IdempotencyKey: s.ColumnText(2),
		Status: s.ColumnText(4), CreatedAt: s.ColumnInt64(5), Detail: s.ColumnText(6), UpdatedAt: s.ColumnInt64(8)}
	if err := json.Unmarshal([]byte(s.ColumnText(3)), &in.Action); err != nil {
		return in, fmt.Errorf("intent %s action: %w", in.ID, err)
	}
	if tx := s.ColumnText(7); tx != "" {
		in.Tx = &protocol.IntentTx{}
		if err := json.Unmarshal([]byte(tx), in.Tx); err != nil {
			return in, fmt.Errorf("intent %s tx: %w", in.ID, err)
		}
	}
	return in, nil
}

// evaluationRow reads an evaluation from columns id, trigger_id, at,
// cause, value, outcome, detail.
func evaluationRow(s *sqlite.Stmt) protocol.Evaluation {
	e := protocol.Evaluation{ID: s.ColumnInt64(0), TriggerID: s.ColumnText(1), At: s.ColumnInt64(2),
		Cause: s.ColumnText(3), Outcome: s.ColumnText(5), Detail: s.ColumnText(6)}
	if s.ColumnType(4) != sqlite.TypeNull {
		val := s.ColumnFloat(4)
		e.Value = &val
	}
	return e
}

// diffsSince returns the diff frames after version since. ok is false when
// the log no longer reaches back that far (the caller sends a snapshot).
func (v *Vault) diffsSince(since uint64) (frames [][]byte, ok bool, err error) {
	if since == v.version {
		return nil, true, nil
	}
	var oldest int64 = -1
	if err := sqlitex.Execute(v.conn, `SELECT MIN(version) FROM changes;`, &sqlitex.ExecOptions{
		ResultFunc: func(s *sqlite.Stmt) error {
			if s.ColumnType(0) != sqlite.TypeNull {
				oldest = s.ColumnInt64(0)
			}
			return nil
		}}); err != nil {
		return nil, false, fmt.Errorf("read change log: %w", err)
	}
	if oldest < 0 || uint64(oldest) > since+1 {
		return nil, false, nil
	}
	err = sqlitex.Execute(v.conn, `SELECT version, at, changes FROM changes WHERE version > ? ORDER BY version;`,
		&sqlitex.ExecOptions{Args: []any{int64(since)}, ResultFunc: func(s *sqlite.Stmt) error {
			var ch []protocol.Change
			if err := json.Unmarshal([]byte(s.ColumnText(2)), &ch); err != nil {
				return err
			}
			frames = append(frames, v.diffFrame(uint64(s.ColumnInt64(0)), s.ColumnInt64(1), ch))
			return nil
		}})
	if err != nil {
		return nil, false, fmt.Errorf("read change log: %w", err)
	}
	return frames, true, nil
}

func loadSessions(conn *sqlite.Conn, now time.Time) (map[string]*session, error) {
	out := map[string]*session{}
	err := sqlitex.ExecuteTransient(conn, `SELECT id, delegate, expires_at, last_seq FROM sessions WHERE expires_at > ?;`,
		&sqlitex.ExecOptions{Args: []any{now.UnixMilli()}, ResultFunc: func(s *sqlite.Stmt) error {
			key, err := protocol.ParseDelegateKey(s.ColumnText(1))
			if err != nil {
				return fmt.Errorf("session %s: %w", s.ColumnText(0), err)
			}
			out[s.ColumnText(0)] = &session{id: s.ColumnText(0), key: key, expiresAt: s.ColumnInt64(2), lastSeq: uint64(s.ColumnInt64(3))}
			return nil
		}})
	if err != nil {
		return nil, fmt.Errorf("load sessions: %w", err)
	}
	return out, nil
}

func nonceUsed(conn *sqlite.Conn, nonce string) (bool, error) {
	used := false
	err := sqlitex.Execute(conn, `SELECT 1 FROM nonces WHERE nonce = ?;`, &sqlitex.ExecOptions{
		Args: []any{nonce}, ResultFunc: func(*sqlite.Stmt) error { used = true; return nil }})
	return used, err
}

// recordNonce marks nonce used and forgets nonces too old to pass the
// issuer's lifetime check anyway.
func recordNonce(conn *sqlite.Conn, nonce string, now time.Time, ttl time.Duration) error {
	if err := exec(conn, `INSERT INTO nonces (nonce, used_at) VALUES (?, ?);`, nonce, now.UnixMilli()); err != nil {
		return err
	}
	return trimNonces(conn, now, ttl)
}

// trimNonces forgets nonces too old to pass the issuer's lifetime check.
func trimNonces(conn *sqlite.Conn, now time.Time, ttl time.Duration) error {
	return exec(conn, `DELETE FROM nonces WHERE used_at < ?;`, now.Add(-2*ttl).UnixMilli())
}

// olderEvaluations returns up to n evaluations with an id below before (0:
// the newest), of trigger if it is set, newest first.
func olderEvaluations(conn *sqlite.Conn, before int64, trigger string, n int) ([]protocol.Evaluation, error) {
	if before <= 0 {
		before = math.MaxInt64
	}
	return readEvaluations(conn, `SELECT id, trigger_id, at, cause, value, outcome, detail FROM evaluations
		WHERE id < ? AND (? = '' OR trigger_id = ?) ORDER BY id DESC LIMIT ?;`, before, trigger, trigger, n)
}

// olderIntents returns up to n intents recorded before the intent with id
// before (empty: the newest), of trigger if it is set, newest first.
func olderIntents(conn *sqlite.Conn, before, trigger string, n int) ([]protocol.Intent, error) {
	return readIntents(conn, `SELECT `+intentColumns+` FROM intents
		WHERE rowid < COALESCE((SELECT rowid FROM intents WHERE id = ?), 9223372036854775807)
		AND (? = '' OR trigger_id = ?) ORDER BY rowid DESC LIMIT ?;`, before, trigger, trigger, n)
}
