package client

import (
	"encoding/json"
	"fmt"

	"github.com/spells-dev/spells/protocol"
)

// Mirror is a client-side copy of a vault, kept by applying the snapshot
// and diffs a connection receives. It refuses a diff that skips or repeats
// a version, so a test (or a UI) knows it lost or saw twice nothing.
type Mirror struct {
	Version     uint64
	Triggers    map[string]protocol.Trigger
	Intents     map[string]protocol.Intent
	Evaluations map[string]protocol.Evaluation
	Account     *protocol.Account
	Alerts      protocol.AlertSettings
	AlertLog    map[string]protocol.Alert
	Loaded      bool
}

// NewMirror returns an empty mirror.
func NewMirror() *Mirror {
	return &Mirror{Triggers: map[string]protocol.Trigger{}, Intents: map[string]protocol.Intent{}, Evaluations: map[string]protocol.Evaluation{},
		AlertLog: map[string]protocol.Alert{}}
}

// Apply applies a snapshot or diff frame; other frames are ignored.
func (m *Mirror) Apply(f protocol.ServerFrame) error {
	switch f.Type {
	case protocol.TypeSnapshot:
		*m = *NewMirror()
		m.Version, m.Loaded, m.Account = f.State.Version, true, f.State.Account
		for _, t := range f.State.Triggers {
			m.Triggers[t.ID] = t
		}
		for _, in := range f.State.Intents {
			m.Intents[in.ID] = in
		}
		for _, e := range f.State.Evaluations {
			m.Evaluations[fmt.Sprint(e.ID)] = e
		}
		m.Alerts = f.State.Alerts
		for _, a := range f.State.AlertLog {
			m.AlertLog[a.ID] = a
		}
	case protocol.TypeDiff:
		if !m.Loaded {
			return fmt.Errorf("diff v%d before any snapshot", f.Version)
		}
		if f.Version != m.Version+1 {
			return fmt.Errorf("diff v%d after v%d: a version was lost or repeated", f.Version, m.Version)
		}
		for _, ch := range f.Changes {
			if err := m.change(ch); err != nil {
				return err
			}
		}
		m.Version = f.Version
	}
	return nil
}

func (m *Mirror) change(ch protocol.Change) error {
	del := ch.Op == protocol.ChangeDelete
	var err error
	switch ch.Kind {
	case protocol.KindTrigger:
		err = put(m.Triggers, ch, del)
	case protocol.KindIntent:
		err = put(m.Intents, ch, del)
	case protocol.KindEvaluation:
		err = put(m.Evaluations, ch, del)
	case protocol.KindAlert:
		err = put(m.AlertLog, ch, del)
	case protocol.KindAlerts:
		var a protocol.AlertSettings
		if err = json.Unmarshal(ch.Data, &a); err == nil {
			m.Alerts = a
		}
	case protocol.KindAccount:
		var a protocol.Account
		if err = json.Unmarshal(ch.Data, &a); err == nil {
			m.Account = &a
		}
	}
	return err
}

func put[T any](into map[string]T, ch protocol.Change, del bool) error {
	if del {
		delete(into, ch.ID)
		return nil
	}
	var v T
	if err := json.Unmarshal(ch.Data, &v); err != nil {
		return fmt.Errorf("%s %s: %w", ch.Kind, ch.ID, err)
	}
	into[ch.ID] = v
	return nil
}
