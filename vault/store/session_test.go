package store

import (
	"os"
	"path/filepath"
	"testing"

	"zombiezen.com/go/sqlite"

	"github.com/spells-dev/spells/protocol"
)

// A snapshot and the changesets taken after it rebuild the file exactly:
// applied in order to the snapshot, they give the same rows; a changeset
// applied to a file it was not taken from is refused, and changes nothing.
func TestChangesetsRebuildTheFile(t *testing.T) {
	conn, _ := newFile(t)
	rec, err := NewRecorder(conn)
	if err != nil {
		t.Fatal(err)
	}
	defer rec.Close()
	base, err := Snapshot(conn)
	if err != nil {
		t.Fatal(err)
	}
	var sets [][]byte
	for i, name := range []string{"one", "two"} {
		if err := InTx(conn, false, func() error {
			return AppendLog(conn, uint64(i+2), int64(1000+i), []protocol.Change{{Kind: protocol.KindTrigger, ID: name}}, 100)
		}); err != nil {
			t.Fatal(err)
		}
		cs, err := rec.Take()
		if err != nil || len(cs) == 0 {
			t.Fatalf("changeset %d: %v (%d bytes)", i, err, len(cs))
		}
		sets = append(sets, cs)
	}
	if cs, err := rec.Take(); err != nil || cs != nil {
		t.Fatalf("nothing changed, yet a changeset of %d bytes (%v)", len(cs), err)
	}
	restored := filepath.Join(t.TempDir(), "r.db")
	if err := os.WriteFile(restored, base, 0o600); err != nil {
		t.Fatal(err)
	}
	rc, err := sqlite.OpenConn(restored, sqlite.OpenReadWrite)
	if err != nil {
		t.Fatal(err)
	}
	defer rc.Close()
	if err := ApplyChangeset(rc, sets[1]); err == nil {
		t.Fatal("the second changeset applied to the state before the first")
	}
	for _, cs := range sets {
		if err := ApplyChangeset(rc, cs); err != nil {
			t.Fatal(err)
		}
	}
	count := func(c *sqlite.Conn) (n int) {
		if err := each(c, `SELECT COUNT(*) FROM changes;`, func(s *sqlite.Stmt) error { n = s.ColumnInt(0); return nil }); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if a, b := count(conn), count(rc); a != b || a != 2 {
		t.Fatalf("the rebuilt file has %d change rows, the file %d", b, a)
	}
}
