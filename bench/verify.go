package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"sync"
	"sync/atomic"

	"github.com/ethereum/go-ethereum/crypto"

	"github.com/spells-dev/spells/protocol/client"
)

type verifyParams struct {
	From string
}

// verify signs in to every vault saved by `commands -save` (typically after
// the node was restarted) and checks that each one is at the saved version:
// every acknowledged command survived, counted, not sampled.
func verify(ctx context.Context, n *node, p verifyParams) (*Report, error) {
	r := newReport("verify", map[string]any{"from": p.From})
	b, err := os.ReadFile(p.From)
	if err != nil {
		return nil, fmt.Errorf("verify: %w", err)
	}
	var saved savedVaults
	if err := json.Unmarshal(b, &saved); err != nil {
		return nil, fmt.Errorf("verify: %s: %w", p.From, err)
	}
	if len(saved.Vaults) == 0 {
		return nil, fmt.Errorf("verify: %s holds no vaults", p.From)
	}
	var mismatched, acked atomic.Int64
	var mu sync.Mutex // r.note is not safe for concurrent use
	err = forEach(ctx, len(saved.Vaults), 32, func(ctx context.Context, i int) error {
		sv := saved.Vaults[i]
		key, err := crypto.HexToECDSA(sv.Key)
		if err != nil {
			return fmt.Errorf("vault %s: key: %w", sv.Address, err)
		}
		w := &client.Wallet{Key: key}
		got, err := version(ctx, n, w)
		if err != nil {
			return fmt.Errorf("vault %s: %w", sv.Address, err)
		}
		acked.Add(sv.Acked)
		if got != sv.Version {
			mismatched.Add(1)
			mu.Lock()
			r.note("vault %s: version %d, want %d", sv.Address, got, sv.Version)
			mu.Unlock()
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	r.set("vaults_checked", float64(len(saved.Vaults)))
	r.set("vaults_mismatched", float64(mismatched.Load()))
	r.set("acked_commands_checked", float64(acked.Load()))
	return r, nil
}
