package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"

	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/protocol/client"
)

// What commands -save writes and verify reads back after a restart: each
// vault's keys and the version its acknowledged commands reached.

// savedVaults is what `commands -save` writes: each vault's owner key (a
// throwaway bench wallet) and the version it must have, which counts every
// command acknowledged on it.
type savedVaults struct {
	Vaults []savedVault `json:"vaults"`
}

type savedVault struct {
	Key     string `json:"key"` // hex secp256k1 private key
	Address string `json:"address"`
	Version uint64 `json:"version"`
	Acked   int64  `json:"acked"`
}

func (s savedVaults) write(path string) error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(path, b, 0o600); err != nil {
		return fmt.Errorf("save vaults: %w", err)
	}
	return nil
}

// version signs w in on a fresh connection and returns its vault's version.
func version(ctx context.Context, n *node, w *client.Wallet) (uint64, error) {
	c, err := client.Dial(ctx, n.wsURL(), nil)
	if err != nil {
		return 0, err
	}
	defer c.CloseNow()
	if _, err := c.SignIn(ctx, w, client.SignInParams{}, nil); err != nil {
		return 0, err
	}
	for {
		f, err := c.Next(ctx)
		if err != nil {
			return 0, err
		}
		if f.Type == protocol.TypeSnapshot {
			return f.State.Version, nil
		}
	}
}
