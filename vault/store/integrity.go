package store

import (
	"strings"

	"zombiezen.com/go/sqlite"
	"zombiezen.com/go/sqlite/sqlitex"
)

// QuickCheck runs SQLite's quick_check over the vault file at path, read
// only: it reads every page, so damage no query of the vault would touch
// (a lost index page, a torn tail) is found. A damaged file is a Damage
// error naming what SQLite found.
func QuickCheck(path string) error {
	conn, err := sqlite.OpenConn(path, sqlite.OpenReadOnly|sqlite.OpenNoMutex)
	if err != nil {
		return err
	}
	defer conn.Close()
	var found []string
	err = sqlitex.ExecuteTransient(conn, "PRAGMA quick_check(8);", &sqlitex.ExecOptions{ResultFunc: func(s *sqlite.Stmt) error {
		found = append(found, s.ColumnText(0))
		return nil
	}})
	if err != nil {
		if IsDamaged(err) {
			return Damaged("the integrity check could not read the file: %v", err)
		}
		return err
	}
	if len(found) == 1 && found[0] == "ok" {
		return nil
	}
	return Damaged("the integrity check found: %s", strings.Join(found, "; "))
}
