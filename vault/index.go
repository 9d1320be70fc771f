package vault

import (
	"strings"
	"sync"

	"github.com/google/btree"

	"github.com/spells-dev/spells/protocol"
)

// leaf is one threshold condition of one vault's active trigger, as the
// interest index knows it.
type leaf struct {
	vault   string // vault id
	trigger string
	n       int // leaf number in the trigger's condition (depth-first)
	signal  string
	op      string
	thr     float64
	known   bool // a value has been seen
	met     bool // the last value seen satisfied op thr
}

func (l leaf) flips(v float64) bool {
	met := v < l.thr
	if l.op == protocol.OpAbove {
		met = v > l.thr
	}
	return !l.known || met != l.met
}

func (l leaf) after(v float64) leaf {
	l.known = true
	l.met = v < l.thr
	if l.op == protocol.OpAbove {
		l.met = v > l.thr
	}
	return l
}

// Four ordered sets per signal, by (threshold, vault, trigger, leaf):
// a value v changes the state of exactly
//   - belowUnmet leaves with thr > v   (v fell below them)
//   - belowMet   leaves with thr <= v  (v is no longer below)
//   - aboveUnmet leaves with thr < v   (v rose above them)
//   - aboveMet   leaves with thr >= v  (v is no longer above)
//
// so a tick finds the leaves it crosses with range scans, without touching
// the others, and a tick that crosses nothing finds nothing.
const (
	belowUnmet = iota
	belowMet
	aboveUnmet
	aboveMet
)

func leafLess(a, b leaf) bool {
	if a.thr != b.thr {
		return a.thr < b.thr
	}
	if c := strings.Compare(a.vault, b.vault); c != 0 {
		return c < 0
	}
	if c := strings.Compare(a.trigger, b.trigger); c != 0 {
		return c < 0
	}
	return a.n < b.n
}

type signalSet struct {
	trees   [4]*btree.BTreeG[leaf]
	unknown map[leaf]struct{} // leaves that have not seen a value yet
}

func newSignalSet() *signalSet {
	s := &signalSet{unknown: map[leaf]struct{}{}}
	for i := range s.trees {
		s.trees[i] = btree.NewG(32, leafLess)
	}
	return s
}

func (s *signalSet) insert(l leaf) {
	if !l.known {
		s.unknown[l] = struct{}{}
		return
	}
	s.trees[treeOf(l)].ReplaceOrInsert(l)
}

func (s *signalSet) delete(l leaf) {
	if !l.known {
		delete(s.unknown, l)
		return
	}
	s.trees[treeOf(l)].Delete(l)
}

func (s *signalSet) len() int {
	n := len(s.unknown)
	for _, t := range s.trees {
		n += t.Len()
	}
	return n
}

func treeOf(l leaf) int {
	i := belowUnmet
	if l.op == protocol.OpAbove {
		i = aboveUnmet
	}
	if l.met {
		i++
	}
	return i
}

// crossed returns the leaves whose state v changes.
func (s *signalSet) crossed(v float64) []leaf {
	var out []leaf
	collect := func(l leaf) bool { out = append(out, l); return true }
	pivot := leaf{thr: v}
	s.trees[belowUnmet].AscendGreaterOrEqual(pivot, func(l leaf) bool {
		if l.thr > v {
			out = append(out, l)
		}
		return true
	})
	s.trees[belowMet].Ascend(func(l leaf) bool { return l.thr <= v && collect(l) })
	s.trees[aboveUnmet].AscendLessThan(pivot, collect)
	s.trees[aboveMet].AscendGreaterOrEqual(pivot, collect)
	for l := range s.unknown {
		out = append(out, l)
	}
	return out
}

// interestIndex maps signals to the threshold leaves of every vault on the
// node, open or hibernated. The vaults are the source of truth: each open
// vault reports its leaves after every change. Between reports the index
// applies each dispatched value to the leaves it sends it to, with the
// same rule the vault uses, so it always knows which leaves a value
// crosses. It is safe for concurrent use.
type interestIndex struct {
	mu      sync.Mutex
	signals map[string]*signalSet
	byVault map[string][]leaf
	last    map[string]float64
}

func newInterestIndex() *interestIndex {
	return &interestIndex{signals: map[string]*signalSet{}, byVault: map[string][]leaf{}, last: map[string]float64{}}
}

// set replaces the leaves of vault id. It returns the latest value of each
// signal that one of these leaves has not seen yet, to be sent to the
// vault (a report can race with a dispatch the vault did not get).
func (ix *interestIndex) set(id string, leaves []leaf) map[string]float64 {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ix.removeLocked(id)
	var resend map[string]float64
	for _, l := range leaves {
		s := ix.signals[l.signal]
		if s == nil {
			s = newSignalSet()
			ix.signals[l.signal] = s
		}
		if v, ok := ix.last[l.signal]; ok && l.flips(v) {
			if resend == nil {
				resend = map[string]float64{}
			}
			resend[l.signal] = v
		}
		s.insert(l)
	}
	if len(leaves) > 0 {
		ix.byVault[id] = leaves
	}
	return resend
}

func (ix *interestIndex) removeLocked(id string) {
	for _, l := range ix.byVault[id] {
		if s := ix.signals[l.signal]; s != nil {
			s.delete(l) // byVault holds the current copy (see replaceInVault)
			if s.len() == 0 {
				delete(ix.signals, l.signal)
			}
		}
	}
	delete(ix.byVault, id)
}

// dispatch records v as the latest value of signal, applies it to the
// leaves it crosses, and returns the ids of their vaults.
func (ix *interestIndex) dispatch(signal string, v float64) []string {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ix.last[signal] = v
	s := ix.signals[signal]
	if s == nil {
		return nil
	}
	hit := s.crossed(v)
	seen := map[string]struct{}{}
	var ids []string
	for _, l := range hit {
		s.delete(l)
		nl := l.after(v)
		s.insert(nl)
		ix.replaceInVault(l, nl)
		if _, ok := seen[l.vault]; !ok {
			seen[l.vault] = struct{}{}
			ids = append(ids, l.vault)
		}
	}
	return ids
}

func (ix *interestIndex) replaceInVault(old, nl leaf) {
	ls := ix.byVault[old.vault]
	for i := range ls {
		if ls[i].trigger == old.trigger && ls[i].n == old.n {
			ls[i] = nl
			return
		}
	}
}

// watchers returns how many vaults have a leaf on signal.
func (ix *interestIndex) watchers(signal string) int {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	n := 0
	for _, ls := range ix.byVault {
		for _, l := range ls {
			if l.signal == signal {
				n++
				break
			}
		}
	}
	return n
}
