package vault

import (
	"strings"
	"sync"

	"github.com/google/btree"

	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/vault/rules"
)

// leaf is one threshold condition of one vault's active trigger, as the
// interest index keeps it.
type leaf = rules.Leaf

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
	if a.Thr != b.Thr {
		return a.Thr < b.Thr
	}
	if c := strings.Compare(a.Vault, b.Vault); c != 0 {
		return c < 0
	}
	if c := strings.Compare(a.Trigger, b.Trigger); c != 0 {
		return c < 0
	}
	return a.N < b.N
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
	if !l.Known {
		s.unknown[l] = struct{}{}
		return
	}
	s.trees[treeOf(l)].ReplaceOrInsert(l)
}

func (s *signalSet) delete(l leaf) {
	if !l.Known {
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
	if l.Op == protocol.OpAbove {
		i = aboveUnmet
	}
	if l.Met {
		i++
	}
	return i
}

// crossed returns the leaves whose state v changes.
func (s *signalSet) crossed(v float64) []leaf {
	var out []leaf
	collect := func(l leaf) bool { out = append(out, l); return true }
	pivot := leaf{Thr: v}
	s.trees[belowUnmet].AscendGreaterOrEqual(pivot, func(l leaf) bool {
		if l.Thr > v {
			out = append(out, l)
		}
		return true
	})
	s.trees[belowMet].Ascend(func(l leaf) bool { return l.Thr <= v && collect(l) })
	s.trees[aboveUnmet].AscendLessThan(pivot, collect)
	s.trees[aboveMet].AscendGreaterOrEqual(pivot, collect)
	for l := range s.unknown {
		out = append(out, l)
	}
	return out
}

// interestIndex maps signals to the threshold leaves of every vault on the
// node, open or hibernated, by the leaf's key (rules.Leaf.Key): a leaf
// that takes only a feed's or a publisher's values is reached only by
// values of that origin. The vaults are the source of truth: each open
// vault reports its leaves after every change. Between reports the index
// applies each dispatched value to the leaves it sends it to, with the
// same rule the vault uses, so it always knows which leaves a value
// crosses. It is safe for concurrent use.
type interestIndex struct {
	mu      sync.Mutex
	signals map[string]*signalSet
	byVault map[string][]leaf
	last    map[string]rules.Offer  // by key
	reads   map[string]*watchedRead // the signals the node makes (chain reads, moves) by name: what to make, and who waits on it
}

// watchedRead is one signal the node makes: a chain read, or a move.
type watchedRead struct {
	key    string         // rules.ReadKey or rules.MoveKey
	leaves int            // leaves that wait on it
	vaults map[string]int // their vaults, with how many of their leaves
}

func newInterestIndex() *interestIndex {
	return &interestIndex{signals: map[string]*signalSet{}, byVault: map[string][]leaf{}, last: map[string]rules.Offer{}, reads: map[string]*watchedRead{}}
}

// set replaces the leaves of vault id. It returns the latest value of each
// signal that one of these leaves has not seen yet, to be sent to the
// vault (a report can race with a dispatch the vault did not get).
func (ix *interestIndex) set(id string, leaves []leaf) map[string]rules.Offer {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	ix.removeLocked(id)
	var resend map[string]rules.Offer
	for _, l := range leaves {
		if l.Made != "" {
			r := ix.reads[l.Signal]
			if r == nil {
				r = &watchedRead{key: l.Made, vaults: map[string]int{}}
				ix.reads[l.Signal] = r
			}
			r.leaves++
			r.vaults[id]++
		}
		if strings.HasPrefix(l.Signal, protocol.EventPrefix) {
			continue // no value crosses it: its logs are handed over (events.go)
		}
		k := l.Key()
		s := ix.signals[k]
		if s == nil {
			s = newSignalSet()
			ix.signals[k] = s
		}
		if o, ok := ix.last[k]; ok && l.Flips(o.Value) {
			if resend == nil {
				resend = map[string]rules.Offer{}
			}
			resend[k] = o
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
		if r := ix.reads[l.Signal]; r != nil && l.Made != "" {
			if r.vaults[id]--; r.vaults[id] <= 0 {
				delete(r.vaults, id)
			}
			if r.leaves--; r.leaves <= 0 {
				delete(ix.reads, l.Signal)
			}
		}
		if s := ix.signals[l.Key()]; s != nil {
			s.delete(l) // byVault holds the current copy (see replaceInVault)
			if s.len() == 0 {
				delete(ix.signals, l.Key())
			}
		}
	}
	delete(ix.byVault, id)
}

// dispatch records v, from origin o, as the latest value of each key it
// reaches (rules.Keys), applies it to the leaves it crosses, and returns
// the ids of their vaults.
func (ix *interestIndex) dispatch(signal string, v float64, o protocol.SignalOrigin) []string {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	var ids []string
	var seen map[string]struct{}
	for _, k := range rules.Keys(signal, o) {
		ix.last[k] = rules.Offer{Signal: signal, Value: v, Origin: o}
		s := ix.signals[k]
		if s == nil {
			continue
		}
		for _, l := range s.crossed(v) {
			s.delete(l)
			nl := l.After(v)
			s.insert(nl)
			ix.replaceInVault(l, nl)
			if seen == nil {
				seen = map[string]struct{}{}
			}
			if _, ok := seen[l.Vault]; !ok {
				seen[l.Vault] = struct{}{}
				ids = append(ids, l.Vault)
			}
		}
	}
	return ids
}

func (ix *interestIndex) replaceInVault(old, nl leaf) {
	ls := ix.byVault[old.Vault]
	for i := range ls {
		if ls[i].Trigger == old.Trigger && ls[i].N == old.N {
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
			if l.Signal == signal {
				n++
				break
			}
		}
	}
	return n
}

// watchedMade returns the signals with prefix the node makes that some
// leaf waits on: signal → what to make (rules.ReadKey, rules.MoveKey).
func (ix *interestIndex) watchedMade(prefix string) map[string]string {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	out := map[string]string{}
	for name, r := range ix.reads {
		if strings.HasPrefix(name, prefix) {
			out[name] = r.key
		}
	}
	return out
}

// eventVaults returns the vaults with a leaf on event signal name whose
// cursor is before pos.
func (ix *interestIndex) eventVaults(name string, pos uint64) []string {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	r := ix.reads[name]
	if r == nil {
		return nil
	}
	var out []string
	for id := range r.vaults {
		for _, l := range ix.byVault[id] {
			if l.Signal == name && l.Cursor < pos {
				out = append(out, id)
				break
			}
		}
	}
	return out
}

// eventFrom returns the least cursor of the leaves on event signal name.
func (ix *interestIndex) eventFrom(name string) (cursor uint64, ok bool) {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	r := ix.reads[name]
	if r == nil {
		return 0, false
	}
	for id := range r.vaults {
		for _, l := range ix.byVault[id] {
			if l.Signal == name && (!ok || l.Cursor < cursor) {
				cursor, ok = l.Cursor, true
			}
		}
	}
	return cursor, ok
}

// readVaults returns the vaults with a leaf on read signal name.
func (ix *interestIndex) readVaults(name string) []string {
	ix.mu.Lock()
	defer ix.mu.Unlock()
	r := ix.reads[name]
	if r == nil {
		return nil
	}
	out := make([]string, 0, len(r.vaults))
	for id := range r.vaults {
		out = append(out, id)
	}
	return out
}
