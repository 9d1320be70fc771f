package protocol

import (
	"os"
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
		"State":           {"account"},
		"Grant":           {"revokedAt", "trigger"},
		"TriggerSpec":     {"cooldownMs", "delegation", "expiresAt", "maxFires", "paused"},
		"Trigger":         {"grant", "lastFiredAt", "nextDueAt"},
		"Action":          {"params"},
		"Intent":          {"detail", "firedValue", "grant", "tx", "updatedAt"},
		"IntentTx":        {"block", "confirmations", "effectiveGasPrice", "fee", "gasUsed", "moved"},
		"Evaluation":      {"detail", "value"},
		"Change":          {"data"},
		"GrantDelegation": {"used"},
		"GrantUse":        {"period", "spent"},
		"TokenMove":       {"in"},
	}
	doc, err := os.ReadFile("../PROTOCOL.md")
	if err != nil {
		t.Fatal(err)
	}
	_, para, _ := strings.Cut(string(doc), "These optional fields are left out")
	para, _, _ = strings.Cut(para, "Every other field is")
	for typ, names := range documented {
		for _, n := range names {
			if !strings.Contains(para, "`"+n+"`") {
				t.Errorf("PROTOCOL.md §5 does not name %s's `%s` among the fields left out", typ, n)
			}
		}
	}
	for _, v := range []any{State{}, Grant{}, GrantDelegation{}, GrantUse{}, TriggerSpec{}, Trigger{}, Action{}, Intent{}, IntentTx{}, TokenMove{}, Evaluation{}, Change{}} {
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
