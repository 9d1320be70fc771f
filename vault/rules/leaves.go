package rules

import "github.com/spells-dev/spells/protocol"

// Leaf is one threshold condition of one vault's active trigger, as the
// node's interest index keeps it: which values would change it.
type Leaf struct {
	Vault   string // vault id
	Trigger string
	N       int // leaf number in the trigger's condition (depth-first)
	Signal  string
	Op      string
	Thr     float64
	Known   bool // a value has been seen
	Met     bool // the last value seen satisfied Op Thr
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
		if due := t.WakeAt(); due > 0 && (next == 0 || due < next) {
			next = due
		}
		if t.Status != protocol.StatusActive {
			continue
		}
		i := 0
		WalkLeaves(&t.Condition, func(c *protocol.Condition) {
			if c.Signal != "" {
				ls := t.State.Leaves[i]
				leaves = append(leaves, Leaf{Vault: vault, Trigger: t.ID, N: i, Signal: c.Signal, Op: c.Op,
					Thr: *c.Threshold, Known: ls.Known, Met: ls.Met})
			}
			i++
		})
	}
	return next, leaves
}
