package store

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"zombiezen.com/go/sqlite/sqlitex"
)

// walCopy writes n transactions to a fresh vault file (after restarting
// its WAL once over more transactions, so frames of the earlier
// generation follow the current ones) and returns a copy of its WAL as a
// crash would leave it.
func walCopy(t *testing.T, n int) []byte {
	t.Helper()
	path := filepath.Join(t.TempDir(), "v.db")
	conn, err := openConn(path, true)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(sqlitex.ExecuteTransient(conn, `PRAGMA wal_autocheckpoint = 0;`, nil))
	for i := 0; i < 3*n; i++ {
		must(sqlitex.ExecuteTransient(conn, fmt.Sprintf(`INSERT INTO nonces (nonce, used_at) VALUES ('old%d', 1);`, i), nil))
	}
	must(sqlitex.ExecuteTransient(conn, `PRAGMA wal_checkpoint(RESTART);`, nil))
	for i := 0; i < n; i++ {
		must(sqlitex.ExecuteTransient(conn, fmt.Sprintf(`INSERT INTO nonces (nonce, used_at) VALUES ('n%d', 1);`, i), nil))
	}
	b, err := os.ReadFile(path + "-wal")
	must(err)
	return b
}

func checkWALBytes(t *testing.T, b []byte) (WALReport, error) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "x.db-wal")
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return CheckWAL(p)
}

// CheckWAL: a whole log (with an earlier generation's frames after its
// own) replays every transaction; an absent or empty one is fine; damage
// in its last transaction only is what a crash leaves of one it never
// acknowledged; damage with committed transactions after it, or to its
// header, is a Damage.
func TestCheckWAL(t *testing.T) {
	b := walCopy(t, 10)
	rep, err := checkWALBytes(t, b)
	if err != nil || rep.Commits != 10 || rep.Dropped != 0 {
		t.Fatalf("a whole log: %v, %v; want 10 transactions, none dropped", rep, err)
	}
	if rep, err := CheckWAL(filepath.Join(t.TempDir(), "absent-wal")); err != nil || rep.Commits != 0 {
		t.Fatalf("an absent log: %v, %v", rep, err)
	}
	if rep, err := checkWALBytes(t, nil); err != nil || rep.Commits != 0 {
		t.Fatalf("an empty log: %v, %v", rep, err)
	}
	// The offsets of the frames that follow each commit frame.
	frame := walFrameHeaderSize + 4096
	var afterCommit []int
	for off := walHeaderSize; off+frame <= len(b) && len(afterCommit) < 10; off += frame {
		if b[off+4]|b[off+5]|b[off+6]|b[off+7] != 0 {
			afterCommit = append(afterCommit, off+frame)
		}
	}
	if len(afterCommit) != 10 {
		t.Fatalf("%d commit frames found, want 10", len(afterCommit))
	}
	tail := append([]byte(nil), b...)
	tail[afterCommit[8]+walFrameHeaderSize+100] ^= 0xff // the 10th transaction's first frame
	if rep, err := checkWALBytes(t, tail); err != nil || rep.Commits != 9 || rep.LostAfter != 1 {
		t.Fatalf("damage in the last transaction: %v, %v; want 9 replayed, 1 dropped, no damage", rep, err)
	}
	mid := append([]byte(nil), b...)
	mid[afterCommit[2]+walFrameHeaderSize+100] ^= 0xff // the 4th transaction's
	if rep, err := checkWALBytes(t, mid); !IsDamaged(err) || rep.Commits != 3 || rep.LostAfter != 7 {
		t.Fatalf("damage in the 4th of 10 transactions: %v, %v; want a Damage, 3 replayed, 7 lost", rep, err)
	}
	hdr := append([]byte(nil), b...)
	hdr[20] ^= 0xff
	if _, err := checkWALBytes(t, hdr); !IsDamaged(err) {
		t.Fatalf("a damaged header: %v, want a Damage", err)
	}
}
