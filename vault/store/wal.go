package store

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
)

// A vault's write-ahead log is checked before SQLite opens a file a crash
// left it with: SQLite replays the log's frames up to the first one whose
// checksum fails and drops the rest without a word, which is right for a
// transaction a crash cut short (it was never acknowledged) and wrong for a
// damaged frame with acknowledged transactions after it. CheckWAL tells
// the two apart, reading the format SQLite documents (fileformat2.html,
// "The Write-Ahead Log"): a 32-byte header (magic, version, page size,
// checkpoint sequence, two salts, a checksum), then frames of a 24-byte
// header (page number, the database's size after a commit or 0, the two
// salts, a cumulative checksum) and one page.

const (
	walHeaderSize      = 32
	walFrameHeaderSize = 24
	walMagicLE         = 0x377f0682 // checksums over little-endian words
	walMagicBE         = 0x377f0683 // over big-endian words
)

// WALReport is what CheckWAL found in a write-ahead log.
type WALReport struct {
	Frames    int // frames that SQLite will replay (up to the last valid commit)
	Commits   int // committed transactions among them
	Dropped   int // frames of this log's generation after the first invalid one
	LostAfter int // commits among the dropped frames: acknowledged transactions a replay would lose
}

// CheckWAL reads the write-ahead log at path. An absent or empty log, or
// one whose only invalid frames are the last transaction's (cut short by a
// crash), is fine; a log whose header is damaged, or with committed
// transactions of its generation after an invalid frame, is a Damage: the
// vault would open at an older version than it acknowledged.
func CheckWAL(path string) (WALReport, error) {
	var r WALReport
	f, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return r, nil
	}
	if err != nil {
		return r, err
	}
	defer f.Close()
	hdr := make([]byte, walHeaderSize)
	if _, err := io.ReadFull(f, hdr); err != nil {
		if errors.Is(err, io.EOF) {
			return r, nil // empty: nothing to replay
		}
		if errors.Is(err, io.ErrUnexpectedEOF) {
			return r, nil // a header cut short: no frame was ever committed after it
		}
		return r, err
	}
	magic := binary.BigEndian.Uint32(hdr[0:])
	if magic != walMagicLE && magic != walMagicBE {
		return r, Damaged("write-ahead log %s: its header is damaged (magic %#x)", path, magic)
	}
	order := binary.ByteOrder(binary.LittleEndian)
	if magic == walMagicBE {
		order = binary.BigEndian
	}
	pageSize := int(binary.BigEndian.Uint32(hdr[8:]))
	if pageSize == 1 {
		pageSize = 65536
	}
	if pageSize < 512 || pageSize > 65536 || pageSize&(pageSize-1) != 0 {
		return r, Damaged("write-ahead log %s: its header is damaged (page size %d)", path, pageSize)
	}
	s0, s1 := walChecksum(order, hdr[:24], 0, 0)
	if s0 != binary.BigEndian.Uint32(hdr[24:]) || s1 != binary.BigEndian.Uint32(hdr[28:]) {
		return r, Damaged("write-ahead log %s: its header's checksum does not match", path)
	}
	salt1, salt2 := binary.BigEndian.Uint32(hdr[16:]), binary.BigEndian.Uint32(hdr[20:])
	frame := make([]byte, walFrameHeaderSize+pageSize)
	valid, pending := true, 0
	for n := 0; ; n++ {
		if _, err := io.ReadFull(f, frame); err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
				break
			}
			return r, err
		}
		if binary.BigEndian.Uint32(frame[8:]) != salt1 || binary.BigEndian.Uint32(frame[12:]) != salt2 {
			// A frame of an earlier generation (the log is reused from
			// its start after a checkpoint), or one whose header is
			// damaged: replay stops at it. The scan goes on: a frame of
			// this generation further on is one the damage hides.
			valid = false
			continue
		}
		commit := binary.BigEndian.Uint32(frame[4:]) != 0
		if valid {
			c0, c1 := walChecksum(order, frame[:8], s0, s1)
			c0, c1 = walChecksum(order, frame[walFrameHeaderSize:], c0, c1)
			if c0 == binary.BigEndian.Uint32(frame[16:]) && c1 == binary.BigEndian.Uint32(frame[20:]) {
				s0, s1 = c0, c1
				pending++
				if commit {
					r.Frames += pending
					r.Commits++
					pending = 0
				}
				continue
			}
			valid = false
		}
		r.Dropped++
		if commit {
			r.LostAfter++
		}
	}
	// The last transaction may be cut short by the crash (it was never
	// acknowledged: its commit had not returned): one dropped commit at
	// the very end is that. More is damage.
	if r.LostAfter > 1 {
		return r, Damaged("write-ahead log %s is damaged: after its %d valid transactions, %d more that were committed would be dropped (%d frames)",
			path, r.Commits, r.LostAfter, r.Dropped)
	}
	return r, nil
}

// walChecksum continues the log's checksum (s0, s1) over b, a multiple of
// 8 bytes, read as 32-bit words in order.
func walChecksum(order binary.ByteOrder, b []byte, s0, s1 uint32) (uint32, uint32) {
	for i := 0; i+8 <= len(b); i += 8 {
		s0 += order.Uint32(b[i:]) + s1
		s1 += order.Uint32(b[i+4:]) + s0
	}
	return s0, s1
}

// String describes the report for a log line.
func (r WALReport) String() string {
	return fmt.Sprintf("%d frames in %d transactions to replay, %d frames dropped (%d commits)", r.Frames, r.Commits, r.Dropped, r.LostAfter)
}
