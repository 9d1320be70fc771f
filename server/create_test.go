package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/protocol/client"
)

// signInErr signs w in on a fresh socket and returns the refusal, if any.
func signInErr(t *testing.T, tn *testNode, w *client.Wallet) error {
	t.Helper()
	c := tn.dial(t)
	_, err := c.SignIn(ctxT(t), w, client.SignInParams{IssuedAt: tn.clock.Now()}, nil)
	return err
}

// TestNewVaultsAreBounded: one source address creates at most
// --new-vaults-per-ip vaults a minute and the node at most
// --new-vaults-per-minute; past them the first sign-in of an address is
// refused (rate_limited, retryable) and creates nothing, while vaults
// already made sign in as before. With --vault-allowlist only the listed
// owners get a vault (not_allowed).
func TestNewVaultsAreBounded(t *testing.T) {
	o := testOptions(t)
	o.NewVaultsPerIP = 2
	tn := startNode(t, o, nil)
	var made []*client.Wallet
	for i := 0; i < 2; i++ {
		w, _ := client.NewWallet()
		if err := signInErr(t, tn, w); err != nil {
			t.Fatalf("vault %d: %v", i, err)
		}
		made = append(made, w)
	}
	w, _ := client.NewWallet()
	err := signInErr(t, tn, w)
	if pe := protocol.AsError(err); pe == nil || pe.Code != protocol.CodeRateLimited || !strings.Contains(pe.Message, "new vaults of this minute") {
		t.Fatalf("a third new vault from one address: %v", err)
	}
	files, _ := filepath.Glob(filepath.Join(o.DataDir, "vaults", "*", "*.db"))
	if len(files) != 2 {
		t.Fatalf("%d vault files, want the 2 allowed", len(files))
	}
	if err := signInErr(t, tn, made[0]); err != nil {
		t.Fatalf("a vault already made signs in again: %v", err)
	}
	if err := tn.shutdown(); err != nil {
		t.Fatal(err)
	}

	o = testOptions(t)
	o.NewVaultsPerMinute = 1
	tn = startNode(t, o, nil)
	a, _ := client.NewWallet()
	b, _ := client.NewWallet()
	if err := signInErr(t, tn, a); err != nil {
		t.Fatal(err)
	}
	if err := signInErr(t, tn, b); protocol.AsError(err) == nil || !strings.Contains(err.Error(), "at most 1 new vaults a minute") {
		t.Fatalf("past the node's bound: %v", err)
	}
	if err := tn.shutdown(); err != nil {
		t.Fatal(err)
	}

	o = testOptions(t)
	o.VaultAllowlist = filepath.Join(t.TempDir(), "allow")
	if err := os.WriteFile(o.VaultAllowlist, []byte("# our users\n"+a.Address().Hex()+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tn = startNode(t, o, nil)
	if err := signInErr(t, tn, a); err != nil {
		t.Fatalf("a listed owner: %v", err)
	}
	if err := signInErr(t, tn, b); protocol.AsError(err) == nil || protocol.AsError(err).Code != protocol.CodeNotAllowed {
		t.Fatalf("an owner not listed: %v", err)
	}
	o.VaultAllowlist = filepath.Join(t.TempDir(), "bad")
	os.WriteFile(o.VaultAllowlist, []byte("nobody\n"), 0o600)
	if err := tryNode(t, o); err == nil || !strings.Contains(err.Error(), "is not an address") {
		t.Fatalf("an allowlist with a bad line: %v", err)
	}
}
