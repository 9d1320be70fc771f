package store

import (
	"errors"
	"fmt"
	"syscall"

	"zombiezen.com/go/sqlite"
)

// Damage is an error that says a file is not a readable vault: no retry
// will mend it (the host quarantines such a file).
type Damage struct{ Reason string }

func (d *Damage) Error() string { return d.Reason }

// Damaged returns a Damage error.
func Damaged(format string, args ...any) error { return &Damage{fmt.Sprintf(format, args...)} }

// IsDamaged reports whether err says the file itself is bad: a Damage, or
// SQLite finding it corrupt or not a database.
func IsDamaged(err error) bool {
	var d *Damage
	if errors.As(err, &d) {
		return true
	}
	switch sqlite.ErrCode(err).ToPrimary() {
	case sqlite.ResultCorrupt, sqlite.ResultNotADB:
		return true
	}
	return false
}

// IsFull reports whether err says the disk (or the process's file size
// limit) is full.
func IsFull(err error) bool {
	return sqlite.ErrCode(err).ToPrimary() == sqlite.ResultFull ||
		errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT) || errors.Is(err, syscall.EFBIG)
}

// IsInterrupted reports whether err is SQLite giving up on a statement
// because the vault's context ended.
func IsInterrupted(err error) bool {
	return sqlite.ErrCode(err).ToPrimary() == sqlite.ResultInterrupt
}
