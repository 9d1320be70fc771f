package main

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/spells-dev/spells/backup/s3test"
	"github.com/spells-dev/spells/protocol/client"
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
