package store

import (
	"fmt"
	"math"

	"zombiezen.com/go/sqlite"

	"github.com/spells-dev/spells/protocol"
)

// The evaluation log: what each event did to each trigger, and the owner's
// own changes, as the activity shows them.

const evaluationColumns = `id, trigger_id, at, cause, value, outcome, detail`

// evaluationRow reads an evaluation from the columns evaluationColumns
// names.
func evaluationRow(s *sqlite.Stmt) protocol.Evaluation {
	e := protocol.Evaluation{ID: s.ColumnInt64(0), TriggerID: s.ColumnText(1), At: s.ColumnInt64(2),
		Cause: s.ColumnText(3), Outcome: s.ColumnText(5), Detail: s.ColumnText(6)}
	if s.ColumnType(4) != sqlite.TypeNull {
		val := s.ColumnFloat(4)
		e.Value = &val
	}
	return e
}

func readEvaluations(conn *sqlite.Conn, query string, args ...any) ([]protocol.Evaluation, error) {
	out := []protocol.Evaluation{}
	err := each(conn, query, func(s *sqlite.Stmt) error {
		out = append(out, evaluationRow(s))
		return nil
	}, args...)
	if err != nil {
		return nil, fmt.Errorf("read evaluations: %w", err)
	}
	return out, nil
}

// InsertEvaluation writes e, sets its id, and trims the log to keep rows
// (every TrimEvery ids).
func InsertEvaluation(conn *sqlite.Conn, e *protocol.Evaluation, keep int) error {
	var value any
	if e.Value != nil {
		value = *e.Value
	}
	if err := exec(conn, `INSERT INTO evaluations (trigger_id, at, cause, value, outcome, detail) VALUES (?, ?, ?, ?, ?, ?);`,
		e.TriggerID, e.At, e.Cause, value, e.Outcome, e.Detail); err != nil {
		return err
	}
	e.ID = conn.LastInsertRowID()
	if e.ID%TrimEvery != 0 {
		return nil
	}
	return exec(conn, `DELETE FROM evaluations WHERE id <= ?;`, e.ID-int64(keep))
}

// RecentEvaluations returns the last n evaluations, oldest first.
func RecentEvaluations(conn *sqlite.Conn, n int) ([]protocol.Evaluation, error) {
	return readEvaluations(conn, `SELECT `+evaluationColumns+` FROM
		(SELECT * FROM evaluations ORDER BY id DESC LIMIT ?) ORDER BY id;`, n)
}

// OlderEvaluations returns up to n evaluations with an id below before (0:
// the newest), of trigger if it is set, newest first.
func OlderEvaluations(conn *sqlite.Conn, before int64, trigger string, n int) ([]protocol.Evaluation, error) {
	if before <= 0 {
		before = math.MaxInt64
	}
	return readEvaluations(conn, `SELECT `+evaluationColumns+` FROM evaluations
		WHERE id < ? AND (? = '' OR trigger_id = ?) ORDER BY id DESC LIMIT ?;`, before, trigger, trigger, n)
}
