package gethtest

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/rpc"
)

// DevKey is the account geth --dev funds on a fresh data directory.
var DevKey, _ = crypto.HexToECDSA("b71c71a67e1177ad4e901695e1b4b9ee17ae16c6668d313eac2f96dbcda3f291")

// ChainID is geth --dev's chain id.
const ChainID = 1337

// Node is a running geth --dev.
type Node struct {
	URL string // its HTTP JSON-RPC endpoint on loopback
	cmd *exec.Cmd
}

// Binary returns the geth to run, or skips (fails, under
// SPELLS_REQUIRE_GETH=1) when there is none.
func Binary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("SPELLS_GETH"); p != "" {
		return p
	}
	if p, err := exec.LookPath("geth"); err == nil {
		return p
	}
	msg := "no geth: set SPELLS_GETH or put geth on the PATH (go install github.com/ethereum/go-ethereum/cmd/geth@<go.mod's version>)"
	if os.Getenv("SPELLS_REQUIRE_GETH") == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Start runs geth --dev on free loopback ports with a data directory of
// its own (blocks as transactions arrive), waits until it answers, and
// stops it when the test ends. Its log is in the test's temp directory.
func Start(t testing.TB) *Node {
	t.Helper()
	bin := Binary(t)
	dir := t.TempDir()
	port := freePort(t)
	logf, err := os.Create(filepath.Join(dir, "geth.log"))
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "--dev", "--dev.gaslimit", "60000000", "--datadir", filepath.Join(dir, "data"),
		"--http", "--http.addr", "127.0.0.1", "--http.port", strconv.Itoa(port), "--http.api", "eth,net,web3",
		"--authrpc.addr", "127.0.0.1", "--authrpc.port", strconv.Itoa(freePort(t)),
		"--port", "0", "--nodiscover", "--maxpeers", "0", "--ipcdisable", "--verbosity", "2")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start geth: %v", err)
	}
	n := &Node{URL: fmt.Sprintf("http://127.0.0.1:%d", port), cmd: cmd}
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		logf.Close()
	})
	deadline := time.Now().Add(60 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		c, err := rpc.DialContext(ctx, n.URL)
		if err == nil {
			var id string
			err = c.CallContext(ctx, &id, "eth_chainId")
			c.Close()
		}
		cancel()
		if err == nil {
			return n
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(filepath.Join(dir, "geth.log"))
			t.Fatalf("geth did not answer on %s within 60s: %v\n%s", n.URL, err, b)
		}
		time.Sleep(100 * time.Millisecond)
	}
}
