package actor

import (
	"fmt"
	"sort"
	"time"

	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/vault/rules"
	"github.com/spells-dev/spells/vault/store"
)

// Taking the logs of the vault's event conditions. The node tells the
// vault that an event signal has logs past its cursor (EventsDue); the
// vault asks for the logs after its cursor (rules.EventCursor) and takes
// each in a transaction of its own that moves the cursor with what the
// log did, so a log is taken once whatever stops the node or the vault,
// and none is missed however long they were stopped: the node reads them
// from the chain back to the cursor.

// eventsRetry is how long an asked batch may take before a new telling
// asks again (the batch was lost with a full inbox, or the node's watcher
// stopped).
const eventsRetry = 30 * time.Second

// askEvents asks the node for event signal name's logs after the vault's
// cursor, unless it asked lately and waits (again: ask whatever).
func (v *Vault) askEvents(name string, again bool) {
	now := v.now()
	if at, ok := v.eventsAsked[name]; ok && !again && now.Sub(at) < eventsRetry {
		return
	}
	after, ok := rules.EventCursor(v.triggers, name)
	key := eventKey(v.triggers, name)
	if !ok || key == "" {
		delete(v.eventsAsked, name)
		return
	}
	if !v.host.FetchEvents(name, key, after) {
		delete(v.eventsAsked, name)
		return
	}
	if v.eventsAsked == nil {
		v.eventsAsked = map[string]time.Time{}
	}
	v.eventsAsked[name] = now
}

// askNewEvents asks for the logs of each event signal the vault's active
// triggers wait on that it has not asked for since its file was loaded: a
// new trigger's (its fromBlock may be in the past), and each one after a
// wake (logs may have come while it slept, or while it moved).
func (v *Vault) askNewEvents() {
	now := map[string]bool{}
	for _, t := range v.triggers {
		if t.Status != protocol.StatusActive {
			continue
		}
		rules.WalkLeaves(&t.Condition, func(c *protocol.Condition) {
			if c.Event != nil {
				now[c.Signal] = true
			}
		})
	}
	for name := range now {
		if !v.eventsSeen[name] {
			v.askEvents(name, false)
		}
	}
	v.eventsSeen = now
}

// eventKey is the filter's key of event signal name in the triggers.
func eventKey(ts map[string]*rules.Trigger, name string) string {
	key := ""
	for _, t := range ts {
		rules.WalkLeaves(&t.Condition, func(c *protocol.Condition) {
			if c.Event != nil && c.Signal == name {
				key = c.Event.Key
			}
		})
	}
	return key
}

// takeLogs takes a batch of logs the vault asked for: each log past a
// leaf's cursor is evaluated, then the cursors move to the batch's end,
// and the blocks whose logs were bounded are told to the owner.
func (v *Vault) takeLogs(name string, b *rules.LogBatch) {
	delete(v.eventsAsked, name)
	if b.Err != "" {
		v.log.Warn().Str("signal", name).Str("why", b.Err).Msg("event logs could not be read; asked again when the node next has some")
		return
	}
	logs := append([]rules.Log(nil), b.Logs...)
	sort.Slice(logs, func(i, j int) bool { return logs[i].Pos < logs[j].Pos })
	// One commit for the batch, its cursors' move included: each log is its
	// own savepoint, with its cursor, so a commit that fails loses the
	// batch whole and the vault asks again from the cursor its file holds.
	if v.batch == nil {
		if err := v.beginBatch(); err != nil {
			v.log.Error().Err(err).Msg("begin the batch of event logs")
		}
	}
	err := v.takeEach(name, logs, b)
	if v.batch != nil {
		v.commitBatch()
	}
	if err != nil {
		v.fault("event evaluation ("+name+")", err)
		return
	}
	if b.More && !v.forget && v.conn != nil {
		v.askEvents(name, true)
	}
}

// takeEach evaluates each log in order, then moves the cursors over the
// batch and tells the blocks past the bound.
func (v *Vault) takeEach(name string, logs []rules.Log, b *rules.LogBatch) error {
	for _, l := range logs {
		if err := v.handle(rules.LogEvent(name, l, v.now())); err != nil {
			return err
		}
	}
	v.tellSkipped(name, b)
	return v.handle(rules.ThroughEvent(name, b.Through, v.now()))
}

// tellSkipped records, for each trigger waiting on event signal name, the
// blocks of b whose logs past the node's bound were not evaluated: once,
// as the trigger's cursor passes the block.
func (v *Vault) tellSkipped(name string, b *rules.LogBatch) {
	if len(b.Skipped) == 0 {
		return
	}
	type told struct {
		id    string
		after uint64
	}
	var ts []told
	for _, tr := range v.triggers {
		if tr.Status != protocol.StatusActive {
			continue
		}
		one := map[string]*rules.Trigger{tr.ID: tr}
		if after, ok := rules.EventCursor(one, name); ok {
			ts = append(ts, told{tr.ID, after})
		}
	}
	sort.Slice(ts, func(i, j int) bool { return ts[i].id < ts[j].id })
	_, err := v.write(func(t *store.Tx) error {
		ev := rules.Event{Cause: "signal:" + name, Now: t.Now}
		for _, s := range b.Skipped {
			detail := fmt.Sprintf("block %d: %d more logs matched than the %d a block the node takes; they were not evaluated", s.Block, s.N, s.Bound)
			for _, tr := range ts {
				if tr.after >= rules.BlockEnd(s.Block) {
					continue // past it: told before
				}
				if err := v.putEvaluation(t, ev, tr.id, protocol.OutcomeSkipped, detail); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		v.fault("record skipped event logs", err)
	}
}
