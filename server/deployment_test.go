package main

import (
	"encoding/json"
	"os"
	"strings"
	"testing"

	"github.com/ethereum/go-ethereum/common"

	"github.com/spells-dev/spells/contracts"
	"github.com/spells-dev/spells/protocol"
)

// TestTheBaseDeploymentExampleParses: the deployment file OPERATING.md
// shows for Base decodes as --chain-deployment decodes it (unknown fields
// refused), names every enforcer a grant uses, and every address is one.
func TestTheBaseDeploymentExampleParses(t *testing.T) {
	doc, err := os.ReadFile("../OPERATING.md")
	if err != nil {
		t.Fatal(err)
	}
	_, rest, ok := strings.Cut(string(doc), "```json\n{\n  \"chainId\": 8453,")
	if !ok {
		t.Fatal("OPERATING.md has no Base deployment example")
	}
	body, _, _ := strings.Cut(rest, "```")
	body = "{\n  \"chainId\": 8453," + body
	body = strings.Replace(body, "<the address you deployed it at>", "0x000000000000000000000000000000000000f00d", 1)
	var info protocol.ChainInfo
	dec := json.NewDecoder(strings.NewReader(body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&info); err != nil {
		t.Fatalf("the example does not decode: %v", err)
	}
	for _, name := range contracts.Enforcers {
		if !common.IsHexAddress(info.Enforcers[name]) {
			t.Errorf("the example names no %s", name)
		}
	}
	addrs := []string{info.DelegationManager, info.EntryPoint, info.DeleGator, info.Router}
	for _, tk := range info.Tokens {
		addrs = append(addrs, tk.Address)
	}
	for _, f := range info.Feeds {
		addrs = append(addrs, f.Address)
		if f.Decimals == 0 || f.MaxAge == 0 || f.Signal == "" {
			t.Errorf("feed %+v", f)
		}
	}
	for _, a := range addrs {
		if !common.IsHexAddress(a) {
			t.Errorf("%q is not an address", a)
		}
	}
}
