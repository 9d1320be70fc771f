package redistest

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// Server is a running redis-server.
type Server struct {
	t     testing.TB
	Addr  string // 127.0.0.1:port
	dir   string
	port  int
	cmd   *exec.Cmd
	extra []string // more redis-server arguments
}

func binary(t testing.TB) string {
	t.Helper()
	if p, err := exec.LookPath("redis-server"); err == nil {
		return p
	}
	msg := "no redis-server: apt-get install redis-server"
	if os.Getenv("SPELLS_REQUIRE_REDIS") == "1" {
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

// Start runs redis-server with no persistence on a free port and stops it
// when the test ends.
func Start(t testing.TB) *Server {
	t.Helper()
	s := &Server{t: t, dir: t.TempDir(), port: freePort(t)}
	s.Addr = "127.0.0.1:" + strconv.Itoa(s.port)
	s.start()
	t.Cleanup(s.Stop)
	return s
}

func (s *Server) start() {
	s.t.Helper()
	cmd := exec.Command(binary(s.t), "--port", strconv.Itoa(s.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
		"--dir", s.dir, "--logfile", filepath.Join(s.dir, "redis.log"))
	cmd.Args = append(cmd.Args, s.extra...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		s.t.Fatalf("start redis-server: %v", err)
	}
	s.cmd = cmd
	deadline := time.Now().Add(10 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", s.Addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(filepath.Join(s.dir, "redis.log"))
			s.t.Fatalf("redis-server did not listen on %s: %v\n%s", s.Addr, err, b)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// URL is the server's redis:// URL.
func (s *Server) URL() string { return fmt.Sprintf("redis://%s/0", s.Addr) }

// Stop kills the server (it keeps no data: a restart starts empty).
func (s *Server) Stop() {
	if s.cmd == nil {
		return
	}
	_ = s.cmd.Process.Kill()
	_ = s.cmd.Wait()
	s.cmd = nil
}

// Restart stops the server and starts a new, empty one on the same port.
func (s *Server) Restart() {
	s.t.Helper()
	s.Stop()
	s.start()
}

// Cluster is a Redis Cluster of redis-server processes, one master per
// shard and no replicas.
type Cluster struct {
	Servers []*Server
}

// StartCluster runs a Redis Cluster of shards masters on free ports, with
// the slots spread over them, and stops it when the test ends.
func StartCluster(t testing.TB, shards int) *Cluster {
	t.Helper()
	bin := binary(t)
	cli, err := exec.LookPath("redis-cli")
	if err != nil {
		t.Fatalf("no redis-cli beside %s: %v", bin, err)
	}
	c := &Cluster{}
	args := []string{"--cluster", "create"}
	for i := 0; i < shards; i++ {
		s := &Server{t: t, dir: t.TempDir(), port: freePort(t),
			extra: []string{"--cluster-enabled", "yes", "--cluster-config-file", "nodes.conf", "--cluster-node-timeout", "2000"}}
		s.Addr = "127.0.0.1:" + strconv.Itoa(s.port)
		s.start()
		t.Cleanup(s.Stop)
		c.Servers = append(c.Servers, s)
		args = append(args, s.Addr)
	}
	args = append(args, "--cluster-replicas", "0", "--cluster-yes")
	if out, err := exec.Command(cli, args...).CombinedOutput(); err != nil {
		t.Fatalf("redis-cli --cluster create: %v\n%s", err, out)
	}
	deadline := time.Now().Add(20 * time.Second)
	for _, s := range c.Servers {
		for {
			out, _ := exec.Command(cli, "-h", "127.0.0.1", "-p", strconv.Itoa(s.port), "cluster", "info").Output()
			if strings.Contains(string(out), "cluster_state:ok") {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("redis cluster not ok on %s:\n%s", s.Addr, out)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	return c
}

// URL names every shard, as cluster.Dial reads a Redis Cluster.
func (c *Cluster) URL() string {
	u := "redis://" + c.Servers[0].Addr
	for i, s := range c.Servers[1:] {
		if i == 0 {
			u += "?"
		} else {
			u += "&"
		}
		u += "addr=" + s.Addr
	}
	return u
}
