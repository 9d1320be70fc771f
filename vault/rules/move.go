package rules

import (
	"crypto/sha256"
	"encoding/hex"
	"math"
	"strconv"
	"strings"
	"time"

	"github.com/spells-dev/spells/protocol"
)

// A move is a signal the node makes from another: the percent a signal's
// value stands from the highest (for a fall) or lowest (for a rise) of
// its values within a window. A condition "ETH/USD falls 5 % within an
// hour" is a threshold leaf on that made signal, below -5, so a move is
// indexed, woken and evaluated like any signal leaf.

// Bounds of a move.
const (
	minMoveWindow = time.Minute
	maxMoveWindow = 7 * 24 * time.Hour
)

// MoveKey is what a move's signal measures, as the node takes it:
// "<drop|rise>,<window ms>,<signal>".
func MoveKey(signal string, m *protocol.Move, op string) string {
	dir := "rise"
	if op == protocol.OpBelow {
		dir = "drop"
	}
	return dir + "," + strconv.FormatInt(m.WindowMs, 10) + "," + signal
}

// ParseMoveKey reads a MoveKey back.
func ParseMoveKey(key string) (drop bool, window time.Duration, signal string, ok bool) {
	dir, rest, ok1 := strings.Cut(key, ",")
	ms, sig, ok2 := strings.Cut(rest, ",")
	n, err := strconv.ParseInt(ms, 10, 64)
	if !ok1 || !ok2 || err != nil || (dir != "drop" && dir != "rise") {
		return false, 0, "", false
	}
	return dir == "drop", time.Duration(n) * time.Millisecond, sig, true
}

// MoveSignal is the name of the signal a MoveKey names.
func MoveSignal(key string) string {
	sum := sha256.Sum256([]byte(key))
	return protocol.MovePrefix + hex.EncodeToString(sum[:8])
}

// resolveMove makes a move leaf a threshold leaf on its move's signal:
// the signal it moves is kept in Move.Of. A leaf sent back as it was
// stored resolves the same.
func resolveMove(c *protocol.Condition) error {
	m := c.Move
	if m.Of == "" {
		m.Of = c.Signal
	}
	if !signalNameRe.MatchString(m.Of) || strings.HasPrefix(m.Of, protocol.MovePrefix) || strings.HasPrefix(m.Of, protocol.ReadPrefix) {
		return Invalid("a move needs the signal that moves (a published signal's name)")
	}
	if !(m.Pct > 0 && m.Pct <= 100) || math.IsNaN(m.Pct) {
		return Invalid("a move's pct must be above 0 and at most 100")
	}
	if w := time.Duration(m.WindowMs) * time.Millisecond; w < minMoveWindow || w > maxMoveWindow {
		return Invalid("a move's windowMs must be between %d (a minute) and %d (7 days)", minMoveWindow.Milliseconds(), maxMoveWindow.Milliseconds())
	}
	if c.Op != protocol.OpBelow && c.Op != protocol.OpAbove {
		return Invalid("a move's op is %q (falls by pct) or %q (rises by it)", protocol.OpBelow, protocol.OpAbove)
	}
	if c.From != "" {
		return Invalid("a move takes every value of its signal: no from")
	}
	thr := m.Pct
	if c.Op == protocol.OpBelow {
		thr = -m.Pct
	}
	c.Signal, c.Threshold = MoveSignal(MoveKey(m.Of, m, c.Op)), &thr
	return nil
}

// madeKey is what the node makes for leaf c: its read's, its move's or its
// event's key.
func madeKey(c *protocol.Condition) string {
	switch {
	case c.Read != nil:
		return ReadKey(c.Read)
	case c.Move != nil:
		return MoveKey(c.Move.Of, c.Move, c.Op)
	case c.Event != nil:
		return c.Event.Key
	}
	return ""
}
