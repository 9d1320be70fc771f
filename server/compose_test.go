package main

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"regexp"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// TestComposeFileMatchesTheFlags: deploy/compose.yaml sets only settings
// the node has, each to a value it accepts; every node has its tokens and
// the address users open (accepted at sign-in); nodes 2 and 3 wait for
// node 1 to be healthy, and node 1's healthcheck is the binary's own.
func TestComposeFileMatchesTheFlags(t *testing.T) {
	b, err := os.ReadFile("../deploy/compose.yaml")
	if err != nil {
		t.Fatal(err)
	}
	var f struct {
		Services map[string]struct {
			Environment map[string]string `yaml:"environment"`
			DependsOn   yaml.Node         `yaml:"depends_on"`
			Healthcheck *struct {
				Test []string `yaml:"test"`
			} `yaml:"healthcheck"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(b, &f); err != nil {
		t.Fatal(err)
	}
	_, err = parseOptions([]string{"-h"}, func(string) string { return "" })
	known := map[string]bool{"SPELLS_MASTER_KEY": true, "SPELLS_CLUSTER_SECRET": true} // the environment's only
	for _, m := range regexp.MustCompile(`\((SPELLS_[A-Z0-9_]+),`).FindAllStringSubmatch(err.Error(), -1) {
		known[m[1]] = true
	}
	if len(known) < 30 {
		t.Fatalf("read %d settings from the node's usage", len(known))
	}
	// ${NAME:?…} comes from .env: a value of the right shape.
	fromEnv := regexp.MustCompile(`^\$\{([A-Z_]+):\?[^}]*\}$`)
	nodes := 0
	for name, svc := range f.Services {
		if !strings.HasPrefix(name, "node") {
			continue
		}
		nodes++
		env := map[string]string{}
		for k, v := range svc.Environment {
			if !known[k] {
				t.Errorf("%s sets %s, which is no setting of the node", name, k)
			}
			if m := fromEnv.FindStringSubmatch(v); m != nil {
				v = "t0ken"
				if m[1] == "SPELLS_MASTER_KEY" || m[1] == "SPELLS_CLUSTER_SECRET" {
					v = strings.Repeat("ab", 32)
				}
			}
			env[k] = v
		}
		for _, need := range []string{"SPELLS_SIGNAL_TOKEN", "SPELLS_ADMIN_TOKEN", "SPELLS_PUBLIC_URL", "SPELLS_REDIS", "SPELLS_CLUSTER_SECRET", "SPELLS_MASTER_KEY"} {
			if env[need] == "" {
				t.Errorf("%s does not set %s", name, need)
			}
		}
		o, err := parseOptions(nil, func(k string) string { return env[k] })
		if err != nil {
			t.Errorf("%s: the node refuses its settings: %v", name, err)
			continue
		}
		host := strings.TrimSuffix(strings.TrimPrefix(o.PublicURL, "http://"), "/")
		if !strings.Contains(","+strings.Join(o.SIWEDomains, ",")+",", ","+host+",") {
			t.Errorf("%s: its public URL %s is not among its SIWE domains %v", name, o.PublicURL, o.SIWEDomains)
		}
		if name == "node1" {
			want := []string{"CMD", "/spells", "healthcheck", "http://" + o.Listen + "/readyz"}
			if svc.Healthcheck == nil || strings.Join(svc.Healthcheck.Test, " ") != strings.Join(want, " ") {
				t.Errorf("node1's healthcheck: %v, want %v", svc.Healthcheck, want)
			}
			continue
		}
		var deps map[string]struct {
			Condition string `yaml:"condition"`
		}
		if err := svc.DependsOn.Decode(&deps); err != nil || deps["node1"].Condition != "service_healthy" {
			t.Errorf("%s does not wait for node1 to be healthy: %v", name, err)
		}
	}
	if nodes != 3 {
		t.Fatalf("%d nodes in the compose file, want 3", nodes)
	}
}

// TestHealthcheck: `spells healthcheck URL` exits 0 on a 200, 1 on
// anything else or no answer, 2 on a URL it cannot use.
func TestHealthcheck(t *testing.T) {
	ok := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {}))
	defer ok.Close()
	starting := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		http.Error(w, `{"status":"starting"}`, http.StatusServiceUnavailable)
	}))
	defer starting.Close()
	var out bytes.Buffer
	if code := healthcheck([]string{ok.URL + "/readyz"}, &out); code != 0 {
		t.Fatalf("a ready node: exit %d (%s)", code, out.String())
	}
	out.Reset()
	if code := healthcheck([]string{starting.URL + "/readyz"}, &out); code != 1 || !strings.Contains(out.String(), "503") {
		t.Fatalf("a starting node: exit %d (%s)", code, out.String())
	}
	closed := ok.URL
	ok.Close()
	if code := healthcheck([]string{closed}, &out); code != 1 {
		t.Fatalf("nothing listening: exit %d", code)
	}
	for _, bad := range [][]string{{"127.0.0.1:8080"}, {"a", "b"}} {
		if code := healthcheck(bad, &out); code != 2 {
			t.Errorf("healthcheck %v: exit %d, want 2", bad, code)
		}
	}
}
