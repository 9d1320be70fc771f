package actor

import (
	"context"
	"encoding/json"
	"fmt"
	"reflect"
	"sort"
	"time"

	"zombiezen.com/go/sqlite"

	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/vault/rules"
	"github.com/spells-dev/spells/vault/store"
)

// Restoring a vault in place: its triggers become what they were in a copy
// the backup restored (a file the node wrote, never the vault's own), as
// one new version, so every dashboard follows with ordinary diffs. What
// follows the chain or the owner's signatures stays as it is: intents and
// their transactions (a restore must never send one again), grants and
// their use, keys and sessions.

// RestorePoint is where the restored copy was read from the backup: the
// version of the whole copy it started from, and the version and time it
// ends at.
type RestorePoint struct {
	BaseVersion, Version uint64
	At                   int64
}

// RestoreFrom makes the vault's triggers those of the restored copy at
// path (dry: only tells what would change), pushes the restore frame to
// its dashboards, and returns it.
func (v *Vault) RestoreFrom(ctx context.Context, path string, pt RestorePoint, dry bool) (protocol.RestoreFrame, error) {
	var f protocol.RestoreFrame
	err := v.do(ctx, func() error {
		var err error
		f, err = v.restoreFrom(path, pt, dry)
		return err
	})
	return f, err
}

// RestoreFailed tells the vault's dashboards that the restore its owner
// asked for could not run.
func (v *Vault) RestoreFailed(ctx context.Context, dry bool, err error) {
	pe := protocol.AsError(err)
	if pe == nil {
		pe = protocol.Errorf(protocol.CodeInternal, "%v", err)
	}
	_ = v.do(ctx, func() error {
		v.restoring = time.Time{}
		v.pushRestore(protocol.RestoreFrame{Type: protocol.TypeRestore, Vault: v.id, Dry: dry, Error: &protocol.RestoreError{Code: pe.Code, Message: pe.Message}})
		return nil
	})
}

// askRestore starts the restore the owner's command asks for: the host
// reads the copy from the backup off the vault's goroutine and hands it to
// RestoreFrom (or RestoreFailed).
func (v *Vault) askRestore(t *store.Tx, raw json.RawMessage) (any, error) {
	var a protocol.RestoreArgs
	if err := decodeArgs(raw, &a); err != nil {
		return nil, err
	}
	switch {
	case a.Version != 0 && a.At != 0:
		return nil, protocol.Errorf(protocol.CodeBadCommand, "give a version or a time, not both")
	case a.At < 0:
		return nil, protocol.Errorf(protocol.CodeBadCommand, "at is a time in unix milliseconds")
	case v.cfg.Restore == nil:
		return nil, protocol.Errorf(protocol.CodeNoBackup, "this node runs without a backup, so it cannot restore")
	case !v.restoring.IsZero() && v.now().Sub(v.restoring) < restoreRunsAtMost:
		return nil, protocol.Errorf(protocol.CodeRestoreRunning, "a restore of this vault is running; its restore frame comes first")
	}
	t.Then(func() {
		v.restoring = v.now()
		v.cfg.Restore(v.addr, a)
	})
	return map[string]string{"restore": "started"}, nil
}

// restoreRunsAtMost is how long a restore the owner asked for holds off
// another (the host gives up reading the copy well before).
const restoreRunsAtMost = 15 * time.Minute

func (v *Vault) restoreFrom(path string, pt RestorePoint, dry bool) (protocol.RestoreFrame, error) {
	v.restoring = time.Time{}
	f := protocol.RestoreFrame{Type: protocol.TypeRestore, Vault: v.id, Dry: dry, BaseVersion: pt.BaseVersion, Version: pt.Version, At: pt.At,
		Added: []protocol.RestoredTrigger{}, Removed: []protocol.RestoredTrigger{}, Changed: []protocol.RestoredTrigger{}}
	if v.conn == nil {
		return f, protocol.Errorf(protocol.CodeUnavailable, "the vault is closing; restore again")
	}
	from, err := readRestored(path, v)
	if err != nil {
		return f, err
	}
	plan, err := v.planRestore(from, &f)
	if err != nil {
		return f, err
	}
	if !dry && len(plan) > 0 {
		version, err := v.write(func(t *store.Tx) error {
			for _, step := range plan {
				if err := step(t); err != nil {
					return err
				}
			}
			detail := fmt.Sprintf("restored to version %d: %d added, %d removed, %d changed", pt.Version, len(f.Added), len(f.Removed), len(f.Changed))
			return v.putEvaluation(t, rules.Event{Cause: "command", Now: t.Now}, "", protocol.OutcomeRestored, detail)
		})
		if err != nil {
			if protocol.AsError(err) != nil {
				return f, err
			}
			return f, v.fault("restore", err)
		}
		f.Applied = version
		v.log.Warn().Uint64("to_version", pt.Version).Uint64("as_version", version).Int("added", len(f.Added)).
			Int("removed", len(f.Removed)).Int("changed", len(f.Changed)).Msg("vault's triggers restored from the backup")
	}
	// After the commit's diffs: a dashboard that gets the frame already
	// shows what the restore made.
	v.later(func() { v.pushRestore(f) })
	return f, nil
}

