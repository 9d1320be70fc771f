package contracts

import (
	"fmt"
	"os"
	"strings"
	"testing"
)

// TestArtifacts: every contract the dev chain deploys is embedded with an
// ABI and creation code, and the calls the vault makes are in the ABIs.
func TestArtifacts(t *testing.T) {
	names := append([]string{DemoToken, ConstantProductPool, DemoRouter, DelegationManager, EntryPoint, EIP7702StatelessDeleGator}, Enforcers...)
	for _, n := range names {
		c, err := Get(n)
		if err != nil {
			t.Fatal(err)
		}
		if len(c.Bytecode) < 100 || c.License == "" || c.Source == "" {
			t.Errorf("%s: %d bytes of code, licence %q, source %q", n, len(c.Bytecode), c.License, c.Source)
		}
	}
	for name, method := range map[string]string{
		DelegationManager:   "redeemDelegations",
		ConstantProductPool: "swap",
		DemoRouter:          "swapExactTokensForTokens",
		DemoToken:           "transfer",
	} {
		if _, ok := MustGet(name).ABI.Methods[method]; !ok {
			t.Errorf("%s has no method %s", name, method)
		}
	}
	if _, err := Get("Nothing"); err == nil {
		t.Error("Get of an unknown contract did not fail")
	}
}

// TestErrorName: a custom error's selector is named from the ABIs.
func TestErrorName(t *testing.T) {
	e := MustGet(DelegationManager).ABI.Errors["CannotUseADisabledDelegation"]
	if got := ErrorName(e.ID[:4]); got != "DelegationManager.CannotUseADisabledDelegation()" {
		t.Fatalf("named %q", got)
	}
	if got := ErrorName([]byte{1, 2, 3, 4}); got != "" {
		t.Fatalf("an unknown selector named %q", got)
	}
}

// TestDemoRouterHasTheV2RouterSelectors: the dev router's swap and quote
// are the Uniswap V2 router's functions (the same selectors), so the
// calls a vault builds for it work against V2-compatible routers.
func TestDemoRouterHasTheV2RouterSelectors(t *testing.T) {
	abi := MustGet(DemoRouter).ABI
	for method, sel := range map[string]string{
		"swapExactTokensForTokens": "38ed1739", // swapExactTokensForTokens(uint256,uint256,address[],address,uint256)
		"getAmountsOut":            "d06ca61f", // getAmountsOut(uint256,address[])
	} {
		if got := fmt.Sprintf("%x", abi.Methods[method].ID); got != sel {
			t.Errorf("%s: selector %s, want %s", method, got, sel)
		}
	}
}

// TestProtocolNamesTheSelectors: the selectors PROTOCOL.md gives for the
// calls the vault makes are those of the contracts' ABIs.
func TestProtocolNamesTheSelectors(t *testing.T) {
	doc, err := os.ReadFile("../PROTOCOL.md")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ contract, method string }{
		{DemoToken, "transfer"}, {DemoToken, "approve"},
		{DemoRouter, "swapExactTokensForTokens"}, {DemoRouter, "getAmountsOut"},
		{MockV3Aggregator, "latestRoundData"}, {MockV3Aggregator, "decimals"},
	} {
		sel := fmt.Sprintf("`0x%x`", MustGet(c.contract).ABI.Methods[c.method].ID)
		if !strings.Contains(string(doc), sel) {
			t.Errorf("PROTOCOL.md does not give %s.%s's selector %s", c.contract, c.method, sel)
		}
	}
}
