package store

import (
	"encoding/json"
	"fmt"

	"zombiezen.com/go/sqlite"

	"github.com/spells-dev/spells/protocol"
)

// The change log: every version of a vault, with exactly its changes, so a
// dashboard that resumes gets the diffs it missed.

// AppendLog records version's changes at unix ms at, bumps the vault's
// version to it, and trims the log to the last keep versions (every
// TrimEvery versions).
func AppendLog(conn *sqlite.Conn, version uint64, at int64, changes []protocol.Change, keep int) error {
	b, err := json.Marshal(changes)
	if err != nil {
		return fmt.Errorf("encode changes: %w", err)
	}
	if err := exec(conn, "INSERT INTO changes (version, at, changes) VALUES (?, ?, ?);", int64(version), at, string(b)); err != nil {
		return fmt.Errorf("append change log: %w", err)
	}
	if err := exec(conn, "UPDATE vault SET version = ? WHERE id = 1;", int64(version)); err != nil {
		return fmt.Errorf("bump version: %w", err)
	}
	if version%TrimEvery != 0 {
		return nil
	}
	if err := exec(conn, "DELETE FROM changes WHERE version <= ?;", int64(version)-int64(keep)); err != nil {
		return fmt.Errorf("trim change log: %w", err)
	}
	return nil
}

// Version is one version's entry in the change log.
type Version struct {
	Version uint64
	At      int64
	Changes []protocol.Change
}

// ReadLog returns the versions after since, oldest first. ok is false
// when the log no longer reaches back that far.
func ReadLog(conn *sqlite.Conn, since uint64) (vs []Version, ok bool, err error) {
	var oldest int64 = -1
	if err := each(conn, `SELECT MIN(version) FROM changes;`, func(s *sqlite.Stmt) error {
		if s.ColumnType(0) != sqlite.TypeNull {
			oldest = s.ColumnInt64(0)
		}
		return nil
	}); err != nil {
		return nil, false, fmt.Errorf("read change log: %w", err)
	}
	if oldest < 0 || uint64(oldest) > since+1 {
		return nil, false, nil
	}
	err = each(conn, `SELECT version, at, changes FROM changes WHERE version > ? ORDER BY version;`, func(s *sqlite.Stmt) error {
		v := Version{Version: uint64(s.ColumnInt64(0)), At: s.ColumnInt64(1)}
		if err := json.Unmarshal([]byte(s.ColumnText(2)), &v.Changes); err != nil {
			return err
		}
		vs = append(vs, v)
		return nil
	}, int64(since))
	if err != nil {
		return nil, false, fmt.Errorf("read change log: %w", err)
	}
	return vs, true, nil
}

// RawVersion is one change-log row as stored.
type RawVersion struct {
	Version uint64
	At      int64
	Changes []byte // the JSON as written
}

// ReadLogRaw returns the whole change log the vault keeps, oldest first,
// its changes as stored.
func ReadLogRaw(conn *sqlite.Conn) ([]RawVersion, error) {
	var out []RawVersion
	err := each(conn, `SELECT version, at, changes FROM changes ORDER BY version;`, func(s *sqlite.Stmt) error {
		out = append(out, RawVersion{Version: uint64(s.ColumnInt64(0)), At: s.ColumnInt64(1), Changes: []byte(s.ColumnText(2))})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read change log: %w", err)
	}
	return out, nil
}
