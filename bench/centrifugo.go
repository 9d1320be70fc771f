package main

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/coder/websocket"
)

// centrifugo is a Centrifugo (v6) server the bench starts and stops
// itself, configured as a deployment would: connections authenticated by
// an HS256 JWT, one channel clients may subscribe to, the HTTP API behind
// a key.
type centrifugo struct {
	cmd    *exec.Cmd
	dir    string
	base   string // http://127.0.0.1:port
	secret []byte
	apiKey string
	http   *http.Client
	exited chan struct{}
}

const centrifugoChannel = "prices"

// startCentrifugo runs bin on a free loopback port (under taskset -c cpus
// when cpus is set) and waits for its health endpoint.
func startCentrifugo(ctx context.Context, bin, cpus string) (*centrifugo, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	dir, err := os.MkdirTemp("", "bench-centrifugo-")
	if err != nil {
		return nil, err
	}
	cf := &centrifugo{dir: dir, base: fmt.Sprintf("http://127.0.0.1:%d", port), secret: []byte(randomHex(32)),
		apiKey: randomHex(16), http: &http.Client{Timeout: 30 * time.Second}, exited: make(chan struct{})}
	cfg := map[string]any{
		"http_server": map[string]any{"address": "127.0.0.1", "port": port},
		"log":         map[string]any{"level": "error"},
		"client": map[string]any{"token": map[string]any{"hmac_secret_key": string(cf.secret)},
			"allowed_origins": []string{"*"}},
		"channel":     map[string]any{"without_namespace": map[string]any{"allow_subscribe_for_client": true}},
		"http_api":    map[string]any{"key": cf.apiKey},
		"health":      map[string]any{"enabled": true},
		"usage_stats": map[string]any{"disabled": true},
	}
	b, _ := json.Marshal(cfg)
	cfgPath := filepath.Join(dir, "config.json")
	if err := os.WriteFile(cfgPath, b, 0o600); err != nil {
		return nil, err
	}
	args := []string{bin, "--config", cfgPath}
	if cpus != "" {
		args = append([]string{"taskset", "-c", cpus}, args...)
	}
	cf.cmd = exec.Command(args[0], args[1:]...)
	cf.cmd.Dir = dir
	logf, err := os.Create(filepath.Join(dir, "centrifugo.log"))
	if err != nil {
		return nil, err
	}
	cf.cmd.Stdout, cf.cmd.Stderr = logf, logf
	if err := cf.cmd.Start(); err != nil {
		logf.Close()
		os.RemoveAll(dir)
		return nil, fmt.Errorf("start centrifugo: %w", err)
	}
	go func() {
		cf.cmd.Wait()
		logf.Close()
		close(cf.exited)
	}()
	for deadline := time.Now().Add(30 * time.Second); ; {
		req, _ := http.NewRequestWithContext(ctx, http.MethodGet, cf.base+"/health", nil)
		if resp, err := cf.http.Do(req); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return cf, nil
			}
		}
		select {
		case <-cf.exited:
			log, _ := os.ReadFile(filepath.Join(dir, "centrifugo.log"))
			os.RemoveAll(dir)
			return nil, fmt.Errorf("centrifugo exited at its start: %s", bytes.TrimSpace(log))
		case <-ctx.Done():
			cf.stop()
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			cf.stop()
			return nil, errors.New("centrifugo was not healthy within 30s")
		}
	}
}

// stop ends the process and removes its directory.
func (cf *centrifugo) stop() {
	cf.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-cf.exited:
	case <-time.After(10 * time.Second):
		cf.cmd.Process.Kill()
		<-cf.exited
	}
	os.RemoveAll(cf.dir)
}

// usage is the process's CPU seconds and resident bytes, from /proc.
// Under taskset the process is taskset's child's exec: the same pid.
func (cf *centrifugo) usage() (cpu, rss float64, err error) {
	return procUsage(cf.cmd.Process.Pid)
}

// procUsage reads a process's user+system CPU seconds and resident bytes.
func procUsage(pid int) (cpu, rss float64, err error) {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	// Fields after the command's closing parenthesis: state is field 3,
	// utime 14, stime 15, rss (pages) 24.
	i := bytes.LastIndexByte(stat, ')')
	if i < 0 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	f := strings.Fields(string(stat[i+1:]))
	if len(f) < 22 {
		return 0, 0, fmt.Errorf("/proc/%d/stat: unexpected format", pid)
	}
	num := func(s string) float64 { v, _ := strconv.ParseFloat(s, 64); return v }
	const ticks = 100 // USER_HZ on Linux
	return (num(f[11]) + num(f[12])) / ticks, num(f[21]) * float64(os.Getpagesize()), nil
}

