package s3test

import (
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// Server is a running weed mini.
type Server struct {
	// URL is its S3 endpoint, http://127.0.0.1:PORT.
	URL    string
	cmd    *exec.Cmd
	exited chan struct{} // closed when cmd has ended
	dir    string
	log    string
}

// Binary returns the weed to run, or skips (fails, under
// SPELLS_REQUIRE_S3=1) when there is none.
func Binary(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("SPELLS_WEED"); p != "" {
		return p
	}
	if p, err := exec.LookPath("weed"); err == nil {
		return p
	}
	msg := "no S3 server: set SPELLS_WEED to SeaweedFS's weed (.ci/run builds it) or put weed on the PATH"
	if os.Getenv("SPELLS_REQUIRE_S3") == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// freePort returns a loopback port free now whose +10000 (weed's gRPC
// port for it) is free too.
func freePort(t testing.TB) int {
	t.Helper()
	for i := 0; i < 100; i++ {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		p := l.Addr().(*net.TCPAddr).Port
		l.Close()
		if p+10000 > 65535 {
			continue
		}
		g, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p+10000))
		if err != nil {
			continue
		}
		g.Close()
		return p
	}
	t.Fatal("no free port pair")
	return 0
}

// Start runs weed mini, waits until its S3 endpoint answers, and stops it
// when the test ends.
// Its ports are picked free before it starts, so another process may
// take one meanwhile: then it starts again on others.
func Start(t testing.TB) *Server {
	t.Helper()
	s := &Server{dir: t.TempDir()}
	t.Cleanup(s.stop)
	bin := Binary(t)
	for attempt := 0; ; attempt++ {
		err := s.start(t, bin, freePort(t))
		if err == nil {
			return s
		}
		if attempt == 2 {
			t.Fatal(err)
		}
		s.stop()
		os.RemoveAll(filepath.Join(s.dir, "data"))
	}
}

// start runs weed on port s3; an error if it ends or does not answer.
func (s *Server) start(t testing.TB, bin string, s3 int) error {
	t.Helper()
	s.log = filepath.Join(s.dir, "weed.log")
	logf, err := os.OpenFile(s.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	port := func() string { return strconv.Itoa(freePort(t)) }
	s.cmd = exec.Command(bin, "mini", "-dir", filepath.Join(s.dir, "data"), "-ip", "127.0.0.1", "-ip.bind", "127.0.0.1",
		"-master.port", port(), "-volume.port", port(), "-filer.port", port(), "-s3.port", strconv.Itoa(s3), "-admin.port", port(),
		"-admin.port.legacy", "0", "-s3.port.iceberg", "0", "-s3.port.lance", "0", "-webdav=false", "-master.telemetry=false")
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := s.cmd.Start(); err != nil {
		logf.Close()
		t.Fatalf("start weed: %v", err)
	}
	logf.Close()
	exited := make(chan struct{})
	s.exited = exited
	go func(cmd *exec.Cmd) { cmd.Wait(); close(exited) }(s.cmd) // waited for by stop
	s.URL = fmt.Sprintf("http://127.0.0.1:%d", s3)
	deadline := time.Now().Add(60 * time.Second)
	for {
		resp, err := http.Get(s.URL + "/")
		if err == nil {
			resp.Body.Close()
			return nil
		}
		select {
		case <-exited:
			b, _ := os.ReadFile(s.log)
			return fmt.Errorf("weed ended before its S3 answered on %s:\n%s", s.URL, b)
		default:
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(s.log)
			return fmt.Errorf("weed's S3 did not answer on %s within 60s: %v\n%s", s.URL, err, b)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func (s *Server) stop() {
	if s.cmd == nil || s.cmd.Process == nil {
		return
	}
	s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.exited:
	case <-time.After(10 * time.Second):
		s.cmd.Process.Kill()
		<-s.exited
	}
	s.cmd = nil
}

// Stop stops the server (the object store goes down); Restart starts it
// again on the same port and data.
func (s *Server) Stop() { s.stop() }

// Restart starts a stopped server again, on the same port and data.
func (s *Server) Restart(t testing.TB) {
	t.Helper()
	port, _ := strconv.Atoi(s.URL[len("http://127.0.0.1:"):])
	if err := s.start(t, Binary(t), port); err != nil {
		t.Fatal(err)
	}
}
