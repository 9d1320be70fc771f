package client

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/spells-dev/spells/protocol"
)

func diff(v uint64, changes ...protocol.Change) protocol.ServerFrame {
	return protocol.ServerFrame{Type: protocol.TypeDiff, Version: v, Changes: changes}
}

func TestMirrorRefusesGapsAndRepeats(t *testing.T) {
	m := NewMirror()
	if err := m.Apply(diff(1)); err == nil {
		t.Fatal("a diff before any snapshot was accepted")
	}
	if err := m.Apply(protocol.ServerFrame{Type: protocol.TypeSnapshot, State: &protocol.State{Version: 5}}); err != nil {
		t.Fatal(err)
	}
	trig, _ := json.Marshal(protocol.Trigger{ID: "t1", TriggerSpec: protocol.TriggerSpec{Name: "x"}})
	if err := m.Apply(diff(6, protocol.Change{Kind: protocol.KindTrigger, Op: protocol.ChangePut, ID: "t1", Data: trig})); err != nil {
		t.Fatal(err)
	}
	if m.Triggers["t1"].Name != "x" || m.Version != 6 {
		t.Fatalf("mirror %+v", m)
	}
	for _, v := range []uint64{6, 8} {
		if err := m.Apply(diff(v)); err == nil || !strings.Contains(err.Error(), "lost or repeated") {
			t.Fatalf("diff v%d after v6: %v", v, err)
		}
	}
	if err := m.Apply(diff(7, protocol.Change{Kind: protocol.KindTrigger, Op: protocol.ChangeDelete, ID: "t1"})); err != nil || len(m.Triggers) != 0 {
		t.Fatalf("delete: %v, %d triggers", err, len(m.Triggers))
	}
}
