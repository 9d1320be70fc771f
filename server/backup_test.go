package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/spells-dev/spells/backup/s3test"
	"github.com/spells-dev/spells/vault/store"
)

// adminPost sends an admin request with the test's admin token.
func adminPost(t *testing.T, tn *testNode, path, token string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, "http://"+tn.addr+path, nil)
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
	var versions []uint64
	for i := 0; i < 3; i++ {
		spec := dip(float64(100 + i))
		spec.Name = fmt.Sprintf("dip %d", i)
		_, v := s.create(t, spec)
		versions = append(versions, v)
	}
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
	newest := versions[len(versions)-1]
	waitFor(t, "the newest version shipped", func() bool {
		code, p, _ := restore("&dry=1")
		return code == http.StatusOK && p.Version == newest
	})
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
}
