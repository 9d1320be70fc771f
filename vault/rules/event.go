package rules

import (
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"time"

	"github.com/spells-dev/spells/protocol"
)

// An event condition holds at a log its contract emits, once per log, and
// at no other time: a pulse, like a schedule's tick. Its leaf keeps a
// cursor, the place in the chain of the last log it took (or of the last
// block it has taken every log of), in the trigger's state: the cursor is
// written in the transaction that records what the log did, so a log is
// taken once whatever stops the node, and the node hands the vault the
// logs after its cursor, however far back that is.

// A log's place in the chain: its block, then its index in the block.
const logIndexBits = 20

// LogPos is the place of log index in block.
func LogPos(block uint64, index uint) uint64 {
	if index >= 1<<logIndexBits-1 {
		index = 1<<logIndexBits - 2
	}
	return block<<logIndexBits | uint64(index)
}

// BlockEnd is the place after every log of block.
func BlockEnd(block uint64) uint64 { return block<<logIndexBits | (1<<logIndexBits - 1) }

// PosBlock is the block of a place.
func PosBlock(pos uint64) uint64 { return pos >> logIndexBits }

// Log is one log of an event condition's filter, as the node hands it to
// a vault.
type Log struct {
	Pos    uint64 // LogPos of its block and index
	Tx     string // its transaction's hash
	Detail string // the event and its arguments, in words
}

// EventKey is what a resolved filter reads, as the node's watcher takes it:
// "<contract>|<Name(type [indexed],…)>|<topic1>|<topic2>|<topic3>", the
// contract and topics in lowercase hex, a topic empty for any.
func EventKey(contract, signature string, topics [3]string) string {
	return strings.ToLower(contract) + "|" + signature + "|" + strings.ToLower(strings.Join(topics[:], "|"))
}

// ParseEventKey reads an EventKey back.
func ParseEventKey(key string) (contract, signature string, topics [3]string, ok bool) {
	parts := strings.Split(key, "|")
	if len(parts) != 5 {
		return "", "", topics, false
	}
	copy(topics[:], parts[2:])
	return parts[0], parts[1], topics, true
}

// EventSignal is the name of the signal of a filter's key.
func EventSignal(key string) string {
	sum := sha256.Sum256([]byte(key))
	return protocol.EventPrefix + hex.EncodeToString(sum[:8])
}

// EventAfter is the place after which an event leaf takes logs: its
// cursor, or the block before its first.
func EventAfter(c *protocol.Condition, ls LeafState) uint64 {
	start := uint64(0)
	if c.Event != nil && c.Event.FromBlock > 0 {
		start = BlockEnd(c.Event.FromBlock - 1)
	}
	return max(ls.P, start)
}

// LogEvent is the event of log l of event signal name, at now.
func LogEvent(name string, l Log, now time.Time) Event {
	return Event{Cause: "signal:" + name, Signal: name, Log: &l, Now: now}
}

// ThroughEvent is the event that every log of event signal name up to
// place pos has been handed to the vault: its leaves' cursors move there.
func ThroughEvent(name string, pos uint64, now time.Time) Event {
	return Event{Cause: "signal:" + name, Signal: name, Through: pos, Now: now}
}

// EventCursor is the place after which the vault takes logs of event
// signal name: the least of its active leaves' (false if none waits on it).
func EventCursor(ts map[string]*Trigger, name string) (after uint64, ok bool) {
	for _, t := range ts {
		if t.Status != protocol.StatusActive {
			continue
		}
		i := 0
		WalkLeaves(&t.Condition, func(c *protocol.Condition) {
			if c.Event != nil && c.Signal == name {
				if a := EventAfter(c, t.State.Leaves[i]); !ok || a < after {
					after, ok = a, true
				}
			}
			i++
		})
	}
	return after, ok
}

// validateEvent checks an event leaf as the vault resolved it.
func validateEvent(c *protocol.Condition) error {
	if c.Read != nil || c.Move != nil || c.Op != "" || c.Threshold != nil || c.From != "" {
		return Invalid("an event condition takes no op, threshold, from, read or move: it holds at each log it takes")
	}
	if c.Event.Key == "" || c.Signal != EventSignal(c.Event.Key) || c.Event.FromBlock == 0 {
		return Invalid("an event condition's signal is named by the vault that takes it")
	}
	return nil
}

// LogBatch is what the node hands a vault of an event signal's logs: the
// logs after the place it asked from, in chain order, and the place up to
// which it has handed over every log.
type LogBatch struct {
	After   uint64 // the place it was asked from
	Logs    []Log
	Through uint64    // every log up to here is handed over
	More    bool      // more follow: ask again from Through
	Skipped []Skipped // blocks up to Through with more logs than a block's bound
	Err     string    // the logs could not be read, and why: the vault asks again when next told
}

// Skipped is a block whose logs past the node's bound a block were not
// handed over: how many were left.
type Skipped struct {
	Block uint64
	N     int
	Bound int
}
