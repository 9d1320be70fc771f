package backup

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/spells-dev/spells/backup/s3test"
	"github.com/spells-dev/spells/vault/keys"
)

// mountTmpfs mounts a tmpfs of size on a temporary directory, for a disk
// that can be filled. It needs the right to mount (root, as in CI); without
// it the test is skipped, unless SPELLS_REQUIRE_TMPFS=1 (set by .ci/run).
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size+",mode=0700"); err != nil {
		if os.Getenv("SPELLS_REQUIRE_TMPFS") == "1" {
			t.Fatalf("a tmpfs is required but cannot be mounted: %v", err)
		}
		t.Skipf("cannot mount a tmpfs here (%v); SPELLS_REQUIRE_TMPFS=1 makes this a failure", err)
	}
	t.Cleanup(func() { _ = syscall.Unmount(dir, syscall.MNT_DETACH) })
	return dir
}

// TestRestoreAllOnADiskThatFills: restoring every vault onto a disk too
// small for them stops with the disk's error, leaving only whole vault
// files (none cut short, no temporary file); with room again, the same
// restore goes on and finishes.
func TestRestoreAllOnADiskThatFills(t *testing.T) {
	dir := mountTmpfs(t, "400k")
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
	if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_REMOUNT, "size=16m,mode=0700"); err != nil {
		t.Fatal(err)
	}
	more, err := r.RestoreAll(ctx, pathOf, nil)
	if err != nil || len(more) != n-kept || whole() != n {
		t.Fatalf("the restore with room again: %d more, %v", len(more), err)
	}
}
