package store

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"

	"zombiezen.com/go/sqlite"

	"github.com/spells-dev/spells/protocol"
)

// Alerts: the vault's alert settings and its outbox. An alert is written
// in the transaction of the event that raised it and rewritten as its
// delivery goes; nothing else deletes one but the trim of old ones.

// AlertSettings reads the vault's alert settings (none set: zero).
func AlertSettings(conn *sqlite.Conn) (protocol.AlertSettings, error) {
	var out protocol.AlertSettings
	var raw string
	if err := each(conn, `SELECT alerts FROM vault WHERE id = 1;`, func(s *sqlite.Stmt) error {
		raw = s.ColumnText(0)
		return nil
	}); err != nil {
		return out, fmt.Errorf("read alert settings: %w", err)
	}
	if raw == "" {
		return out, nil
	}
	if err := json.Unmarshal([]byte(raw), &out); err != nil {
		return out, fmt.Errorf("read alert settings: %w", err)
	}
	return out, nil
}

// AlertSettingsOf reads the alert settings of the vault file at path
// read-only, without migrating it: for a file set aside as damaged, whose
// settings may still be readable.
func AlertSettingsOf(path string) (protocol.AlertSettings, error) {
	conn, err := sqlite.OpenConn(path, sqlite.OpenReadOnly|sqlite.OpenNoMutex)
	if err != nil {
		return protocol.AlertSettings{}, err
	}
	defer conn.Close()
	return AlertSettings(conn)
}

// SetAlertSettings writes the vault's alert settings.
func SetAlertSettings(conn *sqlite.Conn, a protocol.AlertSettings) error {
	b, err := json.Marshal(a)
	if err != nil {
		return err
	}
	return exec(conn, `UPDATE vault SET alerts = ? WHERE id = 1;`, string(b))
}

// AlertCode reads the pending mail confirmation: its code and when it was
// made (unix ms); "" when none waits.
func AlertCode(conn *sqlite.Conn) (code string, made int64, err error) {
	err = each(conn, `SELECT alert_code FROM vault WHERE id = 1;`, func(s *sqlite.Stmt) error {
		c, at, ok := strings.Cut(s.ColumnText(0), "/")
		if ok {
			code = c
			made, _ = strconv.ParseInt(at, 10, 64)
		}
		return nil
	})
	return
}

// SetAlertCode writes the pending mail confirmation ("": none).
func SetAlertCode(conn *sqlite.Conn, code string, made int64) error {
	v := ""
	if code != "" {
		v = code + "/" + strconv.FormatInt(made, 10)
	}
	return exec(conn, `UPDATE vault SET alert_code = ? WHERE id = 1;`, v)
}

// PutAlert writes an alert, new or as its delivery left it.
func PutAlert(conn *sqlite.Conn, a protocol.Alert) error {
	b, err := json.Marshal(a)
	if err != nil {
		return err
	}
	return exec(conn, `INSERT INTO alerts (id, at, status, data) VALUES (?, ?, ?, ?)
		ON CONFLICT (id) DO UPDATE SET status = excluded.status, data = excluded.data;`, a.ID, a.At, a.Status, string(b))
}

// GetAlert reads one alert (ok false: none).
func GetAlert(conn *sqlite.Conn, id string) (a protocol.Alert, ok bool, err error) {
	err = each(conn, `SELECT data FROM alerts WHERE id = ?;`, func(s *sqlite.Stmt) error {
		ok = true
		return json.Unmarshal([]byte(s.ColumnText(0)), &a)
	}, id)
	return
}

// PendingAlerts reads the alerts not delivered yet, oldest first.
func PendingAlerts(conn *sqlite.Conn) ([]protocol.Alert, error) {
	return readAlerts(conn, `SELECT data FROM alerts WHERE status = 'pending' ORDER BY at, id;`)
}

// AnyAlertPending reports whether an alert waits for delivery.
func AnyAlertPending(conn *sqlite.Conn) (bool, error) {
	return exists(conn, `SELECT 1 FROM alerts WHERE status = 'pending' LIMIT 1;`)
}

// RecentAlerts reads the newest n alerts, newest first.
func RecentAlerts(conn *sqlite.Conn, n int) ([]protocol.Alert, error) {
	return readAlerts(conn, `SELECT data FROM alerts ORDER BY at DESC, id DESC LIMIT ?;`, n)
}

// TrimAlerts deletes delivered and failed alerts beyond the newest keep.
func TrimAlerts(conn *sqlite.Conn, keep int) error {
	return exec(conn, `DELETE FROM alerts WHERE status != 'pending' AND id NOT IN (SELECT id FROM alerts ORDER BY at DESC, id DESC LIMIT ?);`, keep)
}

func readAlerts(conn *sqlite.Conn, q string, args ...any) ([]protocol.Alert, error) {
	out := []protocol.Alert{}
	err := each(conn, q, func(s *sqlite.Stmt) error {
		var a protocol.Alert
		if err := json.Unmarshal([]byte(s.ColumnText(0)), &a); err != nil {
			return err
		}
		out = append(out, a)
		return nil
	}, args...)
	if err != nil {
		return nil, fmt.Errorf("read alerts: %w", err)
	}
	return out, nil
}
