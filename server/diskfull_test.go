package main

import (
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/spells-dev/spells/internal/tmpfstest"
	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/protocol/client"
)

// fill writes a file in dir until the disk is full and returns its path.
func fill(t *testing.T, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "filler")
	f, err := os.Create(p)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 64<<10)
	for {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			break
		}
	}
	// What fits in the last blocks, too.
	for _, n := range []int{4096, 512, 1} {
		for {
			if _, err := f.Write(chunk[:n]); err != nil {
				break
			}
		}
	}
	return p
}

// TestFullDiskIsToldAndRecovered: on a full disk, commands and sign-ins
// are refused with storage_full (retryable) instead of internal, /readyz
// says storage_full with 503, and nothing acknowledged is lost. Once there
// is room again the node is ready again by itself, commands go through,
// and it restarts.
func TestFullDiskIsToldAndRecovered(t *testing.T) {
	data := tmpfstest.Mount(t, "8m")
	args := []string{"-signin-rate-per-ip", "0", "-new-vaults-per-ip", "0", "-new-vaults-per-minute", "0", "-command-rate", "100000", "-command-burst", "100000"}
	p := startProc(t, data, args...)
	w, _ := client.NewWallet()
	a := p.signIn(t, w)
	acked := 0
	for i := 0; i < 3; i++ {
		a.create(t, dip(float64(1000+i)))
		acked++
	}
	filler := fill(t, data)
	full := false
	for i := 0; i < 3000 && !full; i++ {
		_, err := a.cmd(t, protocol.OpTriggerCreate, dip(float64(2000+i)))
		switch pe := protocol.AsError(err); {
		case err == nil:
			acked++
		case pe != nil && pe.Code == protocol.CodeStorageFull && protocol.Retryable(pe.Code):
			full = true
		default:
			t.Fatalf("command %d on a full disk: %v, want storage_full", i, err)
		}
	}
	if !full {
		t.Fatal("3000 commands on a full disk were all acknowledged")
	}
	if code, body := p.readyz(t); code != http.StatusServiceUnavailable || body["status"] != "storage_full" {
		t.Fatalf("/readyz on a full disk: %d %v, want 503 storage_full", code, body)
	}
	c := p.dial(t, nil)
	_, err := c.SignIn(ctxT(t), w, client.SignInParams{}, nil)
	wantCode(t, err, protocol.CodeStorageFull)

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the node to be ready again", func() bool { code, _ := p.readyz(t); return code == http.StatusOK })
	b := p.signIn(t, w)
	if n := len(b.mirror.Triggers); n != acked {
		t.Fatalf("the vault holds %d triggers, %d were acknowledged", n, acked)
	}
	b.create(t, dip(3000))
	acked++
	if err := p.stop(syscall.SIGTERM, 20*time.Second); err != nil {
		t.Fatalf("exit after SIGTERM: %v", err)
	}
	p = startProc(t, data, args...)
	if n := len(p.signIn(t, w).mirror.Triggers); n != acked {
		t.Fatalf("after a restart the vault holds %d triggers, %d were acknowledged", n, acked)
	}
}

// TestNodeStartsAgainOnADiskWithRoom: a node killed while its disk was
// full starts again once there is room.
func TestNodeStartsAgainOnADiskWithRoom(t *testing.T) {
	data := tmpfstest.Mount(t, "8m")
	p := startProc(t, data, "-signin-rate-per-ip", "0", "-new-vaults-per-ip", "0", "-new-vaults-per-minute", "0")
	w, _ := client.NewWallet()
	p.signIn(t, w).create(t, dip(1000))
	filler := fill(t, data)
	c := p.dial(t, nil)
	nw, _ := client.NewWallet()
	_, err := c.SignIn(ctxT(t), nw, client.SignInParams{}, nil)
	wantCode(t, err, protocol.CodeStorageFull) // a vault cannot even be created
	p.kill()
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	p = startProc(t, data, "-signin-rate-per-ip", "0", "-new-vaults-per-ip", "0", "-new-vaults-per-minute", "0")
	if code, body := p.readyz(t); code != http.StatusOK || body["vaults_quarantined"] != 0.0 {
		t.Fatalf("/readyz %d %v", code, body)
	}
	if s := p.signIn(t, w); len(s.mirror.Triggers) != 1 {
		t.Fatal("the vault lost its trigger")
	}
	p.signIn(t, nw)
}
