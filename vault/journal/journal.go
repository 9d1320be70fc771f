package journal

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Record is one entry of the journal: what happened to one vault, as the
// caller encoded it, numbered.
type Record struct {
	Seq   uint64
	Vault string
	Body  []byte
}

// Journal is an append-only log of records kept in segment files in one
// directory. Write makes a batch durable with one sync; Done marks a
// record as applied where it belongs, and a segment whose every record is
// done is deleted. Sequence numbers only grow, across restarts and even
// across a lost journal directory (a new one starts at the clock's
// microseconds), so a reader that remembers the last number it applied
// never takes a new record for an old one. It is safe for concurrent use.
type Journal struct {
	dir  string
	next atomic.Uint64 // the next sequence number Reserve gives

	// writing is held by Write (and Close) for the whole write and sync:
	// only they touch f and start segments, so Reserve and Done, which
	// take only mu, never wait for a sync.
	writing sync.Mutex
	f       *os.File // the active segment, appended to
	broken  bool     // a write failed and its segment could not be cut back: the next write starts a new segment

	mu      sync.Mutex
	size    int64      // the active segment's length
	segs    []*segment // oldest first; the last is the active one
	drained bool       // the active segment is past DrainedMax with every record done: the next write starts a new one
}

type segment struct {
	path        string
	first, last uint64 // the numbers it may hold: first from its name, last the highest written
	pending     int    // records written and not done
}

// Frame: length of the payload (4 bytes), CRC-32C of the payload (4), then
// the payload: sequence number (8), vault id length (2), vault id, body.
const frameHead = 8

// SegmentMax is the size past which the active segment is closed and a
// new one started; DrainedMax the size past which an active segment whose
// every record is done is replaced by an empty one at the next write
// (Compact does it at once, whatever its size).
const (
	SegmentMax = 64 << 20
	DrainedMax = 1 << 20
)

var crcTable = crc32.MakeTable(crc32.Castagnoli)

// ErrDamaged reports a segment that is not the newest with a frame that
// does not read: records after it are lost. A torn tail of the newest
// segment (a crash during a write nobody was told of) is not damage.
var ErrDamaged = errors.New("journal segment damaged")

// Open opens the journal in dir (creating it) and returns every record its
// segments hold, in order: after a restart, all of them are pending until
// Done. A torn tail of the newest segment is cut off. A damaged older
// segment is reported with ErrDamaged beside the records that read.
func Open(dir string, now time.Time) (*Journal, []Record, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, fmt.Errorf("journal: %w", err)
	}
	names, err := filepath.Glob(filepath.Join(dir, "firings-*.log"))
	if err != nil {
		return nil, nil, fmt.Errorf("journal: %w", err)
	}
	type named struct {
		path  string
		first uint64
	}
	var files []named
	for _, n := range names {
		first, err := strconv.ParseUint(strings.TrimSuffix(strings.TrimPrefix(filepath.Base(n), "firings-"), ".log"), 10, 64)
		if err != nil {
			continue
		}
		files = append(files, named{n, first})
	}
	sort.Slice(files, func(a, b int) bool { return files[a].first < files[b].first })
	j := &Journal{dir: dir}
	next := uint64(now.UnixMicro())
	var recs []Record
	var damaged error
	for i, fl := range files {
		newest := i == len(files)-1
		rs, good, err := readSegment(fl.path)
		if err != nil && !errors.Is(err, ErrDamaged) {
			return nil, nil, err
		}
		s := &segment{path: fl.path, first: fl.first, last: fl.first, pending: len(rs)}
		for _, r := range rs {
			s.last = max(s.last, r.Seq)
		}
		next = max(next, s.last+1, s.first+1)
		recs = append(recs, rs...)
		if err != nil {
			if !newest {
				damaged = fmt.Errorf("%w: %s: %v", ErrDamaged, fl.path, err)
			} else if terr := os.Truncate(fl.path, good); terr != nil {
				return nil, nil, fmt.Errorf("journal: cut the torn tail of %s: %w", fl.path, terr)
			}
		}
		if s.pending == 0 && !newest {
			os.Remove(fl.path) // every record in it was applied before a crash kept it
			continue
		}
		j.segs = append(j.segs, s)
	}
	j.next.Store(next)
	if len(files) == 0 || len(j.segs) == 0 || j.segs[len(j.segs)-1].path != files[len(files)-1].path {
		if err := j.startSegment(next); err != nil {
			return nil, nil, err
		}
		return j, recs, damaged
	}
	s := j.segs[len(j.segs)-1]
	f, err := os.OpenFile(s.path, os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, nil, fmt.Errorf("journal: %w", err)
	}
	fi, err := f.Stat()
	if err != nil {
		f.Close()
		return nil, nil, fmt.Errorf("journal: %w", err)
	}
	j.f, j.size = f, fi.Size()
	return j, recs, damaged
}

// readSegment reads the records of one segment file; on a frame that does
// not read it returns those before it, the length they take, and the
// reason.
func readSegment(path string) ([]Record, int64, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, 0, fmt.Errorf("journal: %w", err)
	}
	var recs []Record
	off := 0
	for off < len(b) {
		if len(b)-off < frameHead {
			return recs, int64(off), fmt.Errorf("%w: a frame cut short at byte %d", ErrDamaged, off)
		}
		n := int(binary.LittleEndian.Uint32(b[off:]))
		sum := binary.LittleEndian.Uint32(b[off+4:])
		if n < 10 || n > len(b)-off-frameHead {
			return recs, int64(off), fmt.Errorf("%w: a frame of bad length at byte %d", ErrDamaged, off)
		}
		p := b[off+frameHead : off+frameHead+n]
		if crc32.Checksum(p, crcTable) != sum {
			return recs, int64(off), fmt.Errorf("%w: a frame with a bad checksum at byte %d", ErrDamaged, off)
		}
		vl := int(binary.LittleEndian.Uint16(p[8:]))
		if 10+vl > n {
			return recs, int64(off), fmt.Errorf("%w: a frame with a bad vault id at byte %d", ErrDamaged, off)
		}
		recs = append(recs, Record{Seq: binary.LittleEndian.Uint64(p), Vault: string(p[10 : 10+vl]), Body: append([]byte(nil), p[10+vl:]...)})
		off += frameHead + n
	}
	return recs, int64(off), nil
}

