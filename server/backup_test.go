package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spells-dev/spells/backup"
	"github.com/spells-dev/spells/backup/s3test"
	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/vault/store"
)

// adminPost sends an admin request with the test's admin token.
func adminPost(t *testing.T, tn *testNode, path, token string) (int, string) {
	t.Helper()
	return adminPostTo(t, tn.addr, path, token)
}

// adminPostTo is adminPost to the node at addr.
func adminPostTo(t *testing.T, addr, path, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+path, nil)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestBackupAndRestore: a node run with -backup ships its vaults' changes
// to a real S3 server within -backup-every; the admin restores a vault as
// it was at its newest version, at an older one (the triggers it had
// then), or only asks what a restore would do; a version the backup does
// not hold is refused, and so are requests without the admin token.
func TestBackupAndRestore(t *testing.T) {
	srv := s3test.Start(t)
	o := testOptions(t)
	o.Backup, o.BackupEvery, o.AdminToken = srv.URL+"/spells/test", 50*time.Millisecond, "adm1n"
	tn := startNode(t, o, nil)
	s := tn.signIn(t, nil)
	vault := strings.ToLower(s.w.Address().Hex())
	type plan struct {
		Version uint64 `json:"version"`
		Changes int    `json:"changes"`
		File    string `json:"file"`
		Dry     bool   `json:"dry"`
	}
	restore := func(query string) (int, plan, string) {
		t.Helper()
		code, body := adminPost(t, tn, "/v1/admin/restore?vault="+vault+query, "adm1n")
		var p plan
		_ = json.Unmarshal([]byte(body), &p)
		return code, p, body
	}
	// Each version shipped before the next is made (versions committed
	// within one -backup-every ship together).
	var versions []uint64
	for i := 0; i < 3; i++ {
		spec := dip(float64(100 + i))
		spec.Name = fmt.Sprintf("dip %d", i)
		_, v := s.create(t, spec)
		versions = append(versions, v)
		waitFor(t, fmt.Sprintf("version %d shipped", v), func() bool {
			code, p, _ := restore("&dry=1")
			return code == http.StatusOK && p.Version == v
		})
	}
	newest := versions[len(versions)-1]
	code, p, body := restore("&dry=1")
	if !p.Dry || p.File != "" {
		t.Fatalf("a dry run: %d %s", code, body)
	}
	triggersIn := func(file string) int {
		conn, err := store.Open(file)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		rows, err := store.LoadTriggers(conn)
		if err != nil {
			t.Fatal(err)
		}
		return len(rows)
	}
	code, p, body = restore("")
	if code != http.StatusOK || p.Version != newest || triggersIn(p.File) != 3 {
		t.Fatalf("restore the newest: %d %s", code, body)
	}
	code, p, body = restore(fmt.Sprintf("&version=%d", versions[0]))
	if code != http.StatusOK || p.Version != versions[0] || triggersIn(p.File) != 1 {
		t.Fatalf("restore version %d: %d %s", versions[0], code, body)
	}
	if code, _, body := restore("&version=999"); code != http.StatusNotFound || !strings.Contains(body, "not in the backup") {
		t.Fatalf("a version the backup does not hold: %d %s", code, body)
	}
	if code, body := adminPost(t, tn, "/v1/admin/restore?vault="+vault, "wrong"); code != http.StatusUnauthorized {
		t.Fatalf("a wrong admin token: %d %s", code, body)
	}
	if code, _, body := restore("&version=1&at=5"); code != http.StatusBadRequest {
		t.Fatalf("a version and a time: %d %s", code, body)
	}

	// In place: the vault's triggers go back to version 1's (dry first),
	// and its dashboard follows; then the owner's own signed command
	// brings the newest back.
	var f protocol.RestoreFrame
	code, body = adminPost(t, tn, fmt.Sprintf("/v1/admin/restore?vault=%s&version=%d&mode=in_place&dry=1", vault, versions[0]), "adm1n")
	if err := json.Unmarshal([]byte(body), &f); code != http.StatusOK || err != nil || !f.Dry || len(f.Removed) != 2 || f.Applied != 0 {
		t.Fatalf("a dry restore in place: %d %s", code, body)
	}
	code, body = adminPost(t, tn, fmt.Sprintf("/v1/admin/restore?vault=%s&version=%d&mode=in_place", vault, versions[0]), "adm1n")
	if err := json.Unmarshal([]byte(body), &f); code != http.StatusOK || err != nil || f.Dry || len(f.Removed) != 2 || f.Applied == 0 {
		t.Fatalf("a restore in place: %d %s", code, body)
	}
	s.untilVersion(t, f.Applied) // past the dry run's restore frame
	s.until(t, "the restore frame", func(f protocol.ServerFrame) bool { return f.Type == protocol.TypeRestore })
	if n := len(s.mirror.Triggers); n != 1 {
		t.Fatalf("after the restore in place the dashboard shows %d triggers, want 1", n)
	}
	if _, err := s.cmd(t, protocol.OpVaultRestore, protocol.RestoreArgs{Version: newest}); err != nil {
		t.Fatalf("the owner's restore: %v", err)
	}
	s.until(t, "the restore frame", func(f protocol.ServerFrame) bool { return f.Type == protocol.TypeRestore })
	if n := len(s.mirror.Triggers); n != 3 {
		t.Fatalf("after the owner's restore the dashboard shows %d triggers, want 3", n)
	}
	if code, body := adminPost(t, tn, "/v1/admin/restore?vault="+vault+"&mode=sideways", "adm1n"); code != http.StatusBadRequest {
		t.Fatalf("an unknown mode: %d %s", code, body)
	}
}

