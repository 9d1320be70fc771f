package main

import (
	"context"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/spells-dev/spells/cluster"
	"github.com/spells-dev/spells/cluster/redistest"
	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/protocol/client"
)

// TestHandoffSurvivesACrashAtEachStep: a node is stopped dead (the
// process exits at once, as if killed) at each step of handing a vault to
// another node, the sender at four steps and the receiver at one. Once it
// is started again, the vault is served by exactly one node, the one the
// directory's switch decided, with its data intact.
func TestHandoffSurvivesACrashAtEachStep(t *testing.T) {
	for _, c := range []struct {
		step     string
		receiver bool // the receiving node crashes, not the sender
		movedTo  bool // the vault ends on the receiver
	}{
		{step: "quiesced"},
		{step: "offered"},
		{step: "switched", movedTo: true},
		{step: "tombstoned", movedTo: true},
		{step: "received", receiver: true},
	} {
		t.Run(c.step, func(t *testing.T) { crashDuringHandoff(t, c.step, c.receiver, c.movedTo) })
	}
}

func crashDuringHandoff(t *testing.T, step string, receiverCrashes, movedTo bool) {
	r := redistest.Start(t)
	secretFile, keyFile := clusterFiles(t)
	addrs, domains := clusterAddrs(t, 2)
	names := []string{"node-a", "node-b"}
	data := []string{t.TempDir(), t.TempDir()}
	args := func(i int) []string {
		return []string{"-listen", addrs[i], "-siwe-domains", strings.Join(domains, ","), "-node", names[i],
			"-redis", r.URL(), "-cluster-secret-file", secretFile, "-cluster-lease", "1s", "-admin-token", testAdminToken, "-master-key-file", keyFile}
	}
	crash := []string{"SPELLS_TEST_CRASH_HANDOFF=" + step}
	var envA, envB []string
	if receiverCrashes {
		envB = crash
	} else {
		envA = crash
	}
	a := startProcEnv(t, data[0], envA, args(0)...)
	b := startProcEnv(t, data[1], envB, args(1)...)
	waitFor(t, "both members", func() bool { return a.metric(t, "spells_directory_members") == 2 })

	w := walletFor(t, []cluster.Member{{ID: "node-a"}, {ID: "node-b"}}, "node-a")
	s := signInRetrying(t, a, w)
	trig, _ := s.create(t, dip(100))
	s.c.CloseNow()

	// Drain A: the crashing node stops at the step.
	req, _ := http.NewRequest(http.MethodPost, "http://"+a.addr+"/v1/admin/drain", nil)
	req.Header.Set("Authorization", "Bearer "+testAdminToken)
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
	}
	crashed, i := a, 0
	if receiverCrashes {
		crashed, i = b, 1
	}
	select {
	case <-crashed.exited:
	case <-time.After(20 * time.Second):
		t.Fatalf("the node did not stop at %s; its log:\n%s", step, crashed.log())
	}
	restarted := startProc(t, data[i], args(i)...)
	if receiverCrashes {
		b = restarted
	} else {
		a = restarted
	}

	// The vault is served again, with its trigger, whichever node the
	// client asks.
	home, other := a, b
	if movedTo {
		home, other = b, a
	}
	for _, entry := range []*procNode{a, b} {
		ss := signInRetrying(t, entry, w)
		if _, ok := ss.mirror.Triggers[trig]; !ok {
			t.Fatalf("the vault lost its trigger (through %s)", entry.addr)
		}
		ss.c.CloseNow()
	}
	rdb := redis.NewClient(&redis.Options{Addr: r.Addr})
	defer rdb.Close()
	id := strings.ToLower(w.Address().Hex())
	got, err := rdb.Get(context.Background(), "spells:vault:{"+id+"}").Result()
	want := map[bool]string{false: "node-a 1", true: "node-b 2"}[movedTo]
	if err != nil || got != want {
		t.Fatalf("home %q (%v), want %q", got, err, want)
	}
	// The other node serves no copy: none, a tombstone, or a received
	// file never installed.
	p := filepath.Join(other.data, "vaults", id[2:4], id+".db")
	if _, err := os.Stat(p); err == nil {
		if _, _, moved := movedMark(t, p); !moved {
			t.Fatalf("%s holds a live copy of the vault", other.addr)
		}
	}
	if _, err := os.Stat(filepath.Join(home.data, "vaults", id[2:4], id+".db")); err != nil {
		t.Fatalf("the vault's home has no file: %v", err)
	}
}

// signInRetrying signs w in through p, retrying retryable refusals (a
// directory settling, a vault moving) for up to 20 s.
func signInRetrying(t *testing.T, p *procNode, w *client.Wallet) *session {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		c := p.dial(t, nil)
		sess, err := c.SignIn(ctxT(t), w, client.SignInParams{}, nil)
		if err == nil {
			ss := &session{c: c, w: w, s: sess, mirror: client.NewMirror()}
			ss.until(t, "snapshot", func(f protocol.ServerFrame) bool { return f.Type == protocol.TypeSnapshot })
			return ss
		}
		c.CloseNow()
		if pe := protocol.AsError(err); pe == nil || !protocol.Retryable(pe.Code) || time.Now().After(deadline) {
			t.Fatalf("sign-in through %s: %v", p.addr, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// TestDrainOnShutdown: a node run with -drain-on-shutdown hands its
// vaults to the other node at SIGTERM, then exits 0; its vaults are served
// there, with their data.
func TestDrainOnShutdown(t *testing.T) {
	r := redistest.Start(t)
	secretFile, keyFile := clusterFiles(t)
	addrs, domains := clusterAddrs(t, 2)
	args := func(i int, more ...string) []string {
		return append([]string{"-listen", addrs[i], "-siwe-domains", strings.Join(domains, ","), "-node", []string{"node-a", "node-b"}[i],
			"-redis", r.URL(), "-cluster-secret-file", secretFile, "-cluster-lease", "1s", "-master-key-file", keyFile}, more...)
	}
	a := startProc(t, t.TempDir(), args(0, "-drain-on-shutdown")...)
	b := startProc(t, t.TempDir(), args(1)...)
	waitFor(t, "both members", func() bool { return a.metric(t, "spells_directory_members") == 2 })
	w := walletFor(t, []cluster.Member{{ID: "node-a"}, {ID: "node-b"}}, "node-a")
	s := signInRetrying(t, a, w)
	trig, _ := s.create(t, dip(100))
	s.c.CloseNow()
	if err := a.stop(syscall.SIGTERM, 30*time.Second); err != nil {
		t.Fatalf("exit after the drain: %v; its log:\n%s", err, a.log())
	}
	if !strings.Contains(a.log(), `"moved":1`) {
		t.Fatalf("the drain did not move the vault; the node's log:\n%s", a.log())
	}
	ss := signInRetrying(t, b, w)
	if _, ok := ss.mirror.Triggers[trig]; !ok {
		t.Fatal("the moved vault lost its trigger")
	}
}
