package main

import (
	"testing"

	"github.com/spells-dev/spells/cluster/redistest"
	"github.com/spells-dev/spells/protocol"
)

// TestSignalsAcrossNodes: two nodes sharing a Redis: a signal published on
// one fires a trigger of a vault on the other, and reaches its dashboard.
func TestSignalsAcrossNodes(t *testing.T) {
	r := redistest.Start(t)
	oa, ob := testOptions(t), testOptions(t)
	oa.Redis, ob.Redis = r.URL(), r.URL()
	a, b := startNode(t, oa, nil), startNode(t, ob, nil)
	s := b.signIn(t, nil)
	spec := dip(100)
	spec.Condition.Signal = "CROSS/NODE"
	id, _ := s.create(t, spec)
	a.mustPublish(t, "CROSS/NODE", 150)
	s.until(t, "the first value from the other node", func(f protocol.ServerFrame) bool { return f.Type == protocol.TypeSignal && f.Name == "CROSS/NODE" })
	a.mustPublish(t, "CROSS/NODE", 50)
	s.until(t, "the firing", func(f protocol.ServerFrame) bool {
		for _, c := range f.Changes {
			if c.Kind == protocol.KindIntent {
				return true
			}
		}
		return false
	})
	if tr := s.mirror.Triggers[id]; tr.Fires != 1 {
		t.Fatalf("the trigger fired %d times", tr.Fires)
	}
}
