package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
)

// A node serves HTTP from the moment it listens: while its parts start
// (a dev chain waiting for disk space, a long restore, the vault index),
// /healthz and /readyz answer 503 with what it waits for, and everything
// else 503 starting. Once built, the full routes serve.

// serveHTTP is the node's HTTP handler: its routes once built, the
// starting answers before.
func (n *daemon) serveHTTP(w http.ResponseWriter, r *http.Request) {
	if h := n.routesReady.Load(); h != nil {
		(*h).ServeHTTP(w, r)
		return
	}
	why := "starting"
	if p := n.startWait.Load(); p != nil {
		why = *p
	}
	switch r.URL.Path {
	case "/healthz":
		// Alive, not serving yet: a script that waits for the node to
		// serve waits on, and the body says what for.
		w.WriteHeader(http.StatusServiceUnavailable)
		fmt.Fprintln(w, "starting: waiting for "+why)
	case "/readyz":
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusServiceUnavailable)
		_ = json.NewEncoder(w).Encode(map[string]any{"status": "starting", "waiting_for": why, "node": n.opts.Node})
	default:
		w.Header().Set("Retry-After", "5")
		n.httpError(w, r, http.StatusServiceUnavailable, "starting", "the node is starting ("+why+"): retry shortly")
	}
}

// waiting records what the start waits on, for /readyz.
func (n *daemon) waiting(why string) { n.startWait.Store(&why) }

// probeDisk writes and syncs a small file in dir: an error means the disk
// takes no writes (full, or read-only).
func probeDisk(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	p := filepath.Join(dir, ".start-probe")
	f, err := os.OpenFile(p, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	_, err = f.Write(make([]byte, 64<<10))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	os.Remove(p)
	return err
}
