package backup

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/spells-dev/spells/backup/s3test"
	"github.com/spells-dev/spells/vault/keys"
)

// TestAStoreThatErrsOrCrawls: a store that answers every request with an
// error keeps the changes waiting (counted, the backlog reported) and
// they are shipped when it answers again; a store that holds every
// request for seconds never holds the vault that gives its changes, and
// catches up too. The restore then has the newest version.
func TestAStoreThatErrsOrCrawls(t *testing.T) {
	srv := s3test.Start(t)
	store := s3test.NewFaulty(t, srv.URL)
	ctx := context.Background()
	b, err := OpenBucket(ctx, store.URL+"/spells-test/faulty")
	if err != nil {
		t.Fatal(err)
	}
	kek, _, _ := keys.GenerateKEK()
	m := NewMetrics(nil)
	sh, err := Start(ctx, Config{Bucket: b, KEK: kek, Node: "a", Every: 50 * time.Millisecond, Metrics: m})
	if err != nil {
		t.Fatal(err)
	}
	defer sh.Close(ctx)
	v := newFakeVault(t, sh)
	v.commit(time.Now())
	waitShipped(t, sh)

	store.Fail.Store(true)
	for i := 0; i < 3; i++ {
		v.commit(time.Now())
	}
	deadline := time.Now().Add(20 * time.Second)
	for metricValue(m.Uploads.WithLabelValues("log", "error")) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no failed upload counted while the store answered errors")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if sh.Backlog() == 0 {
		t.Fatal("no backlog reported while the store answers errors")
	}
	store.Fail.Store(false)
	waitShipped(t, sh)

	store.Delay.Store(int64(3 * time.Second))
	given := make(chan struct{})
	go func() {
		for i := 0; i < 3; i++ {
			v.commit(time.Now())
		}
		close(given)
	}()
	select {
	case <-given:
	case <-time.After(time.Second):
		t.Fatal("giving changes waited on a slow store")
	}
	store.Delay.Store(0)
	waitShipped(t, sh)
	r, err := NewRestorer(ctx, b, kek)
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "newest.db")
	if plan, err := r.Restore(ctx, v.id, Target{}, p); err != nil || versionOf(t, p) != v.version {
		t.Fatalf("newest after the faults: %+v, %v (vault at %d)", plan, err, v.version)
	}
}
