package backup

import (
	"context"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spells-dev/spells/backup/s3test"
	"github.com/spells-dev/spells/internal/tmpfstest"
	"github.com/spells-dev/spells/vault/keys"
)

// TestRestoreAllOnADiskThatFills: restoring every vault onto a disk too
// small for them stops with the disk's error, leaving only whole vault
// files (none cut short, no temporary file); with room again, the same
// restore goes on and finishes.
func TestRestoreAllOnADiskThatFills(t *testing.T) {
	dir := tmpfstest.Mount(t, "400k")
	srv := s3test.Start(t)
	ctx := context.Background()
	b, err := OpenBucket(ctx, srv.URL+"/spells-test/full")
	if err != nil {
		t.Fatal(err)
	}
	kek, _, _ := keys.GenerateKEK()
	sh, err := Start(ctx, Config{Bucket: b, KEK: kek, Node: "a", Every: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer sh.Close(ctx)
	const n = 8
	for i := 0; i < n; i++ {
		newFakeVaultID(t, sh, fmt.Sprintf("0x%040x", i+1)).commit(time.Now())
	}
	waitShipped(t, sh)
	r, err := NewRestorer(ctx, b, kek)
	if err != nil {
		t.Fatal(err)
	}
	pathOf := func(id string) string { return filepath.Join(dir, "vaults", id+".db") }
	plans, err := r.RestoreAll(ctx, pathOf, nil)
	if err == nil {
		t.Fatalf("%d vaults restored onto a 400 KiB disk", len(plans))
	}
	if !strings.Contains(err.Error(), "no space") && !strings.Contains(err.Error(), "full") {
		t.Fatalf("the restore's error does not say the disk is full: %v", err)
	}
	whole := func() int {
		names, _ := filepath.Glob(filepath.Join(dir, "vaults", "*"))
		for _, f := range names {
			if !strings.HasSuffix(f, ".db") {
				t.Fatalf("the restore left %s", filepath.Base(f))
			}
			if v := versionOf(t, f); v != 1 {
				t.Fatalf("%s is at version %d, want 1", filepath.Base(f), v)
			}
		}
		return len(names)
	}
	kept := whole()
	if kept != len(plans) || kept == n {
		t.Fatalf("%d whole files after the disk filled, %d restored", kept, len(plans))
	}
	tmpfstest.Resize(t, dir, "16m")
	more, err := r.RestoreAll(ctx, pathOf, nil)
	if err != nil || len(more) != n-kept || whole() != n {
		t.Fatalf("the restore with room again: %d more, %v", len(more), err)
	}
}