// token is a connection JWT (HS256) for user.
func (cf *centrifugo) token(user string) string {
	enc := base64.RawURLEncoding
	head := enc.EncodeToString([]byte(`{"alg":"HS256","typ":"JWT"}`))
	claims, _ := json.Marshal(map[string]any{"sub": user, "exp": time.Now().Add(24 * time.Hour).Unix()})
	signing := head + "." + enc.EncodeToString(claims)
	mac := hmac.New(sha256.New, cf.secret)
	mac.Write([]byte(signing))
	return signing + "." + enc.EncodeToString(mac.Sum(nil))
}

// publish sends one value to the channel through the HTTP API, in a
// payload shaped like Spells' signal frame.
func (cf *centrifugo) publish(ctx context.Context, value float64) error {
	body, _ := json.Marshal(map[string]any{"channel": centrifugoChannel,
		"data": map[string]any{"type": "signal", "name": "PEER/USD", "value": value, "at": time.Now().UnixMilli()}})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, cf.base+"/api/publish", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-API-Key", cf.apiKey)
	resp, err := cf.http.Do(req)
	if err != nil {
		return fmt.Errorf("centrifugo publish: %w", err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusOK || bytes.Contains(b, []byte(`"error"`)) {
		return fmt.Errorf("centrifugo publish: HTTP %d: %s", resp.StatusCode, b)
	}
	return nil
}

// centrifugoConn is one client on Centrifugo's JSON protocol, connected
// and subscribed to the channel.
type centrifugoConn struct {
	ws *websocket.Conn
}

// centrifugoReply is the part of a Centrifugo reply or push the bench
// reads.
type centrifugoReply struct {
	ID    uint32 `json:"id"`
	Error *struct {
		Code    int    `json:"code"`
		Message string `json:"message"`
	} `json:"error"`
	Push *struct {
		Channel string `json:"channel"`
		Pub     *struct {
			Data struct {
				Value float64 `json:"value"`
			} `json:"data"`
		} `json:"pub"`
	} `json:"push"`
}

// dial connects user with its token and subscribes to the channel.
func (cf *centrifugo) dial(ctx context.Context, user string) (*centrifugoConn, error) {
	ws, _, err := websocket.Dial(ctx, "ws"+strings.TrimPrefix(cf.base, "http")+"/connection/websocket", nil)
	if err != nil {
		return nil, err
	}
	ws.SetReadLimit(1 << 20)
	c := &centrifugoConn{ws: ws}
	for id, cmd := range []map[string]any{
		{"connect": map[string]any{"token": cf.token(user), "name": "bench"}},
		{"subscribe": map[string]any{"channel": centrifugoChannel}},
	} {
		cmd["id"] = id + 1
		b, _ := json.Marshal(cmd)
		if err := ws.Write(ctx, websocket.MessageText, b); err != nil {
			ws.CloseNow()
			return nil, err
		}
		if err := c.await(ctx, uint32(id+1)); err != nil {
			ws.CloseNow()
			return nil, err
		}
	}
	return c, nil
}

// await reads until the reply with id.
func (c *centrifugoConn) await(ctx context.Context, id uint32) error {
	for {
		_, b, err := c.ws.Read(ctx)
		if err != nil {
			return err
		}
		for _, line := range bytes.Split(b, []byte("\n")) {
			var r centrifugoReply
			if len(bytes.TrimSpace(line)) == 0 || json.Unmarshal(line, &r) != nil || r.ID != id {
				continue
			}
			if r.Error != nil {
				return fmt.Errorf("centrifugo: %d %s", r.Error.Code, r.Error.Message)
			}
			return nil
		}
	}
}

// read calls got for each publication until ctx ends, answering the
// server's pings ({}) with pongs.
func (c *centrifugoConn) read(ctx context.Context, got func(value float64, at time.Time)) {
	for {
		_, b, err := c.ws.Read(ctx)
		if err != nil {
			return
		}
		now := time.Now()
		for _, line := range bytes.Split(b, []byte("\n")) {
			line = bytes.TrimSpace(line)
			if len(line) == 0 {
				continue
			}
			if bytes.Equal(line, []byte("{}")) {
				_ = c.ws.Write(ctx, websocket.MessageText, []byte("{}"))
				continue
			}
			var r centrifugoReply
			if json.Unmarshal(line, &r) == nil && r.Push != nil && r.Push.Pub != nil {
				got(r.Push.Pub.Data.Value, now)
			}
		}
	}
}

// randomHex is n random bytes in hex.
func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
