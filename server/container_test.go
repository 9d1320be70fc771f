package main

import (
	"bytes"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/protocol/client"
)

// podman runs a podman command and returns its output, failing the test
// if it fails.
func podman(t *testing.T, args ...string) string {
	t.Helper()
	var out bytes.Buffer
	cmd := exec.Command("podman", args...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		t.Fatalf("podman %s: %v\n%s", strings.Join(args, " "), err, out.String())
	}
	return strings.TrimSpace(out.String())
}

// copyFile copies the repository file rel (relative to its root) into dir.
func copyFile(t *testing.T, rel, dir string) {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", rel))
	if err != nil {
		t.Fatal(err)
	}
	dst := filepath.Join(dir, rel)
	if err := os.MkdirAll(filepath.Dir(dst), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dst, b, 0o644); err != nil {
		t.Fatal(err)
	}
}

func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// TestContainerImage builds the image the way README says (the static
// binary, then the Dockerfile with its .dockerignore), runs it with podman
// on a mapped port and a volume, signs in, stops it with SIGTERM (exit 0),
// starts it again and finds the vault as it was. A node that is not told
// the public domain refuses the sign-in with a message naming the setting.
// It needs podman and runc; without them it is skipped, unless
// SPELLS_REQUIRE_CONTAINER=1 (set by .ci/run, which installs them).
func TestContainerImage(t *testing.T) {
	if _, err := exec.LookPath("podman"); err != nil {
		if os.Getenv("SPELLS_REQUIRE_CONTAINER") == "1" {
			t.Fatal("podman is required (SPELLS_REQUIRE_CONTAINER=1) but not installed")
		}
		t.Skip("podman not installed; apt-get install podman runc to run the image test")
	}
	ctxDir := t.TempDir()
	for _, f := range []string{"Dockerfile", ".dockerignore", "deploy/data/README.md"} {
		copyFile(t, f, ctxDir)
	}
	// Something the .dockerignore must keep out of the image.
	if err := os.MkdirAll(filepath.Join(ctxDir, "data"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(ctxDir, "data", "node.key"), []byte("secret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	build := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", filepath.Join(ctxDir, "spells"), ".")
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build the static binary: %v\n%s", err, out)
	}
	image := fmt.Sprintf("localhost/spells-test:%d", time.Now().UnixNano())
	podman(t, "build", "-q", "-t", image, ctxDir)
	t.Cleanup(func() { exec.Command("podman", "rmi", "-f", image).Run() })
	files := podman(t, "image", "inspect", image, "--format", "{{.Config.User}} {{.Config.Volumes}}")
	if !strings.HasPrefix(files, "65532") || !strings.Contains(files, "/data") {
		t.Fatalf("image user and volumes: %q, want 65532 and /data", files)
	}

	volume := fmt.Sprintf("spells-test-%d", time.Now().UnixNano())
	t.Cleanup(func() { exec.Command("podman", "volume", "rm", "-f", volume).Run() })
	run := func(name string, env ...string) (addr string) {
		t.Helper()
		port := freePort(t)
		args := []string{"run", "-d", "--name", name, "--runtime", "runc",
			"--ulimit", "nofile=4096:4096", "--ulimit", "nproc=4096:4096",
			"-p", fmt.Sprintf("127.0.0.1:%d:8080", port), "-v", volume + ":/data", "-e", "SPELLS_DEMO=false"}
		for _, e := range env {
			args = append(args, "-e", strings.ReplaceAll(e, "PORT", fmt.Sprint(port)))
		}
		podman(t, append(args, image)...)
		t.Cleanup(func() { exec.Command("podman", "rm", "-f", name).Run() })
		addr = fmt.Sprintf("127.0.0.1:%d", port)
		waitFor(t, "the container to be ready", func() bool {
			resp, err := http.Get("http://" + addr + "/readyz")
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == http.StatusOK
		})
		return addr
	}
	stop := func(name string) {
		t.Helper()
		podman(t, "stop", "-t", "20", name) // SIGTERM, then SIGKILL after 20 s
		if code := podman(t, "inspect", name, "--format", "{{.State.ExitCode}}"); code != "0" {
			t.Fatalf("the node exited with %s after SIGTERM; its log:\n%s", code, podman(t, "logs", name))
		}
	}
	signIn := func(addr string, w *client.Wallet) (*client.Conn, *client.Session, error) {
		c, err := client.Dial(ctxT(t), "ws://"+addr+"/v1/ws", nil)
		if err != nil {
			t.Fatal(err)
		}
		s, err := c.SignIn(ctxT(t), w, client.SignInParams{Domain: addr}, nil)
		return c, s, err
	}

	// The port is mapped elsewhere than the node listens: the browser's
	// domain is not one it serves, and the refusal says how to fix it.
	name := volume + "-a"
	addr := run(name)
	w, _ := client.NewWallet()
	c, _, err := signIn(addr, w)
	c.CloseNow()
	pe := protocol.AsError(err)
	if pe == nil || pe.Code != protocol.CodeSIWEDomain || !strings.Contains(pe.Message, "SPELLS_SIWE_DOMAINS") {
		t.Fatalf("sign-in on a mapped port without SPELLS_SIWE_DOMAINS: %v, want siwe_domain naming the setting", err)
	}
	stop(name)

	// Told the address the browser opens, the node logs it and accepts
	// sign-ins from it.
	name = volume + "-b"
	addr = run(name, "SPELLS_PUBLIC_URL=http://127.0.0.1:PORT/", "SPELLS_ALERTS_ALLOW_PRIVATE=true")
	if logs := podman(t, "logs", name); !strings.Contains(logs, "open the dashboard at http://"+addr+"/") {
		t.Fatalf("the ready log does not name the published address %s:\n%s", addr, logs)
	}
	c, s, err := signIn(addr, w)
	if err != nil {
		t.Fatalf("sign in to the container: %v", err)
	}
	// The image runs the dev chain: a swap would need a grant first, so
	// this trigger only notifies.
	spec := dip(2500)
	spec.Action = protocol.Action{Kind: "notify"}
	// Nothing listens on the container's own port 9: the alert stays
	// pending, retried, which is all this test needs of it.
	webhook := protocol.AlertsArgs{Webhook: &protocol.WebhookChannel{URL: "http://127.0.0.1:9/"}}
	if _, err := c.Command(ctxT(t), s, protocol.OpAlertsSet, webhook); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Command(ctxT(t), s, protocol.OpTriggerCreate, spec); err != nil {
		t.Fatal(err)
	}
	c.CloseNow()
	stop(name)
	podman(t, "start", name)
	waitFor(t, "the restarted container to be ready", func() bool {
		resp, err := http.Get("http://" + addr + "/readyz")
		if err != nil {
			return false
		}
		resp.Body.Close()
		return resp.StatusCode == http.StatusOK
	})
	c2, s2, err := signIn(addr, w)
	if err != nil {
		t.Fatalf("sign in after the restart: %v", err)
	}
	defer c2.CloseNow()
	ack, err := c2.Command(ctxT(t), s2, protocol.OpTriggerList, struct{}{})
	if err != nil || !strings.Contains(string(ack.Result), `"dip"`) {
		t.Fatalf("after a restart the vault lists %s (%v), want its trigger", ack.Result, err)
	}
	// What the image holds: the binary and the data folder's note, no
	// key or data from the build context.
	box := podman(t, "create", image)
	defer exec.Command("podman", "rm", "-f", box).Run()
	export := exec.Command("podman", "export", box)
	tarball, err := export.Output()
	if err != nil {
		t.Fatal(err)
	}
	list := exec.Command("tar", "-t")
	list.Stdin = bytes.NewReader(tarball)
	names, err := list.Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range strings.Fields(string(names)) {
		if strings.Contains(n, "node.key") {
			t.Fatalf("the image holds %s from the build context", n)
		}
	}
	if !strings.Contains(string(names), "spells") {
		t.Fatalf("the image lacks the binary: %s", names)
	}
}
