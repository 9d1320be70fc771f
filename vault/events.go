package vault

import (
	"time"

	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/vault/actor"
	"github.com/spells-dev/spells/vault/rules"
)

// The logs of event conditions reach a vault by its own asking: the
// node's log watcher (an EventSource) tells each vault whose cursor is
// behind a log it read (NudgeEvents), the vault asks for the logs after
// its cursor (FetchEvents), and the source hands them back (PostLogs),
// from its cache of recent blocks or read from the chain back to the
// cursor. See actor/events.go for the vault's side.

// EventSource is the node's log watcher, as the vaults use it.
type EventSource interface {
	// Head is the chain's latest block it has seen (0: none yet).
	Head() uint64
	// Fetch reads event signal name's logs (key: rules.EventKey) after
	// place after for vault id, and hands them over with PostLogs; it
	// never waits on the chain. It reports whether it took the ask.
	Fetch(id, name, key string, after uint64) bool
}

// ServeEvents sets the node's log watcher; until then a vault's event
// conditions are refused (no head) and its asks go unanswered.
func (m *Manager) ServeEvents(src EventSource) {
	m.mu.Lock()
	m.events = src
	m.mu.Unlock()
}

func (m *Manager) eventSource() EventSource {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.events
}

// Events returns the event filters the node's vaults wait on, open or
// hibernated: each filter's signal and its key (rules.EventKey).
func (m *Manager) Events() map[string]string { return m.index.watchedMade(protocol.EventPrefix) }

// EventsFrom returns the least cursor of the leaves on event signal name
// (false: none waits on it).
func (m *Manager) EventsFrom(name string) (uint64, bool) { return m.index.eventFrom(name) }

// NudgeEvents tells each vault with a leaf on event signal name whose
// cursor is before pos that it has logs to take, waking it if it sleeps.
// It returns how many were told.
func (m *Manager) NudgeEvents(name string, pos uint64) int {
	ids := m.index.eventVaults(name, pos)
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, id := range ids {
		m.postLocked(id, actor.Event{Signal: name, EventsDue: true, Received: time.Now()})
	}
	return len(ids)
}

// PostLogs hands vault id the logs of event signal name it asked for.
func (m *Manager) PostLogs(id, name string, b *rules.LogBatch) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.placeOf(id).place == quarantined {
		return
	}
	m.postLocked(id, actor.Event{Signal: name, Logs: b, Received: time.Now()})
}

// ChainHead is the chain's latest block the log watcher has seen.
func (i *instance) ChainHead() uint64 {
	if src := i.m.eventSource(); src != nil {
		return src.Head()
	}
	return 0
}

// FetchEvents asks the log watcher for event signal name's logs after
// place after; false if there is none yet, or it is full.
func (i *instance) FetchEvents(name, key string, after uint64) bool {
	if src := i.m.eventSource(); src != nil {
		return src.Fetch(i.id, name, key, after)
	}
	return false
}
