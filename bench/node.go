package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
)

// node is the Spells node under test, reached over HTTP and WebSockets.
type node struct {
	base  string // http://host:port
	debug string // the node's -debug-listen base URL, or empty
	token string // signal ingest token
	http  *http.Client
	poll  time.Duration // pause between counter reads in waitMetricMarks
}

func newNode(base, token string) *node {
	base = strings.TrimRight(base, "/")
	return &node{base: base, token: token, http: &http.Client{Timeout: 30 * time.Second}, poll: 5 * time.Millisecond}
}

// waitReady waits until the node's /readyz answers 200.
func (n *node) waitReady(ctx context.Context, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for time.Now().Before(deadline) {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, n.base+"/readyz", nil)
		if err != nil {
			return err
		}
		if resp, err := n.http.Do(req); err == nil {
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return nil
			}
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
	return fmt.Errorf("the node was not ready within %s", limit)
}

func (n *node) wsURL() string { return "ws" + strings.TrimPrefix(n.base, "http") + "/v1/ws" }

// tick is one value for POST /v1/signals.
type tick struct {
	Name  string  `json:"name"`
	Value float64 `json:"value"`
	At    int64   `json:"at"`
}

// publish posts signals; their At is the publish time the latency is
// measured from.
func (n *node) publish(ctx context.Context, sigs ...tick) error {
	body, _ := json.Marshal(map[string]any{"signals": sigs})
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.base+"/v1/signals", bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+n.token)
	resp, err := n.http.Do(req)
	if err != nil {
		return fmt.Errorf("publish: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		b, _ := io.ReadAll(resp.Body)
		return fmt.Errorf("publish: HTTP %d: %s", resp.StatusCode, b)
	}
	return nil
}

// metrics reads the node's /metrics: each sample's value by metric name
// (labelled samples are summed).
func (n *node) metrics(ctx context.Context) (map[string]float64, error) {
	return n.readMetrics(ctx, n.base+"/metrics")
}

// counters reads the node's own metrics (no process or Go runtime ones),
// for polling while a tick is timed: from the debug listener's
// /debug/metrics when the bench knows it, which costs the node about a
// quarter of a /metrics read, else from /metrics.
func (n *node) counters(ctx context.Context) (map[string]float64, error) {
	if n.debug == "" {
		return n.metrics(ctx)
	}
	return n.readMetrics(ctx, n.debug+"/debug/metrics")
}

func (n *node) readMetrics(ctx context.Context, url string) (map[string]float64, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	resp, err := n.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("metrics: %s: HTTP %d", url, resp.StatusCode)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(resp.Body)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	out := map[string]float64{}
	for name, f := range fams {
		for _, m := range f.GetMetric() {
			switch {
			case m.GetCounter() != nil:
				out[name] += m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				out[name] += m.GetGauge().GetValue()
			}
		}
	}
	return out, nil
}

// usage is the node's process metrics at one moment.
type usage struct {
	rss, cpu float64
	heap     float64 // live Go heap (after a collection when the debug listener is known)
	at       time.Time
	all      map[string]float64
}

func (n *node) usage(ctx context.Context) (usage, error) {
	m, err := n.metrics(ctx)
	if err != nil {
		return usage{}, err
	}
	return usage{rss: m["process_resident_memory_bytes"], cpu: m["process_cpu_seconds_total"],
		heap: m["go_memstats_heap_alloc_bytes"], at: time.Now(), all: m}, nil
}

// collected is usage right after a garbage collection on the node, forced
// through its pprof listener (a heap profile with gc=1), so the heap
// figure holds live objects only. Without the listener it is plain usage.
func (n *node) collected(ctx context.Context) (usage, error) {
	if n.debug != "" {
		req, err := http.NewRequestWithContext(ctx, http.MethodGet, n.debug+"/debug/pprof/heap?gc=1", nil)
		if err != nil {
			return usage{}, err
		}
		resp, err := n.http.Do(req)
		if err != nil {
			return usage{}, fmt.Errorf("force a collection: %w", err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	return n.usage(ctx)
}

// addUsage reports the node's CPU and memory between two readings.
func (r *Report) addUsage(a, b usage) {
	r.set("node_rss_mib", b.rss/(1<<20))
	r.set("node_rss_delta_mib", (b.rss-a.rss)/(1<<20))
	if d := b.at.Sub(a.at).Seconds(); d > 0 {
		r.set("node_cpu_cores", (b.cpu-a.cpu)/d)
	}
}
