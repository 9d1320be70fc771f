package store

import (
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"zombiezen.com/go/sqlite"
	"zombiezen.com/go/sqlite/sqlitex"

	"github.com/spells-dev/spells/protocol"
)

var owner = common.HexToAddress("0x00000000000000000000000000000000000000aa")

// newFile creates a vault file with its row and opens it.
func newFile(t *testing.T) (*sqlite.Conn, string) {
	t.Helper()
	p := filepath.Join(t.TempDir(), "vaults", "aa", "v.db")
	if err := Create(p, func(c *sqlite.Conn) error { return InsertHead(c, owner, 1) }, nil); err != nil {
		t.Fatal(err)
	}
	conn, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn, p
}

// A creation that fails leaves nothing behind, and a file without a vault
// row is damaged.
func TestCreateIsWholeOrNothing(t *testing.T) {
	p := filepath.Join(t.TempDir(), "v.db")
	boom := errors.New("the disk went away")
	if err := Create(p, func(c *sqlite.Conn) error { return InsertHead(c, owner, 1) }, func(string) error { return boom }); !errors.Is(err, boom) {
		t.Fatalf("err = %v", err)
	}
	left, _ := filepath.Glob(p + "*")
	if len(left) != 0 {
		t.Fatalf("a failed creation left %v", left)
	}
	if err := Create(p, func(*sqlite.Conn) error { return nil }, nil); err != nil {
		t.Fatal(err)
	}
	conn, err := Open(p)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if _, err := ReadHead(conn); !IsDamaged(err) {
		t.Fatalf("a file without its row: %v, want damage", err)
	}
	if _, err := Open(filepath.Join(t.TempDir(), "missing.db")); err == nil {
		t.Fatal("Open created a missing file")
	}
}

