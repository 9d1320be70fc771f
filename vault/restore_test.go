package vault

import (
	"context"
	"encoding/json"
	"os"
	"slices"
	"testing"
	"time"

	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/vault/actor"
)

// waitRestore returns the next restore frame the user's dashboard gets.
func waitRestore(t *testing.T, u *user) protocol.RestoreFrame {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case b := <-u.sub.ch:
			var f protocol.RestoreFrame
			if json.Unmarshal(b, &f) == nil && f.Type == protocol.TypeRestore {
				return f
			}
		case <-deadline:
			t.Fatal("no restore frame")
		}
	}
}

func restoredIDs(ts []protocol.RestoredTrigger) []string {
	out := []string{}
	for _, x := range ts {
		out = append(out, x.ID)
	}
	slices.Sort(out)
	return out
}

// TestRestoreInPlace: the owner's vault.restore makes the vault's triggers
// what a backup copy holds: a dry run tells what would change and changes
// nothing; the restore adds back the deleted trigger, removes the new one
// and undoes the edit and the pause, as one new version with an activity
// entry, keeping the intents. A point the backup does not hold, or a copy
// of another owner's vault, is told in the restore frame and changes
// nothing; a node without a backup refuses the command.
func TestRestoreInPlace(t *testing.T) {
	copyPath, point := "", actor.RestorePoint{}
	e := newEnvWith(t, func(e *env) {
		e.restore = func(_ context.Context, _ string, a protocol.RestoreArgs, path string) (actor.RestorePoint, error) {
			if a.Version == 999 {
				return actor.RestorePoint{}, protocol.Errorf(protocol.CodeNotInBackup, "version 999 is not in the backup")
			}
			b, err := os.ReadFile(copyPath)
			if err != nil {
				return actor.RestorePoint{}, err
			}
			return point, os.WriteFile(path, b, 0o600)
		}
	})
	e.latest["X"] = 50
	u := e.newUser()
	a := u.create(t, protocol.TriggerSpec{Name: "a", Condition: below("X", 10), Action: swap})
	b := u.create(t, protocol.TriggerSpec{Name: "b", Condition: below("X", 20), Action: swap})
	c := u.create(t, protocol.TriggerSpec{Name: "c", Condition: below("X", 30), Action: swap})
	// A copy as the backup would restore it: the vault's file, closed.
	saved := u.state(t)
	e.restart()
	copyPath = t.TempDir() + "/copy.db"
	raw, err := os.ReadFile(actor.Path(e.dir, u.v.ID()))
	must(t, err)
	must(t, os.WriteFile(copyPath, raw, 0o600))
	point = actor.RestorePoint{BaseVersion: saved.Version, Version: saved.Version, At: e.clock.Now().UnixMilli()}
	u = e.signIn(u.w)

	u.mustCmd(t, protocol.OpTriggerDelete, protocol.IDArgs{ID: a})
	u.mustCmd(t, protocol.OpTriggerUpdate, protocol.UpdateArgs{ID: b, Spec: protocol.TriggerSpec{Name: "b", Condition: below("X", 25), Action: swap}})
	u.mustCmd(t, protocol.OpTriggerPause, protocol.IDArgs{ID: c})
	d := u.create(t, protocol.TriggerSpec{Name: "d", Condition: below("X", 40), Action: swap})
	e.signal(t, u, "X", 35) // d fires: an intent a restore must keep
	before := u.state(t)
	if len(before.Intents) != 1 {
		t.Fatalf("%d intents before the restore, want 1", len(before.Intents))
	}

	u.mustCmd(t, protocol.OpVaultRestore, protocol.RestoreArgs{Dry: true})
	f := waitRestore(t, u)
	if !f.Dry || f.Applied != 0 || f.Error != nil || f.Version != saved.Version ||
		!slices.Equal(restoredIDs(f.Added), []string{a}) || !slices.Equal(restoredIDs(f.Removed), []string{d}) ||
		!slices.Equal(restoredIDs(f.Changed), sorted(b, c)) {
		t.Fatalf("dry run: %+v %+v", f, f.Error)
	}
	if st := u.state(t); st.Version != before.Version || len(st.Triggers) != 3 {
		t.Fatalf("a dry run changed the vault: version %d → %d, %d triggers", before.Version, st.Version, len(st.Triggers))
	}

	ack := u.mustCmd(t, protocol.OpVaultRestore, protocol.RestoreArgs{})
	f = waitRestore(t, u)
	if f.Dry || f.Applied <= ack.Version || f.Error != nil {
		t.Fatalf("restore: %+v", f)
	}
	st := u.state(t)
	if st.Version != f.Applied {
		t.Fatalf("the vault is at version %d, the restore made %d", st.Version, f.Applied)
	}
	got := map[string]protocol.Trigger{}
	for _, tr := range st.Triggers {
		got[tr.ID] = tr
	}
	for _, want := range saved.Triggers {
		g, ok := got[want.ID]
		if !ok || g.Status != want.Status || *g.Condition.Threshold != *want.Condition.Threshold {
			t.Errorf("trigger %s after the restore: %+v, want %+v", want.Name, g, want)
		}
	}
	if _, ok := got[d]; ok || len(got) != 3 {
		t.Fatalf("after the restore: %d triggers, d kept: %v", len(got), ok)
	}
	if len(st.Intents) != 1 || st.Intents[0].ID != before.Intents[0].ID {
		t.Fatalf("the restore changed the intents: %v", st.Intents)
	}
	found := false
	for _, ev := range st.Evaluations {
		found = found || ev.Outcome == protocol.OutcomeRestored
	}
	if !found {
		t.Fatal("no activity entry for the restore")
	}
	// A restore again changes nothing and makes no version.
	u.mustCmd(t, protocol.OpVaultRestore, protocol.RestoreArgs{})
	if f := waitRestore(t, u); f.Applied != 0 || len(f.Added)+len(f.Removed)+len(f.Changed) != 0 {
		t.Fatalf("a second restore: %+v", f)
	}

	// A point the backup does not hold.
	version := u.state(t).Version
	u.mustCmd(t, protocol.OpVaultRestore, protocol.RestoreArgs{Version: 999})
	if f := waitRestore(t, u); f.Error == nil || f.Error.Code != protocol.CodeNotInBackup {
		t.Fatalf("a restore to a version the backup lacks: %+v", f)
	}
	if st := u.state(t); st.Version != version {
		t.Fatalf("a failed restore moved the vault from version %d to %d", version, st.Version)
	}
	// Another owner's copy under this vault's name.
	other := e.newUser()
	e.restart()
	raw, err = os.ReadFile(actor.Path(e.dir, other.v.ID()))
	must(t, err)
	must(t, os.WriteFile(copyPath, raw, 0o600))
	u = e.signIn(u.w)
	version = u.state(t).Version
	u.mustCmd(t, protocol.OpVaultRestore, protocol.RestoreArgs{})
	if f := waitRestore(t, u); f.Error == nil || f.Error.Code != protocol.CodeNotInBackup {
		t.Fatalf("a restore from another owner's copy: %+v", f)
	}
	if st := u.state(t); st.Version != version {
		t.Fatalf("a refused restore moved the vault from version %d to %d", version, st.Version)
	}
	_, err = u.cmd(t, protocol.OpVaultRestore, protocol.RestoreArgs{Version: 3, At: 5})
	wantCode(t, err, protocol.CodeBadCommand)

	// Without a backup.
	e2 := newEnv(t)
	_, err = e2.newUser().cmd(t, protocol.OpVaultRestore, protocol.RestoreArgs{})
	wantCode(t, err, protocol.CodeNoBackup)
}

func sorted(s ...string) []string {
	slices.Sort(s)
	return s
}
