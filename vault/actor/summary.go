package actor

import (
	"time"

	"zombiezen.com/go/sqlite"

	"github.com/spells-dev/spells/vault/exec"
	"github.com/spells-dev/spells/vault/rules"
	"github.com/spells-dev/spells/vault/store"
)

// Summary is what the node keeps of a vault that sleeps, read from its
// file without running it: its own row, when it must be woken, the
// thresholds it reacts to, and whether intents of it are under way.
type Summary struct {
	Head        store.Head
	Next        int64 // its next alarm (unix ms; 0: none)
	Leaves      []rules.Leaf
	OpenIntents bool
	// PendingAlerts: alerts in its outbox wait for delivery.
	PendingAlerts bool
	Asleep        *Asleep // what a signal can fire of it without opening it (nil: nothing)
}

// Summarize reads the summary of vault id from its file, as a vault
// loading its state would read it (so a file it could not load is found
// here too).
func Summarize(conn *sqlite.Conn, id string, now time.Time) (Summary, error) {
	var s Summary
	var err error
	if s.Head, err = store.ReadHead(conn); err != nil {
		return s, err
	}
	if _, err := store.ReadRing(conn); err != nil {
		return s, err
	}
	ts, err := loadTriggers(conn)
	if err != nil {
		return s, err
	}
	if _, err := store.LoadSessions(conn, now); err != nil {
		return s, err
	}
	s.Next, s.Leaves = rules.Report(id, ts)
	s.Asleep = asleepOf(ts, 0)
	if s.OpenIntents, err = store.AnyIntentWith(conn, exec.OpenStatuses()...); err != nil {
		return s, err
	}
	s.PendingAlerts, err = store.AnyAlertPending(conn)
	return s, err
}
