package actor

import (
	"sync"
	"time"

	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/vault/exec"
	"github.com/spells-dev/spells/vault/notify"
	"github.com/spells-dev/spells/vault/rules"
)

// Event is what reaches a vault without its sender ever waiting on it: a
// signal value (Signal set), a chain result (Exec set), an alert's
// delivery (Alert set) or an alarm (none).
type Event struct {
	Exec  *exec.Result
	Alert *notify.Result // a delivery's outcome, or Resume
	// ReadFailed: the node's read of the chain read Signal failed, and why.
	ReadFailed string
	// EventsDue: the node has logs of event signal Signal past the
	// vault's cursor; Logs: the logs it asked for.
	EventsDue bool
	Logs      *rules.LogBatch
	Signal    string
	Value     float64
	Origin    protocol.SignalOrigin // where the value came from
	Received  time.Time             // when the node received it: the lag to evaluation is measured from here
}

// Inbox holds events in arrival order, at most a bound: past it the
// oldest are shed (and counted), so a vault that cannot keep up is handed
// the newest values instead of a growing backlog. The host keeps one for
// a vault with no instance running; every instance has its own. It is
// safe for concurrent use.
type Inbox struct {
	mu     sync.Mutex
	events []Event
}

// Len returns how many events wait.
func (b *Inbox) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.events)
}

// Push appends ev and reports how many events it shed to keep within max.
func (b *Inbox) Push(ev Event, max int) (shed int) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.events) >= max {
		shed = len(b.events) - max + 1
		b.events = append(b.events[:0], b.events[shed:]...)
	}
	b.events = append(b.events, ev)
	return shed
}

// Take returns the events and empties the inbox.
func (b *Inbox) Take() []Event {
	b.mu.Lock()
	defer b.mu.Unlock()
	evs := b.events
	b.events = nil
	return evs
}
