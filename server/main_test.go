package main

import (
	"bufio"
	"os"
	"os/exec"
	"regexp"
	"syscall"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// TestMain doubles as the daemon: with SPELLS_TEST_RUN_MAIN=1 the test
// binary runs main(), so TestMainProcess can drive a real process.
// Otherwise it runs the tests and checks that none leaked a goroutine.
func TestMain(m *testing.M) {
	if os.Getenv("SPELLS_TEST_RUN_MAIN") == "1" {
		main()
		os.Exit(0)
	}
	goleak.VerifyTestMain(m,
		// chromedp's allocator and the HTTP client's idle connections end
		// asynchronously after the tests that use them.
		goleak.IgnoreAnyFunction("github.com/chromedp/chromedp.(*ExecAllocator).Allocate.func3"),
		// go-ethereum starts the first once per process, with the first
		// chain; the second (its in-memory node database's) outlives a
		// closed dev chain.
		goleak.IgnoreTopFunction("github.com/ethereum/go-ethereum/core.(*txSenderCacher).cache"),
		goleak.IgnoreTopFunction("github.com/syndtr/goleveldb/leveldb.(*DB).mpoolDrain"),
		goleak.IgnoreAnyFunction("net/http.(*persistConn).readLoop"),
		goleak.IgnoreAnyFunction("net/http.(*persistConn).writeLoop"),
	)
}

// TestMainProcess runs the daemon as a process: it logs where the
// dashboard is, serves, and on SIGINT shuts down and exits 0.
func TestMainProcess(t *testing.T) {
	cmd := exec.Command(os.Args[0], "-listen", "127.0.0.1:0", "-data", t.TempDir(), "-log-format", "json", "-dev-chain-rpc", "127.0.0.1:0")
	cmd.Env = append(os.Environ(), "SPELLS_TEST_RUN_MAIN=1", "SPELLS_DEMO=false")
	stderr, err := cmd.StderrPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stderr)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	ready := regexp.MustCompile(`open the dashboard at (http://localhost:\d+/)`)
	var url string
	for url == "" {
		select {
		case l, ok := <-lines:
			if !ok {
				t.Fatal("daemon exited before it was ready")
			}
			if m := ready.FindStringSubmatch(l); m != nil {
				url = m[1]
			}
		case <-time.After(20 * time.Second):
			t.Fatal("no 'open the dashboard at' line within 20s")
		}
	}
	if err := cmd.Process.Signal(syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	sawStopped := false
	for l := range lines {
		if regexp.MustCompile(`"message":"stopped"`).MatchString(l) {
			sawStopped = true
		}
	}
	if err := cmd.Wait(); err != nil {
		t.Fatalf("daemon exit after SIGINT: %v", err)
	}
	if !sawStopped {
		t.Fatal("no 'stopped' log line after SIGINT")
	}
}
