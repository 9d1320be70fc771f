package main

import (
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/spells-dev/spells/vault"
)

func TestOptionsFromFlagsAndEnvironment(t *testing.T) {
	env := map[string]string{"SPELLS_LISTEN": ":9999", "SPELLS_DEMO": "false", "SPELLS_SIWE_DOMAINS": "a.example, b.example", "SPELLS_IDLE_AFTER": "5m"}
	o, err := parseOptions([]string{"-listen", ":7000"}, func(k string) string { return env[k] })
	if err != nil {
		t.Fatal(err)
	}
	if o.Listen != ":7000" || o.Demo || len(o.SIWEDomains) != 2 || o.SIWEDomains[1] != "b.example" || o.IdleAfter != 5*time.Minute {
		t.Fatalf("options %+v", o)
	}
	if o.DataDir != "./data" || o.ChainID != 0 || o.ChainRPC != chainDev || o.DevChainBlockInterval != time.Second || o.DevChainRPC != "127.0.0.1:8545" || o.SignalToken != "" || o.MaxOpen != vault.DefaultMaxOpen || o.ProcsPerCPU != 2 {
		t.Fatalf("defaults %+v", o)
	}
	for _, bad := range [][]string{{"-dev-chain-block-interval", "500ms"}, {"-chain-deployment", "x.json"}, {"-nope"}, {"-demo-interval", "0s"}, {"-max-open-vaults", "0"}, {"-procs-per-cpu", "0"}} {
		if _, err := parseOptions(bad, func(string) string { return "" }); err == nil {
			t.Errorf("accepted %v", bad)
		}
	}
	if _, err := parseOptions(nil, func(k string) string { return map[string]string{"SPELLS_CHAIN_ID": "x"}[k] }); err == nil {
		t.Error("accepted SPELLS_CHAIN_ID=x")
	}
}

// setProcs doubles (or multiplies) what the runtime chose, and leaves a
// GOMAXPROCS set in the environment alone.
func TestSetProcs(t *testing.T) {
	before := runtime.GOMAXPROCS(0)
	defer runtime.GOMAXPROCS(before)
	if got := setProcs(2, true); got != before || runtime.GOMAXPROCS(0) != before {
		t.Fatalf("with GOMAXPROCS in the environment: %d (runtime %d), want %d untouched", got, runtime.GOMAXPROCS(0), before)
	}
	if got := setProcs(1, false); got != before || runtime.GOMAXPROCS(0) != before {
		t.Fatalf("one per CPU: %d, want %d", got, before)
	}
	if got := setProcs(2, false); got != 2*before || runtime.GOMAXPROCS(0) != 2*before {
		t.Fatalf("two per CPU: %d (runtime %d), want %d", got, runtime.GOMAXPROCS(0), 2*before)
	}
}

// TestPublicURL: -public-url is the address the ready log names and its
// host a SIWE domain (unless -siwe-domains is given); anything but an
// http(s) address of a host is refused.
func TestPublicURL(t *testing.T) {
	none := func(string) string { return "" }
	o, err := parseOptions([]string{"-public-url", "https://spells.example.com:8443"}, none)
	if err != nil {
		t.Fatal(err)
	}
	if o.PublicURL != "https://spells.example.com:8443/" || len(o.SIWEDomains) != 1 || o.SIWEDomains[0] != "spells.example.com:8443" {
		t.Fatalf("public URL %q, SIWE domains %v", o.PublicURL, o.SIWEDomains)
	}
	n := &daemon{opts: o}
	if got := n.dashboardURL(); got != "https://spells.example.com:8443/" {
		t.Fatalf("the dashboard's address: %q", got)
	}
	o, err = parseOptions([]string{"-public-url", "http://localhost:18080/", "-siwe-domains", "a.example"}, none)
	if err != nil || len(o.SIWEDomains) != 1 || o.SIWEDomains[0] != "a.example" {
		t.Fatalf("-siwe-domains beside -public-url: %v %v", o.SIWEDomains, err)
	}
	for _, bad := range []string{"spells.example.com", "ftp://spells.example.com/", "http://", "https://u:p@spells.example.com/", "http://h/?x=1", "http://h/#top", "::"} {
		if _, err := parseOptions([]string{"-public-url", bad}, none); err == nil || !strings.Contains(err.Error(), "-public-url") {
			t.Errorf("-public-url %q: %v", bad, err)
		}
	}
}
