package vault

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"zombiezen.com/go/sqlite"
	"zombiezen.com/go/sqlite/sqlitex"

	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/protocol/client"
	"github.com/spells-dev/spells/vault/actor"
)

// rootPage returns the first page of table in the vault file at p.
func rootPage(t *testing.T, p, table string) int64 {
	t.Helper()
	conn, err := sqlite.OpenConn(p, sqlite.OpenReadOnly)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var page int64
	err = sqlitex.Execute(conn, "SELECT rootpage FROM sqlite_schema WHERE name = ?;", &sqlitex.ExecOptions{
		Args: []any{table}, ResultFunc: func(s *sqlite.Stmt) error { page = s.ColumnInt64(0); return nil }})
	if err != nil || page == 0 {
		t.Fatalf("root page of %s: %d, %v", table, page, err)
	}
	return page
}

// damageKinds are the ways a vault file was seen to break, each applied to
// the cleanly closed file at p.
var damageKinds = map[string]func(t *testing.T, p string){
	"page of a table read at open overwritten": func(t *testing.T, p string) { overwritePage(t, p, rootPage(t, p, "triggers")) },
	"page of a table read later overwritten":   func(t *testing.T, p string) { overwritePage(t, p, rootPage(t, p, "evaluations")) },
	"truncated to half": func(t *testing.T, p string) {
		fi, _ := os.Stat(p)
		must(t, os.Truncate(p, fi.Size()/2))
	},
	"truncated to 0 bytes": func(t *testing.T, p string) { must(t, os.Truncate(p, 0)) },
	"header overwritten":   func(t *testing.T, p string) { overwrite(t, p, 0, 100) },
	"replaced by text":     func(t *testing.T, p string) { must(t, writeFile(p, []byte(strings.Repeat("not a database. ", 200)))) },
	"replaced by a directory": func(t *testing.T, p string) {
		must(t, os.Remove(p))
		must(t, os.Mkdir(p, 0o700))
	},
	"another application's file": func(t *testing.T, p string) {
		must(t, os.Remove(p))
		conn, err := sqlite.OpenConn(p, sqlite.OpenReadWrite|sqlite.OpenCreate)
		must(t, err)
		must(t, sqlitex.ExecuteScript(conn, "PRAGMA application_id = 42; CREATE TABLE notes (body TEXT);", nil))
		must(t, conn.Close())
	},
	"no vault row": func(t *testing.T, p string) {
		conn, err := sqlite.OpenConn(p, sqlite.OpenReadWrite)
		must(t, err)
		must(t, sqlitex.ExecuteTransient(conn, "DELETE FROM vault;", nil))
		must(t, conn.Close())
	},
}

func overwritePage(t *testing.T, p string, page int64) { overwrite(t, p, (page-1)*4096, 4096) }

