package main

import (
	"bufio"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"golang.org/x/time/rate"

	"github.com/spells-dev/spells/protocol"
)

// createGate bounds the vaults a node creates: every first sign-in of an
// address makes a file of about 100 KiB, so an outsider with many
// addresses could fill the disk. Per source address (an IPv4 address or
// an IPv6 /64) and for the whole node, at most so many a minute; a public
// node may instead create vaults only for the addresses on an allowlist.
type createGate struct {
	perIP   float64        // a minute; 0: no limit
	ips     *sourceLimiter // nil: no limit per address
	node    *rate.Limiter
	allowed map[common.Address]bool // nil: anyone
}

func newCreateGate(o Options) (*createGate, error) {
	g := &createGate{perIP: o.NewVaultsPerIP}
	if o.NewVaultsPerIP > 0 {
		g.ips = newSourceLimiter(rate.Limit(o.NewVaultsPerIP/60), int(max(1, o.NewVaultsPerIP)), 10*time.Minute)
	}
	if o.NewVaultsPerMinute > 0 {
		g.node = rate.NewLimiter(rate.Limit(o.NewVaultsPerMinute/60), int(max(1, o.NewVaultsPerMinute)))
	}
	if o.VaultAllowlist != "" {
		f, err := os.Open(o.VaultAllowlist)
		if err != nil {
			return nil, fmt.Errorf("-vault-allowlist: %w", err)
		}
		defer f.Close()
		g.allowed = map[common.Address]bool{}
		sc := bufio.NewScanner(f)
		for n := 1; sc.Scan(); n++ {
			line := strings.TrimSpace(sc.Text())
			if line == "" || strings.HasPrefix(line, "#") {
				continue
			}
			if !common.IsHexAddress(line) {
				return nil, fmt.Errorf("-vault-allowlist %s line %d: %q is not an address", o.VaultAllowlist, n, line)
			}
			g.allowed[common.HexToAddress(line)] = true
		}
		if err := sc.Err(); err != nil {
			return nil, fmt.Errorf("-vault-allowlist: %w", err)
		}
	}
	return g, nil
}

// allow is vault.Config.AllowCreate.
func (g *createGate) allow(from string, owner common.Address) error {
	if g.allowed != nil && !g.allowed[owner] {
		return protocol.Errorf(protocol.CodeNotAllowed, "this node creates vaults only for the addresses on its allowlist, and %s is not on it", owner.Hex())
	}
	if g.ips != nil && from != "" && !g.ips.allow(from, 1) {
		return protocol.Errorf(protocol.CodeRateLimited, "%s created its %g new vaults of this minute: sign in again later (vaults already made are not limited)", from, g.perIP)
	}
	if g.node != nil && !g.node.Allow() {
		return protocol.Errorf(protocol.CodeRateLimited, "this node creates at most %d new vaults a minute, and is at that bound now: sign in again in a minute, or through another node", g.node.Burst())
	}
	return nil
}
