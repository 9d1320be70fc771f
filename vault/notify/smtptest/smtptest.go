package smtptest

import (
	"bytes"
	"net"
	"net/mail"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"testing"
	"time"
)

// Server is a running aiosmtpd.
type Server struct {
	Addr string // 127.0.0.1:port
	dir  string
	cmd  *exec.Cmd
}

// python finds a Python with aiosmtpd: Debian's own first (a python3
// earlier on the PATH may be another installation without it).
func python(t testing.TB) string {
	t.Helper()
	for _, p := range []string{"/usr/bin/python3", "python3"} {
		if path, err := exec.LookPath(p); err == nil && exec.Command(path, "-c", "import aiosmtpd").Run() == nil {
			return path
		}
	}
	msg := "no aiosmtpd: apt-get install python3-aiosmtpd"
	if os.Getenv("SPELLS_REQUIRE_SMTP") == "1" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}

// Start runs the server and stops it when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	py := python(t)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := l.Addr().(*net.TCPAddr).Port
	l.Close()
	s := &Server{Addr: "127.0.0.1:" + strconv.Itoa(port), dir: filepath.Join(t.TempDir(), "maildir")}
	s.cmd = exec.Command(py, "-m", "aiosmtpd", "-n", "-l", s.Addr, "-c", "aiosmtpd.handlers.Mailbox", s.dir)
	var out bytes.Buffer
	s.cmd.Stdout, s.cmd.Stderr = &out, &out
	if err := s.cmd.Start(); err != nil {
		t.Fatalf("start aiosmtpd: %v", err)
	}
	t.Cleanup(func() {
		_ = s.cmd.Process.Kill()
		_ = s.cmd.Wait()
	})
	deadline := time.Now().Add(15 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", s.Addr, time.Second)
		if err == nil {
			c.Close()
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("aiosmtpd did not listen on %s: %v\n%s", s.Addr, err, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// URL is the server as the node's --smtp takes it.
func (s *Server) URL() string { return "smtp://" + s.Addr }

// Message is one mail the server accepted.
type Message struct {
	Header mail.Header
	Body   string
	To     string // the envelope's recipient (X-RcptTo)
}

// Messages returns the mails accepted so far, oldest first.
func (s *Server) Messages(t testing.TB) []Message {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(s.dir, "new", "*"))
	// In the order they arrived: a Maildir name's microseconds are not
	// zero-padded, so names do not sort by time.
	at := map[string]int64{}
	for _, f := range files {
		if st, err := os.Stat(f); err == nil {
			at[f] = st.ModTime().UnixNano()
		}
	}
	sort.Slice(files, func(i, j int) bool {
		if at[files[i]] != at[files[j]] {
			return at[files[i]] < at[files[j]]
		}
		return files[i] < files[j]
	})
	var out []Message
	for _, f := range files {
		raw, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		m, err := mail.ReadMessage(bytes.NewReader(raw))
		if err != nil {
			t.Fatalf("a stored mail does not parse: %v", err)
		}
		var body bytes.Buffer
		_, _ = body.ReadFrom(m.Body)
		out = append(out, Message{Header: m.Header, Body: body.String(), To: m.Header.Get("X-RcptTo")})
	}
	return out
}

// Wait waits until the server holds at least n mails and returns them.
func (s *Server) Wait(t testing.TB, n int) []Message {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		if ms := s.Messages(t); len(ms) >= n {
			return ms
		}
		if time.Now().After(deadline) {
			t.Fatalf("the mail server holds %d mails after 15s; want %d", len(s.Messages(t)), n)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
