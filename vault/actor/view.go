package actor

import (
	"context"

	"encoding/json"
	"sort"
	"strconv"

	"zombiezen.com/go/sqlite"

	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/vault/exec"
	"github.com/spells-dev/spells/vault/store"
)

// What a vault shows: its snapshot, the diffs a new subscriber missed, a
// page of its activity, and the balances the chain watcher read.

// snapshot builds the whole state at the current version.
func (v *Vault) snapshot() (protocol.State, error) {
	st := protocol.State{Vault: v.addr.Hex(), Owner: v.owner.Hex(), Version: v.version, Account: v.account(),
		Triggers: v.sortedTriggers(), Intents: []protocol.Intent{}, Evaluations: []protocol.Evaluation{}}
	var err error
	if st.Grants, err = store.LoadGrants(v.conn, ""); err != nil {
		return st, err
	}
	if err = exec.WithUsage(v.conn, st.Grants, v.cfg.Clock.Now().UnixMilli()); err != nil {
		return st, err
	}
	if st.Intents, err = store.RecentIntents(v.conn, v.cfg.SnapshotRecent); err != nil {
		return st, err
	}
	if st.Alerts, err = store.AlertSettings(v.conn); err != nil {
		return st, err
	}
	if st.AlertLog, err = store.RecentAlerts(v.conn, v.cfg.SnapshotRecent); err != nil {
		return st, err
	}
	st.Evaluations, err = store.RecentEvaluations(v.conn, v.cfg.SnapshotRecent)
	return st, err
}

func (v *Vault) sortedTriggers() []protocol.Trigger {
	out := make([]protocol.Trigger, 0, len(v.triggers))
	for _, t := range v.triggers {
		out = append(out, t.Trigger)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].CreatedAt != out[j].CreatedAt {
			return out[i].CreatedAt < out[j].CreatedAt
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// diffsSince returns the diff frames after version since. ok is false when
// the log no longer reaches back that far (the caller sends a snapshot).
func (v *Vault) diffsSince(since uint64) (frames [][]byte, ok bool, err error) {
	if since == v.version {
		return nil, true, nil
	}
	vs, ok, err := store.ReadLog(v.conn, since)
	for _, e := range vs {
		frames = append(frames, v.diffFrame(e.Version, e.At, e.Changes))
	}
	return frames, ok, err
}

// catchUp returns the frames that make a new subscriber current: the
// diffs after since, or a snapshot when since is absent, older than the
// change log, or more diffs than sub can queue next to the ready frame.
// Running on the goroutine makes what follows them gap-free.
func (v *Vault) catchUp(sub Subscriber, since *uint64) ([][]byte, error) {
	if since != nil && *since <= v.version {
		frames, ok, err := v.diffsSince(*since)
		if err != nil {
			return nil, err
		}
		if r, bounded := sub.(roomer); ok && bounded && len(frames) > r.Room()-1 {
			ok = false // too many to queue at once: one snapshot instead
		}
		if ok {
			if v.portfolio != nil {
				frames = append(frames, v.portfolio)
			}
			return frames, nil
		}
	}
	st, err := v.snapshot()
	if err != nil {
		return nil, err
	}
	frames := [][]byte{mustJSON(protocol.Snapshot{Type: protocol.TypeSnapshot, State: st})}
	if v.portfolio != nil {
		frames = append(frames, v.portfolio)
	}
	return frames, nil
}

// activity is activity.list: a page of older evaluations or intents,
// newest first.
func (v *Vault) activity(a protocol.ActivityArgs) (any, error) {
	if a.Limit == 0 {
		a.Limit = 50
	}
	if a.Limit < 1 || a.Limit > 100 {
		return nil, protocol.Errorf(protocol.CodeBadCommand, "limit must be 1 to 100")
	}
	switch a.Kind {
	case protocol.KindEvaluation:
		var before int64
		if a.Before != "" {
			n, err := strconv.ParseInt(a.Before, 10, 64)
			if err != nil || n <= 0 {
				return nil, protocol.Errorf(protocol.CodeBadCommand, "before must be an evaluation id")
			}
			before = n
		}
		evs, err := store.OlderEvaluations(v.conn, before, a.Trigger, a.Limit)
		return map[string]any{"evaluations": evs}, err
	case protocol.KindIntent:
		ins, err := store.OlderIntents(v.conn, a.Before, a.Trigger, a.Limit)
		return map[string]any{"intents": ins}, err
	}
	return nil, protocol.Errorf(protocol.CodeBadCommand, "kind must be %q or %q", protocol.KindEvaluation, protocol.KindIntent)
}

// showPortfolio pushes a portfolio frame to the vault's dashboards when
// it differs from the last one (the block number aside).
func (v *Vault) showPortfolio(f []byte) {
	if len(v.subs) == 0 || samePortfolio(f, v.portfolio) {
		return
	}
	v.portfolio = f
	v.broadcast(f)
}

func samePortfolio(a, b []byte) bool {
	if b == nil {
		return false
	}
	var x, y protocol.PortfolioFrame
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	x.Block, y.Block = 0, 0
	ax, _ := json.Marshal(x)
	by, _ := json.Marshal(y)
	return string(ax) == string(by)
}

// openStatuses are those of intents that have not ended.
var openStatuses = []string{protocol.IntentPending, protocol.IntentSigned, protocol.IntentSubmitted, protocol.IntentIncluded}

// Detach stops sending frames to sub. It is safe to call more than once.
func (v *Vault) Detach(sub Subscriber) {
	select {
	case v.mailbox <- letter{fn: func() { v.dropSub(sub) }, noFile: true}:
	case <-v.done:
	}
}

// State returns a snapshot of the vault (for tests and tools).
func (v *Vault) State(ctx context.Context) (protocol.State, error) {
	var st protocol.State
	err := v.do(ctx, func() error {
		if v.conn == nil {
			return protocol.Errorf(protocol.CodeNotFound, "vault has no file yet")
		}
		var err error
		st, err = v.snapshot()
		return err
	})
	return st, err
}

// Inspect runs fn with the vault's file on the vault's goroutine, for
// tools and tests that read what the vault's state does not show. fn must
// not write.
func (v *Vault) Inspect(ctx context.Context, fn func(conn *sqlite.Conn) error) error {
	return v.do(ctx, func() error {
		if v.conn == nil {
			return protocol.Errorf(protocol.CodeNotFound, "vault has no file yet")
		}
		return fn(v.conn)
	})
}

// export is vault.export: the state as a snapshot shows it, and the change
// log the vault keeps, hash-chained (protocol.VerifyExport).
func (v *Vault) export() (protocol.Export, error) {
	st, err := v.snapshot()
	if err != nil {
		return protocol.Export{}, err
	}
	log, err := store.ReadLogRaw(v.conn)
	if err != nil {
		return protocol.Export{}, err
	}
	out := protocol.Export{State: st, Log: make([]protocol.ExportEntry, 0, len(log))}
	var prev [32]byte
	for _, e := range log {
		prev = protocol.ExportHash(prev, e.Version, e.At, e.Changes)
		out.Log = append(out.Log, protocol.ExportEntry{Version: e.Version, At: e.At, Changes: e.Changes, Hash: protocol.HashHex(prev)})
	}
	out.Head = protocol.HashHex(prev)
	return out, nil
}
