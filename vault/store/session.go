package store

import (
	"bytes"
	"fmt"
	"os"

	"zombiezen.com/go/sqlite"
)

// Recording a vault's changes for its backup: a SQLite session (the
// session extension) on every table records what each committed
// transaction changed; Take returns it as a changeset and starts afresh.
// A changeset applied to the file as it was before reproduces the file as
// it is after (ApplyChangeset).

// Recorder records a vault connection's changes.
type Recorder struct {
	conn *sqlite.Conn
	s    *sqlite.Session
}

// NewRecorder starts recording conn's changes to every table.
func NewRecorder(conn *sqlite.Conn) (*Recorder, error) {
	r := &Recorder{conn: conn}
	if err := r.start(); err != nil {
		return nil, err
	}
	return r, nil
}

func (r *Recorder) start() error {
	s, err := r.conn.CreateSession("")
	if err != nil {
		return fmt.Errorf("backup recorder: %w", err)
	}
	if err := s.Attach(""); err != nil {
		s.Delete()
		return fmt.Errorf("backup recorder: %w", err)
	}
	r.s = s
	return nil
}

// Take returns the changes recorded since the last Take (nil: none) and
// starts recording afresh. Call it between transactions.
func (r *Recorder) Take() ([]byte, error) {
	var b bytes.Buffer
	if err := r.s.WriteChangeset(&b); err != nil {
		return nil, fmt.Errorf("backup changeset: %w", err)
	}
	r.s.Delete()
	if err := r.start(); err != nil {
		return nil, err
	}
	if b.Len() == 0 {
		return nil, nil
	}
	return b.Bytes(), nil
}

// Close stops recording; it must run before the connection closes.
func (r *Recorder) Close() {
	if r.s != nil {
		r.s.Delete()
		r.s = nil
	}
}

// Snapshot copies the whole vault file conn has open, as it is between
// transactions, with SQLite's online backup, and returns its bytes.
func Snapshot(conn *sqlite.Conn) ([]byte, error) {
	f, err := os.CreateTemp("", "spells-snapshot-*.db")
	if err != nil {
		return nil, err
	}
	path := f.Name()
	f.Close()
	defer os.Remove(path)
	dst, err := sqlite.OpenConn(path, sqlite.OpenReadWrite|sqlite.OpenCreate|sqlite.OpenNoMutex)
	if err != nil {
		return nil, err
	}
	b, err := sqlite.NewBackup(dst, "main", conn, "main")
	if err == nil {
		_, err = b.Step(-1)
		if cerr := b.Close(); err == nil {
			err = cerr
		}
	}
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("snapshot: %w", err)
	}
	return os.ReadFile(path)
}

// ApplyChangeset applies a changeset Take returned to conn, in one
// transaction; a change that does not fit what conn holds (the changeset
// was not taken from this state) is an error and nothing is applied.
func ApplyChangeset(conn *sqlite.Conn, cs []byte) error {
	conflict := false
	err := conn.ApplyChangeset(bytes.NewReader(cs), nil, func(sqlite.ConflictType, *sqlite.ChangesetIterator) sqlite.ConflictAction {
		conflict = true
		return sqlite.ChangesetAbort
	})
	if err == nil && conflict {
		err = fmt.Errorf("a change does not fit the file")
	}
	if err != nil {
		return fmt.Errorf("apply changeset: %w", err)
	}
	return nil
}