// TestALostDiskIsRestored: a node's disk is lost (its data directory
// emptied); started again with the same key-encryption key, -backup and
// -backup-restore, it restores every vault from the backup before it
// serves, and the owner finds the triggers it had, all of those the
// backup had shipped: the test reports how many acked changes were lost.
func TestALostDiskIsRestored(t *testing.T) {
	srv := s3test.Start(t)
	o := testOptions(t)
	o.Backup, o.BackupEvery, o.MasterKey = srv.URL+"/spells/lost", 50*time.Millisecond, strings.Repeat("ab", 32)
	tn := startNode(t, o, nil)
	s := tn.signIn(t, nil)
	for i := 0; i < 3; i++ {
		spec := dip(float64(100 + i))
		spec.Name = fmt.Sprintf("dip %d", i)
		s.create(t, spec)
	}
	w := s.w
	if err := tn.shutdown(); err != nil { // closing ships what waited
		t.Fatal(err)
	}
	if err := os.RemoveAll(o.DataDir); err != nil {
		t.Fatal(err)
	}
	o.BackupRestore = true
	tn = startNode(t, o, nil)
	s = tn.signIn(t, w)
	if n := len(s.mirror.Triggers); n != 3 {
		t.Fatalf("after the lost disk the vault has %d triggers, want 3 (%d acked changes lost)", n, 3-n)
	}
	if _, err := os.Stat(filepath.Join(o.DataDir, "restoring")); !os.IsNotExist(err) {
		t.Fatalf("the restore left its marker: %v", err)
	}
	// A node with vaults restores nothing.
	if err := tn.shutdown(); err != nil {
		t.Fatal(err)
	}
	tn = startNode(t, o, nil)
	s = tn.signIn(t, w)
	if n := len(s.mirror.Triggers); n != 3 {
		t.Fatalf("a second start: %d triggers", n)
	}
}

// TestAWipedBucketGetsEverythingAgain: the bucket loses every object (a
// wiped or replaced store); within -backup-check-every the node finds its
// backup key gone, stores it again, and every vault ships its whole file
// again, the one that never changes after the wipe too: both restore at
// their newest.
func TestAWipedBucketGetsEverythingAgain(t *testing.T) {
	srv := s3test.Start(t)
	o := testOptions(t)
	o.Backup, o.BackupEvery, o.BackupCheckEvery, o.AdminToken = srv.URL+"/spells/wiped", 50*time.Millisecond, 300*time.Millisecond, "adm1n"
	tn := startNode(t, o, nil)
	newest := func(s *session) func() bool {
		vault := strings.ToLower(s.w.Address().Hex())
		return func() bool {
			code, body := adminPost(t, tn, "/v1/admin/restore?dry=1&vault="+vault, "adm1n")
			var p struct{ Version uint64 }
			_ = json.Unmarshal([]byte(body), &p)
			return code == http.StatusOK && p.Version == s.mirror.Version
		}
	}
	a, b := tn.signIn(t, nil), tn.signIn(t, nil)
	_, va := a.create(t, dip(100))
	_, vb := b.create(t, dip(200))
	a.untilVersion(t, va)
	b.untilVersion(t, vb)
	waitFor(t, "both vaults shipped", func() bool { return newest(a)() && newest(b)() })
	bucket, err := backup.OpenBucket(ctxT(t), o.Backup)
	if err != nil {
		t.Fatal(err)
	}
	if err := bucket.RemoveAll(ctxT(t)); err != nil {
		t.Fatal(err)
	}
	if newest(a)() {
		t.Fatal("the wiped bucket still restores a vault")
	}
	waitFor(t, "both vaults shipped again, whole", func() bool { return newest(a)() && newest(b)() })
	if n := testutilValue(t, tn, "spells_backup_wiped_total"); n != 1 {
		t.Fatalf("spells_backup_wiped_total = %g", n)
	}
}