// A file that is not a vault's is damage, never migrated into one.
func TestForeignFileIsDamaged(t *testing.T) {
	p := filepath.Join(t.TempDir(), "foreign.db")
	c, err := sqlite.OpenConn(p, sqlite.OpenReadWrite|sqlite.OpenCreate)
	if err != nil {
		t.Fatal(err)
	}
	if err := exec(c, "CREATE TABLE t (x);"); err != nil {
		t.Fatal(err)
	}
	c.Close()
	if _, err := Open(p); !IsDamaged(err) {
		t.Fatalf("a foreign file: %v, want damage", err)
	}
	if err := os.WriteFile(p, []byte("not sqlite at all, and long enough to be read as a header..........................................."), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Open(p); !IsDamaged(err) {
		t.Fatalf("a file of garbage: %v, want damage", err)
	}
}

// The change log keeps what each version changed, reads back from any
// version it still holds, and says when it no longer reaches back.
func TestChangeLog(t *testing.T) {
	conn, _ := newFile(t)
	const keep = 40
	for v := uint64(1); v <= 100; v++ {
		ch := []protocol.Change{{Kind: protocol.KindTrigger, Op: protocol.ChangeDelete, ID: "t"}}
		if err := InTx(conn, false, func() error { return AppendLog(conn, v, int64(v), ch, keep) }); err != nil {
			t.Fatal(err)
		}
	}
	h, err := ReadHead(conn)
	if err != nil || h.Version != 100 || h.Owner != owner || h.Epoch != 1 {
		t.Fatalf("head %+v, %v", h, err)
	}
	vs, ok, err := ReadLog(conn, 90)
	if err != nil || !ok || len(vs) != 10 || vs[0].Version != 91 || vs[9].Version != 100 || len(vs[0].Changes) != 1 {
		t.Fatalf("since 90: %d versions, ok %v, %v", len(vs), ok, err)
	}
	// Trimmed at 96 to the last 40: 57 and after are kept.
	if _, ok, _ := ReadLog(conn, 56); !ok {
		t.Fatal("since 56: the log should reach back")
	}
	if _, ok, _ := ReadLog(conn, 10); ok {
		t.Fatal("since 10: the log should not reach back that far")
	}
}

// A savepoint that fails rolls back alone, with the changes and effects it
// recorded; the rest of the transaction commits.
func TestIsolateRollsBackAlone(t *testing.T) {
	conn, _ := newFile(t)
	tx := &Tx{Now: time.UnixMilli(5)}
	ran := 0
	err := InTx(conn, false, func() error {
		if err := tx.Isolate(conn, func() error {
			tx.Then(func() { ran++ })
			return RecordNonce(conn, "kept", tx.Now, time.Hour)
		}); err != nil {
			return err
		}
		boom := errors.New("refused")
		if err := tx.Isolate(conn, func() error {
			tx.Del(protocol.KindTrigger, "t")
			tx.Then(func() { ran += 10 })
			if err := RecordNonce(conn, "dropped", tx.Now, time.Hour); err != nil {
				return err
			}
			return boom
		}); !errors.Is(err, boom) {
			t.Fatalf("isolate: %v", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	tx.Committed()
	if ran != 1 || len(tx.Changes()) != 0 {
		t.Fatalf("effects ran %d, changes %v", ran, tx.Changes())
	}
	for nonce, want := range map[string]bool{"kept": true, "dropped": false} {
		if got, _ := NonceUsed(conn, nonce); got != want {
			t.Errorf("nonce %q used %v, want %v", nonce, got, want)
		}
	}
}

// A move mark is written, read back, and cleared or turned into a
// tombstone.
func TestMoveMark(t *testing.T) {
	conn, _ := newFile(t)
	if err := SetMoveMark(conn, "node-b", 2); err != nil {
		t.Fatal(err)
	}
	h, _ := ReadHead(conn)
	if h.Move != (MoveMark{To: "node-b", Epoch: 2}) {
		t.Fatalf("mark %+v", h.Move)
	}
	if err := SetMoved(conn); err != nil {
		t.Fatal(err)
	}
	if h, _ = ReadHead(conn); !h.Move.Done {
		t.Fatal("not a tombstone")
	}
	if err := SetArrived(conn, 3); err != nil {
		t.Fatal(err)
	}
	if h, _ = ReadHead(conn); h.Epoch != 3 || h.Move != (MoveMark{}) {
		t.Fatalf("arrived: %+v", h)
	}
}

// Intents are read by status, their signed transactions by hash, and what
// a delegation was used for adds up per period.
func TestIntentsAndUsage(t *testing.T) {
	conn, _ := newFile(t)
	for i, st := range []string{protocol.IntentPending, protocol.IntentConfirmed, protocol.IntentSubmitted} {
		in := protocol.Intent{ID: string(rune('a' + i)), TriggerID: "t", IdempotencyKey: "t/" + st, Status: st, Action: protocol.Action{Kind: "notify"}}
		if err := InsertIntent(conn, in); err != nil {
			t.Fatal(err)
		}
	}
	open, err := IntentsWith(conn, protocol.IntentPending, protocol.IntentSubmitted)
	if err != nil || len(open) != 2 || open[0].ID != "a" || open[1].ID != "c" {
		t.Fatalf("open intents %+v, %v", open, err)
	}
	if any, _ := AnyIntentWith(conn, protocol.IntentReverted); any {
		t.Fatal("found a reverted intent")
	}
	if err := AddSignedTx(conn, "0xh", "c", []byte{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	if err := MarkSent(conn, "0xh", 77); err != nil {
		t.Fatal(err)
	}
	raw, _ := SignedTx(conn, "0xh")
	at, _ := SentAt(conn, "0xh")
	if len(raw) != 3 || at != 77 {
		t.Fatalf("signed tx %v sent at %d", raw, at)
	}
	if none, _ := SignedTx(conn, "0xnone"); none != nil {
		t.Fatal("a missing transaction read as bytes")
	}
	for i := 0; i < 2; i++ {
		if err := AddCall(conn, "0xd"); err != nil {
			t.Fatal(err)
		}
	}
	if err := SetSpent(conn, "0xd", 4, big.NewInt(250)); err != nil {
		t.Fatal(err)
	}
	u, _ := UsageOf(conn, "0xd", 4)
	v, _ := UsageOf(conn, "0xd", 5)
	if u.Calls != 2 || u.Spent.Int64() != 250 || v.Spent.Sign() != 0 {
		t.Fatalf("usage %+v / next period %+v", u, v)
	}
}

// schemaOf is what a file's schema is: its tables and indexes as SQLite
// keeps them, its application id, migration count and journal mode.
func schemaOf(t *testing.T, conn *sqlite.Conn) []string {
	t.Helper()
	var out []string
	for _, q := range []string{"SELECT type || ' ' || name || ' ' || coalesce(sql, '') FROM sqlite_master ORDER BY name;",
		"PRAGMA application_id;", "PRAGMA user_version;", "PRAGMA journal_mode;"} {
		if err := sqlitex.ExecuteTransient(conn, q, &sqlitex.ExecOptions{ResultFunc: func(s *sqlite.Stmt) error {
			out = append(out, s.ColumnText(0))
			return nil
		}}); err != nil {
			t.Fatal(err)
		}
	}
	return out
}

// TestCreatedFromTheTemplate: a vault file created from the schema's
// template has exactly the schema a file migrated from nothing has.
func TestCreatedFromTheTemplate(t *testing.T) {
	if schemaTemplate() == nil {
		t.Fatal("no schema template could be made")
	}
	created, _ := newFile(t)
	migrated, err := openConn(filepath.Join(t.TempDir(), "migrated.db"), true)
	if err != nil {
		t.Fatal(err)
	}
	defer migrated.Close()
	a, b := schemaOf(t, created), schemaOf(t, migrated)
	if strings.Join(a, "\n") != strings.Join(b, "\n") {
		t.Fatalf("created from the template:\n%s\nmigrated:\n%s", strings.Join(a, "\n"), strings.Join(b, "\n"))
	}
	if len(a) < 10 || a[len(a)-1] != "wal" {
		t.Fatalf("unexpected schema: %v", a)
	}
}

// BenchmarkCreate: a vault file created from the schema's template, and
// one that runs every migration (the template's absence).
func BenchmarkCreate(b *testing.B) {
	for _, c := range []struct {
		name     string
		template bool
	}{{"template", true}, {"migrations", false}} {
		b.Run(c.name, func(b *testing.B) {
			saved := schemaTemplate()
			if !c.template {
				template.b = nil
			}
			defer func() { template.b = saved }()
			dir := b.TempDir()
			i := 0
			for b.Loop() {
				i++
				p := filepath.Join(dir, fmt.Sprintf("v%d.db", i))
				if err := Create(p, func(c *sqlite.Conn) error { return InsertHead(c, owner, 1) }, nil); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
