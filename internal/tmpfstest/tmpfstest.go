package tmpfstest

import (
	"os"
	"syscall"
	"testing"
)

// Mount mounts a tmpfs of size (e.g. "8m") on a temporary directory and
// returns it, for a disk that can be filled; it is unmounted when the test
// ends. It needs the right to mount (root, as in CI); without it the test
// is skipped, unless SPELLS_REQUIRE_TMPFS=1 (set by .ci/run).
func Mount(t testing.TB, size string) string {
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

// Resize makes the tmpfs at dir size (room again, or less of it).
func Resize(t testing.TB, dir, size string) {
	t.Helper()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_REMOUNT, "size="+size+",mode=0700"); err != nil {
		t.Fatal(err)
	}
}
