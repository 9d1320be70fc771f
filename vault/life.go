package vault

import "fmt"

// life is where one instance of a vault stands in its life on this node.
// Every change of it goes through Manager.setLifeLocked, which keeps the
// counts, the gauges, the routing maps and the callers waiting for a file
// slot in step (ARCHITECTURE.md draws the machine). An instance is one run
// of a vault's goroutine; a hibernated vault has none, only its file, its
// alarm in the node's heap and its leaves in the interest index.
//
//	none ──► unborn ──► open            (a first sign-in creates the file)
//	none ──► opening ─► open            (a hibernated vault is woken)
//	open ──► evicting ─► open            (the eviction found work and gave up)
//	open, evicting ──► dozingOff ──► dozing ──► waking ──► open
//	open, evicting ──► closing ──► gone  (hibernation: the file closes as the goroutine ends)
//	unborn, opening, dozing, waking ──► ending ──► gone (no file to close)
//
// Any state may end in gone when the goroutine stops (a failed commit, the
// node closing). Quarantine is not a state of an instance but of the vault:
// its file was moved aside and no instance is started for it again (see
// quarantine.go). Where a vault stands on the node beyond its instances
// (held, moving, moved, arriving, quarantined) is its place (place.go).
type life uint8

const (
	none      life = iota // not yet registered
	unborn                // no file yet: its first letter, a verified sign-in, creates it
	opening               // its goroutine is opening the file
	open                  // file open
	evicting              // open, asked to close its file to free a slot (hibernate or doze)
	dozingOff             // closing its file, keeping its goroutine, state and subscribers
	dozing                // file closed; goroutine, state and subscribers kept
	waking                // dozing, with a slot taken to reopen its file
	closing               // hibernating: out of routing, goroutine ending, file still open
	ending                // out of routing, goroutine ending, no file
	gone                  // its goroutine has ended
	numLives
)

var lifeNames = [numLives]string{"none", "unborn", "opening", "open", "evicting", "dozing_off", "dozing", "waking", "closing", "ending", "gone"}

func (l life) String() string {
	if l < numLives {
		return lifeNames[l]
	}
	return fmt.Sprintf("life(%d)", uint8(l))
}

// holdsFile reports whether an instance in this state holds a vault file's
// descriptors, or is about to: what MaxOpen bounds.
func (l life) holdsFile() bool {
	switch l {
	case unborn, opening, open, evicting, dozingOff, waking, closing:
		return true
	}
	return false
}

// routed reports whether the instance is the one requests for its vault
// reach (in Manager.vaults).
func (l life) routed() bool { return l >= unborn && l <= waking }

// leaving reports whether the instance is retired but its goroutine still
// runs (in Manager.leaving): a new instance must wait for it.
func (l life) leaving() bool { return l == closing || l == ending }

// lifeMoves lists the allowed transitions. Besides these, every state
// may end in gone, and every routed state may be abandoned (ending, or
// closing when it holds a file).
var lifeMoves = map[life][]life{
	none:      {unborn, opening},
	unborn:    {open, ending},
	opening:   {open, ending},
	open:      {evicting, dozingOff, closing},
	evicting:  {open, dozingOff, closing},
	dozingOff: {dozing},
	dozing:    {waking, ending},
	waking:    {open, ending},
	closing:   {},
	ending:    {},
}

func lifeAllowed(from, to life) bool {
	switch {
	case to == gone && from != none:
		return true
	case from.routed() && (to == ending || to == closing && from.holdsFile()):
		return true // an instance that ends for a reason of its own (Manager.abandon)
	}
	for _, l := range lifeMoves[from] {
		if l == to {
			return true
		}
	}
	return false
}
