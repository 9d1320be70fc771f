package contracts

import "testing"

// TestArtifacts: every contract the dev chain deploys is embedded with an
// ABI and creation code, and the calls the vault makes are in the ABIs.
func TestArtifacts(t *testing.T) {
	names := append([]string{DemoToken, ConstantProductPool, DelegationManager, EntryPoint, EIP7702StatelessDeleGator}, Enforcers...)
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
