package main

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/pprof"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// startDebug serves Go's pprof profiles on their own listener, kept apart
// from the public one so that profiles are never reachable from browsers
// or the internet by accident, and /debug/metrics: the node's own metrics
// without the process and Go runtime collectors, which a load generator
// can poll at a quarter of the CPU a /metrics read costs the node. It is
// off unless -debug-listen is set.
func (n *daemon) startDebug(addr string) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("debug listen: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	// The node's own counters without the process and Go runtime
	// collectors: what the bench polls while it times a tick.
	mux.Handle("/debug/metrics", promhttp.HandlerFor(n.metricsReg, promhttp.HandlerOpts{}))
	n.debug = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	n.debugAddr.Store(ln.Addr().String())
	n.debugDone = make(chan struct{})
	go func() { // stopped and waited for by serve
		defer close(n.debugDone)
		if err := n.debug.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			n.log.Error().Err(err).Msg("debug server")
		}
	}()
	n.log.Info().Str("addr", ln.Addr().String()).Msg("pprof profiles served on http://" + ln.Addr().String() + "/debug/pprof/")
	return nil
}
