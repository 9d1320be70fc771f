package backup

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"zombiezen.com/go/sqlite"

	"github.com/spells-dev/spells/backup/s3test"
	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/vault/keys"
	"github.com/spells-dev/spells/vault/store"
)

// fakeVault is a vault file written the way a vault writes it, its
// changes given to a shipper as a vault gives them.
type fakeVault struct {
	t       *testing.T
	id      string
	conn    *sqlite.Conn
	rec     *store.Recorder
	version uint64
	sh      *Shipper
}

func newFakeVault(t *testing.T, sh *Shipper) *fakeVault {
	t.Helper()
	return newFakeVaultID(t, sh, "0x00000000000000000000000000000000000000aa")
}

// newFakeVaultID is newFakeVault for vault id.
func newFakeVaultID(t *testing.T, sh *Shipper, id string) *fakeVault {
	t.Helper()
	p := filepath.Join(t.TempDir(), "v.db")
	if err := store.Create(p, func(c *sqlite.Conn) error { return store.InsertHead(c, common.HexToAddress(id), 1) }, nil); err != nil {
		t.Fatal(err)
	}
	conn, err := store.Open(p)
	if err != nil {
		t.Fatal(err)
	}
	rec, err := store.NewRecorder(conn)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { rec.Close(); conn.Close() })
	return &fakeVault{t: t, id: id, conn: conn, rec: rec, sh: sh}
}

// commit writes one versioned change and gives it to the shipper.
func (v *fakeVault) commit(at time.Time) {
	v.t.Helper()
	v.version++
	if err := store.InTx(v.conn, false, func() error {
		return store.AppendLog(v.conn, v.version, at.UnixMilli(), []protocol.Change{{Kind: protocol.KindTrigger, ID: "t"}}, 1000)
	}); err != nil {
		v.t.Fatal(err)
	}
	cs, err := v.rec.Take()
	if err != nil {
		v.t.Fatal(err)
	}
	if v.sh.Changed(v.id, v.version, at.UnixMilli(), cs) {
		file, err := store.Snapshot(v.conn)
		if err != nil {
			v.t.Fatal(err)
		}
		v.sh.Base(v.id, v.version, at.UnixMilli(), file)
	}
}

func waitShipped(t *testing.T, sh *Shipper) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for sh.Backlog() > 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d bytes still waiting", sh.Backlog())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func versionOf(t *testing.T, path string) uint64 {
	t.Helper()
	conn, err := store.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	h, err := store.ReadHead(conn)
	if err != nil {
		t.Fatal(err)
	}
	return h.Version
}

// TestShipAndRestore: a vault's changes are shipped, sealed, within the
// flush interval and restored to any version or time shipped; a version
// committed within one flush with others, one that never existed, and a
// restore under another KEK are refused; the store down for a while keeps
// the changes waiting (the backlog is reported) and catches up.
func TestShipAndRestore(t *testing.T) {
	srv := s3test.Start(t)
	ctx := context.Background()
	b, err := OpenBucket(ctx, srv.URL+"/spells-test/node-a")
	if err != nil {
		t.Fatal(err)
	}
	kek, _, _ := keys.GenerateKEK()
	m := NewMetrics(nil)
	sh, err := Start(ctx, Config{Bucket: b, KEK: kek, Node: "a", Every: 50 * time.Millisecond, RebaseAfter: 4, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	defer sh.Close(ctx)
	v := newFakeVault(t, sh)
	t0 := time.Now()
	times := map[uint64]time.Time{}
	for i := 0; i < 6; i++ {
		at := t0.Add(time.Duration(i) * 10 * time.Millisecond)
		v.commit(at)
		times[v.version] = at
		waitShipped(t, sh) // each version in its own flush
	}
	r, err := NewRestorer(ctx, b, kek)
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, want := range []uint64{1, 3, 4, 6} {
		p := filepath.Join(dir, "v", strings.Repeat("x", int(want))+".db")
		plan, err := r.Restore(ctx, v.id, Target{Version: want}, p)
		if err != nil || plan.Version != want || versionOf(t, p) != want {
			t.Fatalf("restore to version %d: %+v, %v", want, plan, err)
		}
	}
	p := filepath.Join(dir, "at.db")
	if plan, err := r.Restore(ctx, v.id, Target{At: times[2].UnixMilli()}, p); err != nil || versionOf(t, p) != 2 {
		t.Fatalf("restore to the time of version 2: %+v, %v", plan, err)
	}
	if _, err := r.Restore(ctx, v.id, Target{Version: 99}, filepath.Join(dir, "99.db")); err == nil || !strings.Contains(err.Error(), "not in the backup") {
		t.Fatalf("a version that never existed: %v", err)
	}
	other, _, _ := keys.GenerateKEK()
	if _, err := NewRestorer(ctx, b, other); !errors.Is(err, ErrNoKey) {
		t.Fatalf("another KEK: %v", err)
	}

	// The store goes down: the changes wait, reported, and are shipped
	// once it is back.
	srv.Stop()
	for i := 0; i < 3; i++ {
		v.commit(time.Now())
	}
	deadline := time.Now().Add(10 * time.Second)
	for metricValue(m.Uploads.WithLabelValues("log", "error")) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no failed upload counted while the store was down")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if sh.Backlog() == 0 {
		t.Fatal("no backlog reported while the store is down")
	}
	srv.Restart(t)
	waitShipped(t, sh)
	p = filepath.Join(dir, "newest.db")
	if plan, err := r.Restore(ctx, v.id, Target{}, p); err != nil || versionOf(t, p) != v.version {
		t.Fatalf("newest after the store came back: %+v, %v (vault at %d)", plan, err, v.version)
	}
}
