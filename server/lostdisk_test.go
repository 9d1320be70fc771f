package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spells-dev/spells/backup"
	"github.com/spells-dev/spells/backup/s3test"
	"github.com/spells-dev/spells/protocol/client"
	"github.com/spells-dev/spells/vault/keys"
)

// TestSIGKILLThenALostDisk: a node with -backup is killed with SIGKILL
// while its owner's commands are acknowledged as fast as they come, and
// its disk is lost with it. Started on an empty disk with -backup-restore,
// it has every acknowledged change but those acknowledged within the
// shipping bound (-backup-every, plus one flush) before the kill; the test
// reports how many that was.
func TestSIGKILLThenALostDisk(t *testing.T) {
	srv := s3test.Start(t)
	const every = 200 * time.Millisecond
	env := []string{"SPELLS_MASTER_KEY=" + strings.Repeat("cd", 32)}
	args := []string{"-backup", srv.URL + "/spells/killed", "-backup-every", every.String(), "-command-rate", "100000", "-command-burst", "100000"}
	data := t.TempDir()
	p := startProcEnv(t, data, env, args...)
	w, _ := client.NewWallet()
	s := p.signIn(t, w)
	type acked struct {
		name string
		at   time.Time
	}
	var all []acked
	began := time.Now()
	for i := 0; i < 250 && time.Since(began) < 2*time.Second; i++ { // (256 triggers a vault at most)
		spec := dip(float64(1000 + i))
		spec.Name = fmt.Sprintf("dip %d", i)
		s.create(t, spec)
		all = append(all, acked{spec.Name, time.Now()})
	}
	p.kill()
	killed := time.Now()
	if err := os.RemoveAll(data); err != nil {
		t.Fatal(err)
	}
	p = startProcEnv(t, data, env, append(args, "-backup-restore")...)
	held := map[string]bool{}
	for _, tr := range p.signIn(t, w).mirror.Triggers {
		held[tr.Name] = true
	}
	lost, oldest := 0, time.Duration(0)
	for i, a := range all {
		if held[a.name] {
			if lost > 0 {
				t.Fatalf("%s was kept but an older acknowledged change was lost: the backup is not a prefix", a.name)
			}
			continue
		}
		if lost == 0 {
			oldest = killed.Sub(a.at)
			if i == 0 {
				t.Fatal("every acknowledged change was lost")
			}
		}
		lost++
	}
	// The bound: what was acknowledged within one interval before the
	// kill waits for the next flush, and a flush in flight may be cut off.
	bound := 2*every + 500*time.Millisecond
	t.Logf("%d changes acknowledged over %s; after SIGKILL and a lost disk %d were lost, the oldest of them acknowledged %s before the kill (-backup-every %s)",
		len(all), killed.Sub(began).Round(time.Millisecond), lost, oldest.Round(time.Millisecond), every)
	if oldest > bound {
		t.Fatalf("a change acknowledged %s before the kill was lost: beyond the shipping bound (%s)", oldest, bound)
	}
}

// TestSIGKILLDuringAnUpload: the node is killed with SIGKILL while an
// upload hangs on a slow store, its acknowledged change not in the backup
// yet. Started again on its disk, it finds it did not stop with every
// change shipped, and every vault ships its whole file again: the backup
// reaches the acknowledged version without the vault changing again.
func TestSIGKILLDuringAnUpload(t *testing.T) {
	srv := s3test.Start(t)
	store := s3test.NewFaulty(t, srv.URL)
	args := []string{"-backup", store.URL + "/spells/upload", "-backup-every", "100ms", "-admin-token", "adm1n"}
	env := []string{"SPELLS_MASTER_KEY=" + strings.Repeat("ef", 32)}
	data := t.TempDir()
	p := startProcEnv(t, data, env, args...)
	w, _ := client.NewWallet()
	s := p.signIn(t, w)
	vault := strings.ToLower(w.Address().Hex())
	shipped := func(p *procNode) uint64 {
		code, body := adminPostTo(t, p.addr, "/v1/admin/restore?dry=1&vault="+vault, "adm1n")
		var plan struct{ Version uint64 }
		if code == http.StatusOK {
			_ = json.Unmarshal([]byte(body), &plan)
		}
		return plan.Version
	}
	_, v1 := s.create(t, dip(100))
	waitFor(t, "the first trigger shipped", func() bool { return shipped(p) >= v1 })
	store.Delay.Store(int64(time.Hour))
	_, v2 := s.create(t, dip(200))
	waitFor(t, "an upload hanging on the store", func() bool { return store.Inflight.Load() > 0 })
	p.kill()
	// The held upload never reaches the store.
	store.Fail.Store(true)
	store.Delay.Store(0)
	waitFor(t, "the held upload refused", func() bool { return store.Inflight.Load() == 0 })
	store.Fail.Store(false)
	if got := backedUp(t, srv.URL+"/spells/upload", strings.Repeat("ef", 32), vault); got >= v2 {
		t.Fatalf("version %d reached the store before the restart", got)
	}
	p = startProcEnv(t, data, env, args...)
	p.waitLog(`every vault ships its whole file again`, 10*time.Second)
	waitFor(t, "the acknowledged version in the backup", func() bool { return shipped(p) >= v2 })
}

// backedUp is the newest version of vault the backup at url (sealed under
// the key-encryption key kek, in hex) holds, read without a node.
func backedUp(t *testing.T, url, kek, vault string) uint64 {
	t.Helper()
	k, err := keys.ParseKEK(kek)
	if err != nil {
		t.Fatal(err)
	}
	b, err := backup.OpenBucket(ctxT(t), url)
	if err != nil {
		t.Fatal(err)
	}
	r, err := backup.NewRestorer(ctxT(t), b, k)
	if err != nil {
		t.Fatal(err)
	}
	plan, err := r.Restore(ctxT(t), vault, backup.Target{}, filepath.Join(t.TempDir(), "v.db"))
	if err != nil {
		t.Fatal(err)
	}
	return plan.Version
}
