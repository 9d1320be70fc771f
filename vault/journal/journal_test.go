package journal

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

var t0 = time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)

func open(t *testing.T, dir string) (*Journal, []Record) {
	t.Helper()
	j, recs, err := Open(dir, t0)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { j.Close() })
	return j, recs
}

func write(t *testing.T, j *Journal, n int) []Record {
	t.Helper()
	recs := make([]Record, n)
	for i := range recs {
		recs[i] = Record{Seq: j.Reserve(), Vault: fmt.Sprintf("0x%040d", i), Body: []byte(fmt.Sprintf(`{"n":%d}`, i))}
	}
	if err := j.Write(recs); err != nil {
		t.Fatal(err)
	}
	return recs
}

func same(t *testing.T, got, want []Record) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d records, want %d", len(got), len(want))
	}
	for i := range got {
		if got[i].Seq != want[i].Seq || got[i].Vault != want[i].Vault || !bytes.Equal(got[i].Body, want[i].Body) {
			t.Fatalf("record %d is %+v, want %+v", i, got[i], want[i])
		}
	}
}

func TestWrittenRecordsAreReadBackInOrder(t *testing.T) {
	dir := t.TempDir()
	j, recs := open(t, dir)
	if len(recs) != 0 {
		t.Fatalf("a new journal holds %d records", len(recs))
	}
	a := write(t, j, 3)
	b := write(t, j, 2)
	j.Close()
	_, got := open(t, dir)
	same(t, got, append(a, b...))
}

// A crash in the middle of a write leaves a torn frame at the end of the
// newest segment: it is cut off, nothing before it is lost, and the next
// write follows the last whole frame.
func TestATornTailIsCutOff(t *testing.T) {
	dir := t.TempDir()
	j, _ := open(t, dir)
	a := write(t, j, 4)
	j.Close()
	seg, _ := filepath.Glob(filepath.Join(dir, "firings-*.log"))
	f, err := os.OpenFile(seg[0], os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.Write([]byte{40, 0, 0, 0, 1, 2, 3}) // a frame head cut short
	f.Close()
	j, got := open(t, dir)
	same(t, got, a)
	b := write(t, j, 1)
	j.Close()
	_, got = open(t, dir)
	same(t, got, append(a, b...))
}

// A flipped byte inside a record is found by its checksum: the records
// before it are read, the damage reported when it is not the newest
// segment's tail.
func TestABadChecksumStopsTheRead(t *testing.T) {
	dir := t.TempDir()
	j, _ := open(t, dir)
	a := write(t, j, 3)
	j.Close()
	seg, _ := filepath.Glob(filepath.Join(dir, "firings-*.log"))
	b, _ := os.ReadFile(seg[0])
	b[len(b)-3] ^= 0xff // in the last record's body
	os.WriteFile(seg[0], b, 0o600)
	_, got := open(t, dir)
	same(t, got, a[:2])
}

func TestADamagedOlderSegmentIsReported(t *testing.T) {
	dir := t.TempDir()
	j, _ := open(t, dir)
	write(t, j, 2)
	j.Close()
	old, _ := filepath.Glob(filepath.Join(dir, "firings-*.log"))
	// A newer segment beside it, as a rotation leaves.
	j, _ = open(t, dir)
	j.mu.Lock()
	j.drained = true
	j.mu.Unlock()
	newer := write(t, j, 1)
	j.Close()
	b, _ := os.ReadFile(old[0])
	b[10] ^= 0xff
	os.WriteFile(old[0], b, 0o600)
	j2, got, err := Open(dir, t0)
	if !errors.Is(err, ErrDamaged) {
		t.Fatalf("open: %v, want ErrDamaged", err)
	}
	defer j2.Close()
	same(t, got, newer)
}

// A segment whose every record is done is deleted; the active one is
// replaced once it is drained and past DrainedMax.
func TestDoneRecordsFreeTheirSegments(t *testing.T) {
	dir := t.TempDir()
	j, _ := open(t, dir)
	var all []Record
	for len(all) == 0 || j.Segments() < 3 {
		recs := make([]Record, 1000)
		for i := range recs {
			recs[i] = Record{Seq: j.Reserve(), Vault: "0xv", Body: bytes.Repeat([]byte{'x'}, 8<<10)}
		}
		if err := j.Write(recs); err != nil {
			t.Fatal(err)
		}
		all = append(all, recs...)
	}
	if p := j.Pending(); p != len(all) {
		t.Fatalf("%d pending, want %d", p, len(all))
	}
	for _, r := range all {
		j.Done(r.Seq)
	}
	if p := j.Pending(); p != 0 {
		t.Fatalf("%d pending after every record is done", p)
	}
	write(t, j, 1) // starts a new segment: the drained active one goes
	if n := j.Segments(); n != 1 {
		t.Fatalf("%d segments once everything is done, want 1", n)
	}
	segs, _ := filepath.Glob(filepath.Join(dir, "firings-*.log"))
	if len(segs) != 1 {
		t.Fatalf("%d segment files, want 1", len(segs))
	}
	j.Close()
	_, got := open(t, dir)
	if len(got) != 1 {
		t.Fatalf("%d records read back, want 1", len(got))
	}
}

// Numbers only grow: across a reopen, and across a journal directory that
// was lost (a new one starts at the clock's microseconds, past any number
// an earlier one gave out before that time).
func TestNumbersOnlyGrow(t *testing.T) {
	dir := t.TempDir()
	j, _ := open(t, dir)
	a := write(t, j, 5)
	j.Close()
	j, _ = open(t, dir)
	if s := j.Reserve(); s <= a[4].Seq {
		t.Fatalf("after a reopen the next number is %d, the last was %d", s, a[4].Seq)
	}
	j.Close()
	os.RemoveAll(dir)
	j2, _, err := Open(dir, t0.Add(time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer j2.Close()
	if s := j2.Reserve(); s <= a[4].Seq {
		t.Fatalf("a new journal starts at %d, the lost one reached %d", s, a[4].Seq)
	}
}

// A write that fails leaves nothing of itself behind.
func TestAFailedWriteLeavesNoTrace(t *testing.T) {
	dir := t.TempDir()
	j, _ := open(t, dir)
	a := write(t, j, 2)
	j.writing.Lock()
	j.f.Close() // every write on it fails now
	j.writing.Unlock()
	if err := j.Write([]Record{{Seq: j.Reserve(), Vault: "0xv", Body: []byte("{}")}}); err == nil {
		t.Fatal("a write on a closed file succeeded")
	}
	if p := j.Pending(); p != 2 {
		t.Fatalf("%d pending after a failed write, want 2", p)
	}
	b := write(t, j, 1) // a new segment
	j.Close()
	_, got := open(t, dir)
	same(t, got, append(a, b...))
}

// Compact leaves nothing to read again once every record is done.
func TestCompactEmptiesADrainedJournal(t *testing.T) {
	dir := t.TempDir()
	j, _ := open(t, dir)
	recs := write(t, j, 3)
	if err := j.Compact(); err != nil {
		t.Fatal(err)
	}
	j.Close()
	j, got := open(t, dir)
	same(t, got, recs) // records not done are kept
	for _, r := range recs {
		j.Done(r.Seq)
	}
	if err := j.Compact(); err != nil {
		t.Fatal(err)
	}
	j.Close()
	j, got = open(t, dir)
	if len(got) != 0 {
		t.Fatalf("%d records read after every record was done and the journal compacted", len(got))
	}
	if s := j.Reserve(); s <= recs[2].Seq {
		t.Fatalf("after compaction the next number is %d, the last was %d", s, recs[2].Seq)
	}
}
