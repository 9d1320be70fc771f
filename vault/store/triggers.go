package store

import (
	"encoding/json"
	"fmt"

	"zombiezen.com/go/sqlite"
	"zombiezen.com/go/sqlite/sqlitex"

	"github.com/spells-dev/spells/protocol"
)

// TriggerRow is a stored trigger: what the owner sees, the evaluation
// state of its condition (the rules' own encoding) and its firings over
// its whole life.
type TriggerRow struct {
	protocol.Trigger
	State      []byte
	FiredTotal int64
}

// LoadTriggers reads every trigger of the vault.
func LoadTriggers(conn *sqlite.Conn) ([]TriggerRow, error) {
	var out []TriggerRow
	err := sqlitex.ExecuteTransient(conn, `SELECT id, spec, status, fires, last_fired_at, state, created_at, updated_at, fired_total FROM triggers;`,
		&sqlitex.ExecOptions{ResultFunc: func(s *sqlite.Stmt) error {
			var t TriggerRow
			t.ID = s.ColumnText(0)
			if err := json.Unmarshal([]byte(s.ColumnText(1)), &t.TriggerSpec); err != nil {
				return fmt.Errorf("trigger %s spec: %w", t.ID, err)
			}
			t.Status = s.ColumnText(2)
			t.Fires = s.ColumnInt64(3)
			t.LastFiredAt = s.ColumnInt64(4)
			t.State = []byte(s.ColumnText(5))
			t.CreatedAt, t.UpdatedAt, t.FiredTotal = s.ColumnInt64(6), s.ColumnInt64(7), s.ColumnInt64(8)
			out = append(out, t)
			return nil
		}})
	if err != nil {
		return nil, fmt.Errorf("load triggers: %w", err)
	}
	return out, nil
}

// SaveTrigger writes a trigger whole.
func SaveTrigger(conn *sqlite.Conn, t TriggerRow) error {
	spec, err := json.Marshal(t.TriggerSpec)
	if err != nil {
		return err
	}
	return exec(conn, `INSERT OR REPLACE INTO triggers (id, spec, status, fires, last_fired_at, state, created_at, updated_at, fired_total)
		VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?);`,
		t.ID, string(spec), t.Status, t.Fires, t.LastFiredAt, string(t.State), t.CreatedAt, t.UpdatedAt, t.FiredTotal)
}

// DeleteTrigger removes a trigger.
func DeleteTrigger(conn *sqlite.Conn, id string) error {
	return exec(conn, `DELETE FROM triggers WHERE id = ?;`, id)
}
