package main

import (
	"context"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/google/pprof/profile"
)

// A CPU profile of the node, split between what its embedded dev chain
// does (the EVM, state, mining, its JSON-RPC server answering the node's
// calls) and everything else: what the node would spend against a chain
// in another process.

// chainShare takes a CPU profile of the node over d (from its
// -debug-listen) and returns the share of its samples that are the dev
// chain's.
func chainShare(ctx context.Context, n *node, d time.Duration) (float64, error) {
	if n.debug == "" {
		return 0, fmt.Errorf("the node's -debug-listen address is needed (-debug)")
	}
	secs := max(1, int(d.Round(time.Second)/time.Second))
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, fmt.Sprintf("%s/debug/pprof/profile?seconds=%d", n.debug, secs), nil)
	if err != nil {
		return 0, err
	}
	c := &http.Client{Timeout: time.Duration(secs)*time.Second + 30*time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return 0, fmt.Errorf("cpu profile: %w", err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("cpu profile: HTTP %d", resp.StatusCode)
	}
	p, err := profile.Parse(resp.Body)
	if err != nil {
		return 0, fmt.Errorf("cpu profile: %w", err)
	}
	idx := -1
	for i, st := range p.SampleType {
		if st.Type == "cpu" {
			idx = i
		}
	}
	if idx < 0 {
		return 0, fmt.Errorf("cpu profile: no cpu samples")
	}
	var all, chain int64
	for _, s := range p.Sample {
		v := s.Value[idx]
		all += v
		if chainSample(s) {
			chain += v
		}
	}
	if all == 0 {
		return 0, nil
	}
	return float64(chain) / float64(all), nil
}

// chainSample: a sample whose stack runs through the dev chain's own
// machinery. go-ethereum's types, crypto, ABI and RPC client are the
// node's too (it signs, encodes and asks), so they count as the chain's
// only beneath one of these.
func chainSample(s *profile.Sample) bool {
	for _, loc := range s.Location {
		for _, line := range loc.Line {
			if line.Function != nil && chainFunc(line.Function.Name) {
				return true
			}
		}
	}
	return false
}

func chainFunc(name string) bool {
	const geth = "github.com/ethereum/go-ethereum/"
	rest, ok := strings.CutPrefix(name, geth)
	if !ok {
		return false
	}
	for _, pkg := range []string{"core.", "core/vm", "core/state", "core/txpool", "core/rawdb", "core/tracing", "eth.", "eth/",
		"miner", "consensus", "trie", "triedb", "ethdb", "internal/ethapi", "beacon", "node.", "params"} {
		if strings.HasPrefix(rest, pkg) {
			return true
		}
	}
	// The RPC server's side of a call (the client's side is the node's).
	return strings.HasPrefix(rest, "rpc.(*handler)") || strings.HasPrefix(rest, "rpc.(*callback)") ||
		strings.HasPrefix(rest, "rpc.(*serviceRegistry)") || strings.HasPrefix(rest, "rpc.(*Server)")
}