// readRestored reads the triggers of the restored copy at path, which
// must be this vault's.
func readRestored(path string, v *Vault) (map[string]*rules.Trigger, error) {
	conn, err := sqlite.OpenConn(path, sqlite.OpenReadOnly|sqlite.OpenNoMutex)
	if err != nil {
		return nil, fmt.Errorf("open the restored copy: %w", err)
	}
	defer conn.Close()
	head, err := store.ReadHead(conn)
	if err != nil {
		return nil, fmt.Errorf("the restored copy: %w", err)
	}
	if head.Owner != v.owner {
		return nil, protocol.Errorf(protocol.CodeNotInBackup, "the backup's copy belongs to another owner (%s): the bucket holds another vault's objects under this one's name", head.Owner.Hex())
	}
	return loadTriggers(conn)
}

// planRestore lists, into f, what making the triggers from's would change,
// and returns the steps that do it.
func (v *Vault) planRestore(from map[string]*rules.Trigger, f *protocol.RestoreFrame) ([]func(t *store.Tx) error, error) {
	var steps []func(t *store.Tx) error
	ids := make([]string, 0, len(from)+len(v.triggers))
	for id := range from {
		ids = append(ids, id)
	}
	for id := range v.triggers {
		if _, ok := from[id]; !ok {
			ids = append(ids, id)
		}
	}
	sort.Strings(ids)
	for _, id := range ids {
		was, cur := from[id], v.triggers[id]
		switch {
		case was == nil:
			f.Removed = append(f.Removed, protocol.RestoredTrigger{ID: id, Name: cur.Name})
			steps = append(steps, func(t *store.Tx) error {
				_, err := v.changeTrigger(t, protocol.OpTriggerDelete, id)
				return err
			})
		case cur == nil || !sameDefinition(was, cur):
			tr, note, err := v.restoredTrigger(was, cur)
			if err != nil {
				return nil, err
			}
			if note != "" {
				f.Notes = append(f.Notes, note)
			}
			if cur == nil {
				f.Added = append(f.Added, protocol.RestoredTrigger{ID: id, Name: was.Name})
			} else {
				f.Changed = append(f.Changed, protocol.RestoredTrigger{ID: id, Name: was.Name})
			}
			steps = append(steps, func(t *store.Tx) error {
				if cur != nil && cur.Grant != "" && cur.Grant != tr.Grant {
					if err := v.revokeTriggerGrant(t, cur.Grant); err != nil {
						return err
					}
				}
				return v.putTrigger(t, tr)
			})
		}
	}
	return steps, nil
}

// sameDefinition reports whether two versions of a trigger are defined
// alike (what the owner set: its spec, status and grant), whatever their
// conditions have seen since.
func sameDefinition(a, b *rules.Trigger) bool {
	return a.Status == b.Status && a.Grant == b.Grant && reflect.DeepEqual(a.TriggerSpec, b.TriggerSpec)
}

// restoredTrigger is the trigger was as it goes back in: its definition
// and status as the copy holds them, its conditions starting from the
// values the node knows now (a crossing that happened meanwhile does not
// fire it), its firings counted on from the most this vault has recorded
// of it (no intent key repeats), and its own grant kept only if that grant
// is active now.
func (v *Vault) restoredTrigger(was, cur *rules.Trigger) (*rules.Trigger, string, error) {
	tr := rules.Redefine(was, was.TriggerSpec, v.now(), v.cfg.Latest)
	tr.Status, tr.Fires, tr.LastFiredAt, tr.CreatedAt = was.Status, was.Fires, was.LastFiredAt, was.CreatedAt
	n, err := store.IntentCount(v.conn, was.ID)
	if err != nil {
		return nil, "", err
	}
	tr.FiredTotal = max(was.FiredTotal, n)
	if cur != nil {
		tr.FiredTotal = max(tr.FiredTotal, cur.FiredTotal)
	}
	note := ""
	if tr.Grant != "" {
		gs, err := store.LoadGrants(v.conn, tr.Grant)
		if err != nil {
			return nil, "", err
		}
		if len(gs) == 0 || gs[0].Status != protocol.GrantActive {
			note = fmt.Sprintf("trigger %q: its own grant %s was revoked since; it runs under the vault's standing grants until its owner signs a new one (trigger.grant)", was.Name, Short(tr.Grant))
			tr.Grant = ""
		}
	}
	return tr, note, nil
}

// pushRestore sends the restore frame to the vault's dashboards.
func (v *Vault) pushRestore(f protocol.RestoreFrame) {
	b, err := json.Marshal(f)
	if err != nil || len(v.subs) == 0 {
		return
	}
	v.broadcast(b)
}
