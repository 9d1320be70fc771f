package main

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/spells-dev/spells/internal/clock"
	"github.com/spells-dev/spells/vault/keys"
)

func tryNode(t *testing.T, o Options) error {
	t.Helper()
	n, err := newNode(context.Background(), o, clock.Real{})
	if err != nil {
		return err
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel() // serve shuts the node down in order at once
	if err := n.serve(ctx); err != nil {
		t.Fatalf("shutdown: %v", err)
	}
	return nil
}

// TestMasterKey: without a configured key the node makes a dev key in its
// data directory and says so loudly, and keeps using it; a directory
// sealed by a configured key refuses to start without it, or with another
// key, or with a key file that is missing or malformed, and writes nothing
// when it refuses.
func TestMasterKey(t *testing.T) {
	t.Run("dev key", func(t *testing.T) {
		var logs bytes.Buffer
		o := testOptions(t)
		o.LogLevel, o.logOut = "warn", &logs
		if err := tryNode(t, o); err != nil {
			t.Fatal(err)
		}
		dev, err := os.ReadFile(filepath.Join(o.DataDir, devKEKFile))
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(logs.String(), "DEV KEY") {
			t.Fatalf("no dev-key warning in %q", logs.String())
		}
		if err := tryNode(t, o); err != nil {
			t.Fatalf("restart on the dev key: %v", err)
		}
		again, _ := os.ReadFile(filepath.Join(o.DataDir, devKEKFile))
		if !bytes.Equal(dev, again) {
			t.Fatal("the dev key changed across a restart")
		}
	})
	t.Run("configured key", func(t *testing.T) {
		o := testOptions(t)
		dir := t.TempDir()
		keyFile := filepath.Join(dir, "kek")
		_, text, _ := keys.GenerateKEK()
		if err := os.WriteFile(keyFile, []byte(text+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		o.MasterKeyFile = keyFile
		if err := tryNode(t, o); err != nil {
			t.Fatal(err)
		}
		idBefore, _ := os.ReadFile(filepath.Join(o.DataDir, "kek.id"))
		// The same key from the environment opens it too.
		env := o
		env.MasterKeyFile, env.MasterKey = "", text
		if err := tryNode(t, env); err != nil {
			t.Fatalf("the key from SPELLS_MASTER_KEY: %v", err)
		}
		missing := o
		missing.MasterKeyFile = ""
		if err := tryNode(t, missing); err == nil || !strings.Contains(err.Error(), "not given") {
			t.Fatalf("no key given: err = %v, want a refusal naming the missing key", err)
		}
		if _, err := os.Stat(filepath.Join(o.DataDir, devKEKFile)); !errors.Is(err, os.ErrNotExist) {
			t.Fatal("a refused start made a dev key")
		}
		_, otherText, _ := keys.GenerateKEK()
		other := filepath.Join(dir, "other")
		os.WriteFile(other, []byte(otherText), 0o600)
		wrong := o
		wrong.MasterKeyFile = other
		if err := tryNode(t, wrong); !errors.Is(err, keys.ErrKEKMismatch) {
			t.Fatalf("another key: err = %v, want %v", err, keys.ErrKEKMismatch)
		}
		gone := o
		gone.MasterKeyFile = filepath.Join(dir, "nowhere")
		if err := tryNode(t, gone); err == nil || !strings.Contains(err.Error(), "-master-key-file") {
			t.Fatalf("a missing key file: err = %v", err)
		}
		os.WriteFile(other, []byte("not a key"), 0o600)
		if err := tryNode(t, wrong); err == nil || !strings.Contains(err.Error(), "hex characters") {
			t.Fatalf("a malformed key file: err = %v", err)
		}
		if idAfter, _ := os.ReadFile(filepath.Join(o.DataDir, "kek.id")); !bytes.Equal(idBefore, idAfter) {
			t.Fatal("a refused key changed the data directory's key id")
		}
		if err := tryNode(t, o); err != nil {
			t.Fatalf("the right key after the refusals: %v", err)
		}
	})
	t.Run("both given", func(t *testing.T) {
		_, err := parseOptions([]string{"-master-key-file", "/x"}, func(k string) string {
			if k == "SPELLS_MASTER_KEY" {
				return strings.Repeat("ab", 32)
			}
			return ""
		})
		if err == nil || !strings.Contains(err.Error(), "not both") {
			t.Fatalf("both: err = %v", err)
		}
	})
}