func overwrite(t *testing.T, p string, off, n int64) {
	t.Helper()
	f, err := os.OpenFile(p, os.O_WRONLY, 0)
	must(t, err)
	defer f.Close()
	_, err = f.WriteAt([]byte(strings.Repeat("\xa5", int(n))), off)
	must(t, err)
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// TestDamagedVaultFilesAreQuarantined: each kind of damage to one vault
// file among many leaves the node starting and serving every other vault;
// the damaged one is moved to the quarantine folder (at the start-up scan,
// or when it is first read), its owner's sign-in is refused with
// vault_quarantined before any ready frame, nothing creates a fresh vault
// in its place, and the count survives a restart.
func TestDamagedVaultFilesAreQuarantined(t *testing.T) {
	e := newEnv(t)
	e.latest["X"] = 15
	type victim struct {
		kind string
		w    *client.Wallet
	}
	var victims []victim
	var healthy []*user
	for kind := range damageKinds {
		u := e.newUser()
		u.create(t, protocol.TriggerSpec{Name: "x", Condition: below("X", 10), Action: swap})
		e.cross(t, u) // an evaluation row, so that table has a page
		victims = append(victims, victim{kind, u.w})
		healthy = append(healthy, e.newUser())
	}
	must(t, e.m.Close(context.Background()))
	for _, vi := range victims {
		damageKinds[vi.kind](t, actor.Path(e.dir, actor.ID(vi.w.Address())))
	}
	e.start() // must not fail
	for _, u := range healthy {
		u2 := e.signIn(u.w)
		u2.mustCmd(t, protocol.OpTriggerList, struct{}{})
	}
	for _, vi := range victims {
		t.Run(vi.kind, func(t *testing.T) {
			d, _ := protocol.NewDelegate()
			s := newSub()
			_, err := e.signInWith(vi.w, e.params(vi.w, d), s)
			wantCode(t, err, protocol.CodeVaultQuarantined)
			select {
			case f := <-s.ch:
				t.Fatalf("the refused owner was sent %s", f)
			default:
			}
			id := actor.ID(vi.w.Address())
			if _, err := os.Lstat(actor.Path(e.dir, id)); !os.IsNotExist(err) {
				t.Fatalf("the vault's place is not empty after quarantine (%v)", err)
			}
			moved, _ := filepath.Glob(filepath.Join(e.dir, "quarantine", id+".*.db"))
			if len(moved) != 1 {
				t.Fatalf("quarantine holds %v for the vault, want its file", moved)
			}
			// Asked again, still refused: no fresh vault replaces it.
			_, err = e.signInWith(vi.w, e.params(vi.w, d), newSub())
			wantCode(t, err, protocol.CodeVaultQuarantined)
		})
	}
	if n := e.m.Quarantined(); n != len(victims) {
		t.Fatalf("%d vaults quarantined, want %d", n, len(victims))
	}
	if n := e.m.Interested("X"); n != 0 {
		t.Fatalf("the index still holds %d quarantined vaults: crossings would try to wake them", n)
	}
	if g := testutil.ToFloat64(e.m.metrics.Quarantined); g != float64(len(victims)) {
		t.Fatalf("spells_vaults_quarantined = %g, want %d", g, len(victims))
	}
	e.restart()
	if n := e.m.Quarantined(); n != len(victims) {
		t.Fatalf("after a restart %d vaults quarantined, want %d", n, len(victims))
	}
	_, err := e.signInWith(victims[0].w, e.params(victims[0].w, mustDelegate(t)), newSub())
	wantCode(t, err, protocol.CodeVaultQuarantined)
}

// TestRestoredQuarantinedVaultServesAgain: an operator who moves a
// quarantined file back (here: a good copy) has the vault served again
// after a restart.
func TestRestoredQuarantinedVaultServesAgain(t *testing.T) {
	e := newEnv(t)
	u := e.newUser()
	u.create(t, protocol.TriggerSpec{Name: "x", Condition: below("X", 10), Action: swap})
	must(t, e.m.Close(context.Background()))
	p := actor.Path(e.dir, actor.ID(u.w.Address()))
	good, err := os.ReadFile(p)
	must(t, err)
	damageKinds["header overwritten"](t, p)
	e.start()
	_, err = e.signInWith(u.w, e.params(u.w, mustDelegate(t)), newSub())
	wantCode(t, err, protocol.CodeVaultQuarantined)
	must(t, os.WriteFile(p, good, 0o600))
	e.restart()
	if u2 := e.signIn(u.w); len(u2.state(t).Triggers) != 1 {
		t.Fatal("the restored vault lost its trigger")
	}
}

// TestBackgroundCheckFindsDamageNoQueryReads: a closed vault file with an
// index page overwritten (nothing at open or in use reads it) is found by
// the janitor's integrity check and quarantined; its owner is told
// vault_quarantined, and by its alert channel, and every other vault
// serves.
func TestBackgroundCheckFindsDamageNoQueryReads(t *testing.T) {
	e := newEnv(t)
	e.latest["X"] = 15
	victim, other := e.newUser(), e.newUser()
	hook := newHookReceiver(t)
	victim.mustCmd(t, protocol.OpAlertsSet, protocol.AlertsArgs{Webhook: &protocol.WebhookChannel{URL: hook.URL}})
	victim.create(t, protocol.TriggerSpec{Name: "x", Condition: below("X", 10), Action: swap})
	e.hibernateAll(t, victim, other)
	p := actor.Path(e.dir, actor.ID(victim.w.Address()))
	overwritePage(t, p, rootPage(t, p, "intent_txs_intent"))
	waitFor(t, "the integrity check to quarantine the vault", func() bool {
		e.clock.Advance(time.Second)
		return e.m.Quarantined() == 1
	})
	d, _ := protocol.NewDelegate()
	_, err := e.signInWith(victim.w, e.params(victim.w, d), newSub())
	wantCode(t, err, protocol.CodeVaultQuarantined)
	// The vault is fenced first, then its file moved and the reason
	// written beside it.
	var reasons []string
	waitFor(t, "the quarantine's reason", func() bool {
		reasons, _ = filepath.Glob(filepath.Join(e.dir, "quarantine", "*.reason"))
		return len(reasons) == 1
	})
	if b, _ := os.ReadFile(reasons[0]); !strings.Contains(string(b), "integrity check") {
		t.Fatalf("the reason: %s", b)
	}
	waitFor(t, "the owner's alert", func() bool {
		got := hook.alerts()
		return len(got) == 1 && got[0].Alert.Kind == protocol.AlertQuarantined && strings.EqualFold(got[0].Vault, victim.w.Address().Hex())
	})
	e.signIn(other.w).mustCmd(t, protocol.OpTriggerList, struct{}{})
}

// TestNoInstanceStartsWhileItsFileIsChecked: while the integrity check
// reads a vault's file, a sign-in to that vault waits for the check to end
// (two connections on one file, without SQLite's locks, would read each
// other's writes half done), then goes on.
func TestNoInstanceStartsWhileItsFileIsChecked(t *testing.T) {
	e := newEnv(t)
	u := e.newUser()
	e.hibernateAll(t, u)
	id := actor.ID(u.w.Address())
	e.m.mu.Lock()
	e.m.checking, e.m.checkDone = id, make(chan struct{})
	e.m.mu.Unlock()
	opened := make(chan error, 1)
	go func() { _, err := e.m.Vault(context.Background(), u.w.Address()); opened <- err }()
	select {
	case err := <-opened:
		t.Fatalf("the vault opened while its file was checked (%v)", err)
	case <-time.After(200 * time.Millisecond):
	}
	if n := e.m.OpenVaults(); n != 0 {
		t.Fatalf("%d instances while the vault's file is checked", n)
	}
	e.m.mu.Lock()
	e.m.checking = ""
	close(e.m.checkDone)
	e.m.mu.Unlock()
	if err := <-opened; err != nil {
		t.Fatalf("after the check: %v", err)
	}
}
