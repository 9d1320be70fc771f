package main

import (
	"crypto/rand"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/spells-dev/spells/hub"
	"github.com/spells-dev/spells/vault"
	"github.com/spells-dev/spells/vault/notify"
)

// What a running node is made of, and the small things every part of it
// uses: its logger, its key, its limits, its errors over HTTP.

// daemon is a running Spells node (the process go run ./server starts):
// its parts and its HTTP server.
type daemon struct {
	opts  Options
	log   zerolog.Logger
	ln    net.Listener
	push  *notify.VAPID // the node's Web Push identity (data/push.key)
	http  *http.Server
	debug *http.Server // pprof; nil unless -debug-listen
	// debugDone is closed when the debug server's goroutine has ended.
	debugDone chan struct{}
	// debugAddr is the debug listener's address (host:port, a string)
	// once it listens; serve starts it.
	debugAddr atomic.Value
	bus       nodeBus
	history   *historySaver
	mgr       *vault.Manager
	hub       *hub.Hub
	demo      *demoFeed
	feeds     *feedWatcher
	reads     *readWatcher // the chain reads the vaults wait on (nil without a chain)
	logs      *logWatcher  // the logs of the event conditions the vaults wait on (nil without a chain)
	readCount *prometheus.CounterVec
	mover     *mover       // the move signals the vaults wait on
	backup    *backupParts // nil without -backup
	journal   *signalJournal
	chain     *nodeChain
	cluster   *clusterParts // nil: a single node
	secret    []byte        // the cluster secret (-redis)
	ready     atomic.Bool
	// routesReady is the node's routes (routesBuilt) once it serves; startWait what
	// its start waits on (starting.go serves both before that); served
	// gets what the HTTP server's Serve returned.
	routesBuilt http.Handler
	routesReady atomic.Pointer[http.Handler]
	startWait   atomic.Pointer[string]
	served      chan error
	startFull   error // the data directory took no write at start

	hubMetrics *hub.Metrics
	metricsReg *prometheus.Registry // the node's own metrics (see build)
}

// bearer checks the request's bearer token against want, answering 401
// when it is missing or wrong.
func (n *daemon) bearer(w http.ResponseWriter, r *http.Request, want string) bool {
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || subtle.ConstantTimeCompare([]byte(token), []byte(want)) != 1 {
		n.httpError(w, r, http.StatusUnauthorized, "unauthorized", "missing or wrong bearer token")
		return false
	}
	return true
}

func (n *daemon) httpError(w http.ResponseWriter, r *http.Request, status int, code, msg string) {
	n.log.Info().Str("path", r.URL.Path).Int("status", status).Str("code", code).Str("remote", r.RemoteAddr).Msg(msg)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": code, "message": msg}})
}

// setProcs raises GOMAXPROCS to perCPU times what the runtime chose (the
// CPUs it may use), unless the GOMAXPROCS variable set it, and returns the
// setting. SQLite (modernc, no cgo) writes and syncs vault files with
// blocking system calls, and a goroutine in one holds its processor until
// the runtime hands the processor on, so more processors than cores let
// other vaults run meanwhile: wake-ups and firings end sooner, and the
// live price's tail is slower (DECISIONS.md has the trade).
func setProcs(perCPU int, fromEnv bool) int {
	n := runtime.GOMAXPROCS(0)
	if fromEnv || perCPU <= 1 {
		return n
	}
	runtime.GOMAXPROCS(perCPU * n)
	return perCPU * n
}

// orNoLimit maps a limit flag's 0 ("no limit") to the hub's -1 (its 0
// means "the default").
func orNoLimit[T int | float64](v T) T {
	if v == 0 {
		return -1
	}
	return v
}

func (n *daemon) dashboardURL() string {
	if n.opts.PublicURL != "" {
		return n.opts.PublicURL
	}
	_, port, _ := net.SplitHostPort(n.ln.Addr().String())
	return "http://localhost:" + port + "/"
}

// pushContact is the contact push services are given with each push
// (RFC 8292): --push-contact, else the dashboard's https address, else the
// mail alerts' sender, else the dashboard's address.
func (n *daemon) pushContact() string {
	switch {
	case n.opts.PushContact != "":
		return n.opts.PushContact
	case strings.HasPrefix(n.dashboardURL(), "https://"):
		return n.dashboardURL()
	case n.opts.SMTPFrom != "":
		return "mailto:" + n.opts.SMTPFrom
	}
	return n.dashboardURL()
}

// connLimit is --max-connections, or what the descriptor limit leaves
// after the open vaults (3 descriptors each) and a spare 512.
func (n *daemon) connLimit() int {
	if n.opts.MaxConns > 0 {
		return n.opts.MaxConns
	}
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		n.log.Warn().Err(err).Msg("descriptor limit unknown; no connection limit")
		return 0
	}
	maxOpen := n.opts.MaxOpen
	if maxOpen <= 0 {
		maxOpen = vault.DefaultMaxOpen
	}
	limit := int(rl.Cur) - vault.FilesPerVault*maxOpen - 512
	if limit < 64 {
		limit = 64
	}
	n.log.Info().Uint64("descriptor_limit", rl.Cur).Int("max_open_vaults", maxOpen).Int("max_connections", limit).
		Msg("connection limit from the descriptor limit")
	return limit
}

// defaultDomains serves the dashboard as localhost, 127.0.0.1 or [::1] on
// the port the node listens on.
func defaultDomains(addr net.Addr) []string {
	_, port, _ := net.SplitHostPort(addr.String())
	return []string{"localhost:" + port, "127.0.0.1:" + port, "[::1]:" + port}
}

// nodeKey loads the node's secret (it keys sign-in nonces) from the data
// directory, creating it on first start.
func nodeKey(dir string) ([]byte, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("data dir: %w", err)
	}
	p := filepath.Join(dir, "node.key")
	if b, err := os.ReadFile(p); err == nil {
		key, err := hex.DecodeString(strings.TrimSpace(string(b)))
		if err != nil || len(key) != 32 {
			return nil, fmt.Errorf("node key %s is not 64 hex characters", p)
		}
		return key, nil
	} else if !os.IsNotExist(err) {
		return nil, fmt.Errorf("node key: %w", err)
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("node key: %w", err)
	}
	if err := os.WriteFile(p, []byte(hex.EncodeToString(key)+"\n"), 0o600); err != nil {
		return nil, fmt.Errorf("node key: %w", err)
	}
	return key, nil
}

func newLogger(o Options) zerolog.Logger {
	level, err := zerolog.ParseLevel(o.LogLevel)
	if err != nil || o.LogLevel == "" {
		level = zerolog.InfoLevel
	}
	var w io.Writer = os.Stderr
	if o.logOut != nil {
		w = o.logOut
	}
	out := zerolog.New(w)
	console := o.LogFormat == "console"
	if o.LogFormat == "auto" || o.LogFormat == "" {
		if fi, err := os.Stderr.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 && o.logOut == nil {
			console = true
		}
	}
	if console {
		out = zerolog.New(zerolog.ConsoleWriter{Out: w, TimeFormat: time.TimeOnly})
	}
	return out.Level(level).With().Timestamp().Logger()
}
