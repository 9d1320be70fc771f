package vault

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/spells-dev/spells/protocol"
)

// TestExportIsChainedAndCheckable: vault.export gives the owner the
// vault's state and its change log, each version a link of a hash chain
// protocol.VerifyExport checks offline; a changed, dropped or reordered
// entry breaks it, and no key material is in it.
func TestExportIsChainedAndCheckable(t *testing.T) {
	e := newEnv(t)
	u := e.newUser()
	for _, name := range []string{"a", "b", "c"} {
		u.create(t, protocol.TriggerSpec{Name: name, Condition: below("X", 10), Action: swap})
	}
	ack := u.mustCmd(t, protocol.OpVaultExport, struct{}{})
	var ex protocol.Export
	if err := json.Unmarshal(ack.Result, &ex); err != nil {
		t.Fatal(err)
	}
	if err := protocol.VerifyExport(ex); err != nil {
		t.Fatalf("a fresh export: %v", err)
	}
	if len(ex.State.Triggers) != 3 || len(ex.Log) == 0 || ex.Log[len(ex.Log)-1].Version != ex.State.Version {
		t.Fatalf("export: %d triggers, %d log entries", len(ex.State.Triggers), len(ex.Log))
	}
	for _, banned := range []string{"sealed", "data_key", "dataKey", "privateKey"} {
		if strings.Contains(string(ack.Result), banned) {
			t.Fatalf("the export mentions %q", banned)
		}
	}
	changed := ex
	changed.Log = append([]protocol.ExportEntry(nil), ex.Log...)
	changed.Log[0].Changes = json.RawMessage(strings.Replace(string(ex.Log[0].Changes), `"kind"`, `"kind" `, 1))
	dropped := ex
	dropped.Log = append(append([]protocol.ExportEntry(nil), ex.Log[:1]...), ex.Log[2:]...)
	reordered := ex
	reordered.Log = append([]protocol.ExportEntry(nil), ex.Log...)
	reordered.Log[0], reordered.Log[1] = reordered.Log[1], reordered.Log[0]
	for name, bad := range map[string]protocol.Export{"a changed entry": changed, "a dropped entry": dropped, "reordered entries": reordered} {
		if err := protocol.VerifyExport(bad); err == nil {
			t.Errorf("%s passed the check", name)
		}
	}
}
