package main

import (
	"context"
	"fmt"
	"io"
	"math/big"
	"net/http"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"

	"github.com/spells-dev/spells/chain"
	"github.com/spells-dev/spells/internal/tmpfstest"
	"github.com/spells-dev/spells/protocol/client"
)

var devArgs = []string{"-chain-rpc", "dev", "-dev-chain-rpc", "127.0.0.1:0", "-signin-rate-per-ip", "0", "-new-vaults-per-ip", "0"}

// waitBlock waits until the chain's head is at least n and returns it.
func waitBlock(t *testing.T, c *chain.Client, n uint64) uint64 {
	t.Helper()
	var head uint64
	waitFor(t, "the dev chain to make a block", func() bool {
		h, err := c.BlockNumber(context.Background())
		head = h
		return err == nil && h >= n
	})
	return head
}

// TestDevChainLosesNoBlockToSIGKILL: the node killed with SIGKILL just
// after its dev chain made a block keeps that block, and every one before
// it, with the same hashes; a vault created just before the kill is funded
// by the faucet when the node starts again, without its owner signing in.
func TestDevChainLosesNoBlockToSIGKILL(t *testing.T) {
	data := t.TempDir()
	p := startProc(t, data, devArgs...)
	_, c := procChain(t, p)
	ctx := context.Background()
	seen := map[uint64]common.Hash{}
	var owner, key common.Address
	for round := 0; round < 2; round++ {
		head, _ := c.BlockNumber(ctx)
		head = waitBlock(t, c, head+3)
		for n := uint64(1); n <= head; n++ {
			if _, ok := seen[n]; ok {
				continue
			}
			h, err := c.HeaderByNumber(ctx, new(big.Int).SetUint64(n))
			if err != nil {
				t.Fatal(err)
			}
			seen[n] = h.Hash()
		}
		if round == 1 {
			// A new vault, and the kill before its faucet money could
			// be sent (or while it is).
			w, _ := client.NewWallet()
			s := p.signIn(t, w)
			owner, key = w.Address(), common.HexToAddress(s.mirror.Account.SessionKey)
		}
		p.kill()
		p = startProc(t, data, devArgs...)
		_, c = procChain(t, p)
		for n, want := range seen {
			h, err := c.HeaderByNumber(ctx, new(big.Int).SetUint64(n))
			if err != nil {
				t.Fatalf("round %d: block %d after SIGKILL: %v", round, n, err)
			}
			if h.Hash() != want {
				t.Fatalf("round %d: block %d is %s after SIGKILL, was %s", round, n, h.Hash(), want)
			}
		}
	}
	waitFor(t, "the faucet to fund the vault a crash left unfunded", func() bool {
		ob, err1 := c.BalanceAt(ctx, owner, nil)
		kb, err2 := c.BalanceAt(ctx, key, nil)
		return err1 == nil && err2 == nil && ob.Sign() > 0 && kb.Sign() > 0
	})
	// And once only: a restart does not fund it again.
	ob, _ := c.BalanceAt(ctx, owner, nil)
	if err := p.stop(syscall.SIGTERM, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	p = startProc(t, data, devArgs...)
	_, c = procChain(t, p)
	waitBlock(t, c, func() uint64 { h, _ := c.BlockNumber(ctx); return h + 2 }())
	if again, _ := c.BalanceAt(ctx, owner, nil); again.Cmp(ob) != 0 {
		t.Fatalf("the owner's balance went from %s to %s across a restart", ob, again)
	}
}

// TestDevChainHaltsOnAFullDisk: when the disk fills, the dev chain stops
// making blocks and says so (the node stays up, /readyz is 503
// storage_full and names the chain); once there is room it makes blocks
// again by itself.
func TestDevChainHaltsOnAFullDisk(t *testing.T) {
	data := tmpfstest.Mount(t, "512m")
	p := startProc(t, data, devArgs...)
	_, c := procChain(t, p)
	ctx := context.Background()
	head, _ := c.BlockNumber(ctx)
	waitBlock(t, c, head+1)
	filler := fill(t, data)
	p.waitLog(`dev chain halted`, 10*time.Second)
	code, body := p.readyz(t)
	if code != http.StatusServiceUnavailable || body["status"] != "storage_full" || body["dev_chain"] == nil {
		t.Fatalf("/readyz with the dev chain's disk full: %d %v", code, body)
	}
	stopped, _ := c.BlockNumber(ctx)
	// Three block intervals: no block, and the node still up.
	deadline := time.Now().Add(3 * time.Second)
	for time.Now().Before(deadline) {
		if h, _ := c.BlockNumber(ctx); h > stopped+1 { // one may have been sealed as the disk filled
			t.Fatalf("the dev chain made blocks %d..%d on a full disk", stopped, h)
		}
		select {
		case <-p.exited:
			t.Fatalf("the node exited on a full disk: %v\n%s", p.err, p.log())
		case <-time.After(200 * time.Millisecond):
		}
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	p.waitLog(`dev chain: its disk has room again`, 10*time.Second)
	waitBlock(t, c, stopped+3)
	waitFor(t, "the node to be ready again", func() bool { code, _ := p.readyz(t); return code == http.StatusOK })
	w, _ := client.NewWallet()
	p.signIn(t, w) // a vault is created: the disk takes writes again
	if err := p.stop(syscall.SIGTERM, 20*time.Second); err != nil {
		t.Fatalf("exit after SIGTERM: %v", err)
	}
}

// TestStartOnAFullDisk: a node started on a full disk says so in its log
// within a second, answers /healthz and /readyz (503, naming what it
// waits for) meanwhile, and once there is room it finishes its start by
// itself, its vaults whole.
func TestStartOnAFullDisk(t *testing.T) {
	data := tmpfstest.Mount(t, "512m")
	p := startProc(t, data, devArgs...)
	w, _ := client.NewWallet()
	p.signIn(t, w)
	if err := p.stop(syscall.SIGTERM, 20*time.Second); err != nil {
		t.Fatal(err)
	}
	filler := fill(t, data)
	began := time.Now()
	p = launchProc(t, data, nil, devArgs...)
	p.waitLog(`takes no writes`, 5*time.Second)
	p.waitLog(`dev chain: its disk is full`, 5*time.Second)
	if took := time.Since(began); took > 3*time.Second {
		t.Errorf("the full disk was told after %s", took)
	}
	resp, err := http.Get("http://" + p.addr + "/healthz")
	if err != nil {
		t.Fatalf("/healthz while starting on a full disk: %v", err)
	}
	health, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(health), "disk") {
		t.Fatalf("/healthz while starting on a full disk: %d %q", resp.StatusCode, health)
	}
	code, body := p.readyz(t)
	if code != http.StatusServiceUnavailable || body["status"] != "starting" || !strings.Contains(fmt.Sprint(body["waiting_for"]), "disk") {
		t.Fatalf("/readyz while starting on a full disk: %d %v", code, body)
	}
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	p.waitLog(`open the dashboard at http://localhost:(\d+)/`, 60*time.Second)
	waitFor(t, "the node to be ready", func() bool { code, _ := p.readyz(t); return code == http.StatusOK })
	if s := p.signIn(t, w); s.mirror.Account.SessionKey == "" {
		t.Fatal("the vault lost its session key")
	}
}
