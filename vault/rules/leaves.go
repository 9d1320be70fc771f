package rules

import (
	"strings"

	"github.com/spells-dev/spells/protocol"
)

// Leaf is one threshold condition of one vault's active trigger, as the
// node's interest index keeps it: which values would change it.
type Leaf struct {
	Vault   string // vault id
	Trigger string
	N       int // leaf number in the trigger's condition (depth-first)
	Signal  string
	Op      string
	Thr     float64
	Known   bool   // a value has been seen
	Met     bool   // the last value seen satisfied Op Thr
	From    string // the values it takes (NormFrom of its condition's From)
	Made    string // for a signal the node makes, what it makes (ReadKey, MoveKey or EventKey); else ""
	Cursor  uint64 // an event leaf's cursor (EventAfter)
}

// Key is the index key of the values a leaf takes: its signal, and the
// origin it requires, if any.
func (l Leaf) Key() string { return IndexKey(l.Signal, l.From) }

// IndexKey is the key of signal's values from origin from (NormFrom).
func IndexKey(signal, from string) string {
	if from == "" {
		return signal
	}
	return signal + "\x00" + from
}

// NormFrom is a condition's From as leaves and keys hold it: "", "feed"
// or a lowercase address.
func NormFrom(from string) string { return strings.ToLower(from) }

// Keys are the index keys a value of signal from origin o reaches: the
// signal's own, and its feed's or its publisher's if o has one.
func Keys(signal string, o protocol.SignalOrigin) []string {
	keys := []string{signal}
	if o.Feed {
		keys = append(keys, IndexKey(signal, protocol.SignalFeed))
	}
	if o.Publisher != "" {
		keys = append(keys, IndexKey(signal, NormFrom(o.Publisher)))
	}
	return keys
}

// Offer is a value of a signal, with its origin, that the node offers a
// vault.
type Offer struct {
	Signal string
	Value  float64
	Origin protocol.SignalOrigin
}

// Flips reports whether value v changes the leaf's state (the vault would
// evaluate it).
func (l Leaf) Flips(v float64) bool { return !l.Known || met(l.Op, l.Thr, v) != l.Met }

// After is the leaf once it has seen v, by the rule a vault applies.
func (l Leaf) After(v float64) Leaf {
	l.Known, l.Met = true, met(l.Op, l.Thr, v)
	return l
}

// Report is what the node keeps of a vault's triggers while it sleeps:
// when it must wake next (0: never), and its active threshold leaves.
func Report(vault string, ts map[string]*Trigger) (next int64, leaves []Leaf) {
	for _, t := range ts {
		next, leaves = report(vault, t, next, leaves)
	}
	return next, leaves
}

// ReportOf is Report of the triggers in a slice.
func ReportOf(vault string, ts []*Trigger) (next int64, leaves []Leaf) {
	for _, t := range ts {
		next, leaves = report(vault, t, next, leaves)
	}
	return next, leaves
}

func report(vault string, t *Trigger, next int64, leaves []Leaf) (int64, []Leaf) {
	if due := t.WakeAt(); due > 0 && (next == 0 || due < next) {
		next = due
	}
	if t.Status != protocol.StatusActive {
		return next, leaves
	}
	i := 0
	WalkLeaves(&t.Condition, func(c *protocol.Condition) {
		if c.Signal != "" {
			ls := t.State.Leaves[i]
			l := Leaf{Vault: vault, Trigger: t.ID, N: i, Signal: c.Signal, Op: c.Op,
				Known: ls.Known, Met: ls.Met, From: NormFrom(c.From), Made: madeKey(c)}
			if c.Event != nil {
				l.Cursor = EventAfter(c, ls)
			} else {
				l.Thr = *c.Threshold
			}
			leaves = append(leaves, l)
		}
		i++
	})
	return next, leaves
}