// startSegment closes the active segment and starts a new, empty one named
// by first, the lowest number it will hold. j.writing is held (or j is not
// shared yet).
func (j *Journal) startSegment(first uint64) error {
	path := filepath.Join(j.dir, fmt.Sprintf("firings-%020d.log", first))
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_APPEND|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	if err := syncDir(j.dir); err != nil {
		f.Close()
		os.Remove(path)
		return err
	}
	if j.f != nil {
		j.f.Close()
	}
	j.f, j.broken = f, false
	j.mu.Lock()
	defer j.mu.Unlock()
	if n := len(j.segs); n > 0 && j.segs[n-1].pending == 0 {
		os.Remove(j.segs[n-1].path)
		j.segs = j.segs[:n-1]
	}
	j.size, j.drained = 0, false
	j.segs = append(j.segs, &segment{path: path, first: first, last: first})
	return nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
		return fmt.Errorf("journal: sync %s: %w", dir, err)
	}
	return nil
}

// Reserve returns the next sequence number. Records must be written in
// the order their numbers were reserved.
func (j *Journal) Reserve() uint64 { return j.next.Add(1) - 1 }

// Write appends recs and syncs them: when it returns nil every one is
// durable. On an error none of them counts as written (a partly written
// batch is cut off again, or the segment is abandoned for a new one, so a
// later batch never follows a torn frame).
func (j *Journal) Write(recs []Record) error {
	if len(recs) == 0 {
		return nil
	}
	var buf []byte
	for _, r := range recs {
		if len(r.Vault) > 0xffff {
			return fmt.Errorf("journal: vault id of %d bytes", len(r.Vault))
		}
		n := 10 + len(r.Vault) + len(r.Body)
		start := len(buf)
		buf = binary.LittleEndian.AppendUint32(buf, uint32(n))
		buf = binary.LittleEndian.AppendUint32(buf, 0)
		buf = binary.LittleEndian.AppendUint64(buf, r.Seq)
		buf = binary.LittleEndian.AppendUint16(buf, uint16(len(r.Vault)))
		buf = append(buf, r.Vault...)
		buf = append(buf, r.Body...)
		binary.LittleEndian.PutUint32(buf[start+4:], crc32.Checksum(buf[start+frameHead:], crcTable))
	}
	j.writing.Lock()
	defer j.writing.Unlock()
	if j.f == nil {
		return errors.New("journal: closed")
	}
	j.mu.Lock()
	size, drained := j.size, j.drained
	j.mu.Unlock()
	if j.broken || drained || size >= SegmentMax {
		if err := j.startSegment(recs[0].Seq); err != nil {
			return err
		}
		size = 0
	}
	_, err := j.f.Write(buf)
	if err == nil {
		err = j.f.Sync()
	}
	if err != nil {
		// Cut what this batch wrote, so the segment ends on a whole frame.
		if j.f.Truncate(size) != nil || j.f.Sync() != nil {
			j.broken = true
		}
		return fmt.Errorf("journal: write %d records: %w", len(recs), err)
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	j.size = size + int64(len(buf))
	s := j.segs[len(j.segs)-1]
	s.pending += len(recs)
	for _, r := range recs {
		s.last = max(s.last, r.Seq)
	}
	return nil
}

// Done marks the record numbered seq as applied. A segment whose every
// record is done is deleted (the active one is replaced by an empty one
// once it is past DrainedMax).
func (j *Journal) Done(seq uint64) {
	j.mu.Lock()
	defer j.mu.Unlock()
	for i, s := range j.segs {
		if seq < s.first || seq > s.last {
			continue
		}
		if s.pending > 0 {
			s.pending--
		}
		if s.pending > 0 {
			return
		}
		if i < len(j.segs)-1 {
			os.Remove(s.path)
			j.segs = append(j.segs[:i], j.segs[i+1:]...)
		} else if j.size >= DrainedMax {
			j.drained = true
		}
		return
	}
}

// Compact replaces the active segment by an empty one when every record
// in it is done, so a restart has nothing to read again. It waits for a
// write in progress.
func (j *Journal) Compact() error {
	j.writing.Lock()
	defer j.writing.Unlock()
	j.mu.Lock()
	s := j.segs[len(j.segs)-1]
	idle := s.pending == 0 && j.size > 0
	j.mu.Unlock()
	if !idle || j.f == nil {
		return nil
	}
	return j.startSegment(j.next.Load())
}

// Pending returns how many records are written and not done.
func (j *Journal) Pending() int {
	j.mu.Lock()
	defer j.mu.Unlock()
	n := 0
	for _, s := range j.segs {
		n += s.pending
	}
	return n
}

// Segments returns how many segment files the journal holds.
func (j *Journal) Segments() int {
	j.mu.Lock()
	defer j.mu.Unlock()
	return len(j.segs)
}

// Close closes the active segment.
func (j *Journal) Close() error {
	j.writing.Lock()
	defer j.writing.Unlock()
	if j.f == nil {
		return nil
	}
	err := j.f.Close()
	j.f = nil
	return err
}
