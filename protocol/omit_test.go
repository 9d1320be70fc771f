package protocol

import (
	"reflect"
	"sort"
	"strings"
	"testing"
)

// TestOmittedFieldsAreTheDocumentedOnes: the fields of a vault's entities
// that are left out at their zero value are exactly those PROTOCOL.md §5
// lists; any other field is always present. A field that starts to be
// left out fails here until the document says so.
func TestOmittedFieldsAreTheDocumentedOnes(t *testing.T) {
	documented := map[string][]string{
		"State":       {"account"},
		"Grant":       {"revokedAt"},
		"TriggerSpec": {"cooldownMs", "expiresAt", "maxFires", "paused"},
		"Trigger":     {"lastFiredAt", "nextDueAt"},
		"Action":      {"params"},
		"Intent":      {"detail", "tx", "updatedAt"},
		"IntentTx":    {"block", "confirmations", "gasUsed"},
		"Evaluation":  {"detail", "value"},
		"Change":      {"data"},
	}
	for _, v := range []any{State{}, Grant{}, TriggerSpec{}, Trigger{}, Action{}, Intent{}, IntentTx{}, Evaluation{}, Change{}} {
		typ := reflect.TypeOf(v)
		var omitted []string
		for i := 0; i < typ.NumField(); i++ {
			name, opts, _ := strings.Cut(typ.Field(i).Tag.Get("json"), ",")
			if strings.Contains(opts, "omitempty") {
				omitted = append(omitted, name)
			}
		}
		sort.Strings(omitted)
		if want := documented[typ.Name()]; !reflect.DeepEqual(omitted, want) && !(len(omitted) == 0 && want == nil) {
			t.Errorf("%s leaves out %v at zero; PROTOCOL.md §5 lists %v", typ.Name(), omitted, want)
		}
	}
}
