package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/rs/zerolog"

	"github.com/spells-dev/spells/chain"
	"github.com/spells-dev/spells/protocol"
)

// nodeChain is the node's connection to its chain.
type nodeChain struct {
	client *chain.Client // nil without a chain
	dev    *chain.Dev    // the embedded dev chain, if it is that
	info   protocol.ChainInfo
	faucet *faucet // dev chain only
	log    zerolog.Logger
}

// id is the chain id sign-ins must name: the chain's own, or without a
// chain -chain-id (default 1).
func (c *nodeChain) id(o Options) uint64 {
	if c.client != nil {
		return c.client.ID()
	}
	if o.ChainID != 0 {
		return o.ChainID
	}
	return 1
}

// startChain connects the node to its chain. A -chain-id that is not the
// chain's is refused, as is a deployment file whose contracts are not on
// it.
func startChain(ctx context.Context, o Options, origins []string, log zerolog.Logger) (*nodeChain, error) {
	switch o.ChainRPC {
	case chainNone:
		log.Warn().Msg("no chain (-chain-rpc none): intents are recorded and never executed")
		return &nodeChain{log: log}, nil
	case chainDev, "":
		if o.ChainID != 0 && o.ChainID != chain.DevChainID {
			return nil, fmt.Errorf("%w: the dev chain's id is %d, -chain-id names %d", chain.ErrChainID, chain.DevChainID, o.ChainID)
		}
		start := time.Now()
		d, err := chain.StartDev(ctx, chain.DevConfig{Dir: filepath.Join(o.DataDir, "chain"), BlockInterval: o.DevChainBlockInterval,
			RPCListen: o.DevChainRPC, CORS: origins, Logger: log})
		if err != nil {
			if strings.Contains(err.Error(), "address already in use") {
				err = fmt.Errorf("%w (choose another address with -dev-chain-rpc, or turn its JSON-RPC off with -dev-chain-rpc '')", err)
			}
			return nil, err
		}
		head, _ := d.Client().BlockNumber(ctx)
		log.Info().Uint64("chain_id", chain.DevChainID).Uint64("head", head).Str("rpc", d.RPCURL()).
			Str("every", o.DevChainBlockInterval.String()).Dur("took", time.Since(start)).
			Msg("dev chain running (its faucet funds every new vault's owner and session key)")
		return &nodeChain{client: d.Client(), dev: d, info: d.Info(), faucet: startFaucet(d, log), log: log}, nil
	}
	c, err := chain.Dial(ctx, o.ChainRPC, o.ChainID, 15*time.Second)
	if err != nil {
		return nil, err
	}
	nc := &nodeChain{client: c, info: protocol.ChainInfo{ChainID: c.ID()}, log: log}
	if o.ChainDeployment != "" {
		b, err := os.ReadFile(o.ChainDeployment)
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("-chain-deployment: %w", err)
		}
		dec := json.NewDecoder(strings.NewReader(string(b)))
		dec.DisallowUnknownFields()
		if err := dec.Decode(&nc.info); err != nil {
			c.Close()
			return nil, fmt.Errorf("-chain-deployment %s: %s", o.ChainDeployment, protocol.DescribeJSONError(err))
		}
		nc.info.Dev, nc.info.RPC = false, ""
		if err := chain.Verify(ctx, c, nc.info); err != nil {
			c.Close()
			return nil, fmt.Errorf("-chain-deployment %s: %w", o.ChainDeployment, err)
		}
	} else {
		log.Warn().Msg("no -chain-deployment: the node knows no delegation framework on this chain, so no grant can be made")
	}
	log.Info().Uint64("chain_id", c.ID()).Msg("chain connected over JSON-RPC")
	return nc, nil
}

// feed is the chain's price feed published as signal name (nil: none).
func (c *nodeChain) feed(name string) *protocol.Feed {
	if c == nil || c.client == nil {
		return nil
	}
	for i := range c.info.Feeds {
		if c.info.Feeds[i].Signal == name {
			return &c.info.Feeds[i]
		}
	}
	return nil
}

func (c *nodeChain) close() {
	if c.faucet != nil {
		c.faucet.stop()
	}
	if c.dev != nil {
		if err := c.dev.Close(); err != nil {
			c.log.Warn().Err(err).Msg("dev chain close")
		}
	} else if c.client != nil {
		c.client.Close()
	}
}

// faucet funds, on the dev chain only, every new vault's owner (once) and
// session key, one account at a time, off the vault's goroutine. What
// cannot be queued is logged and dropped: funding is a convenience.
type faucet struct {
	dev  *chain.Dev
	log  zerolog.Logger
	q    chan [2]common.Address
	done chan struct{}
	ctx  context.Context
	end  context.CancelFunc
}

// What the faucet gives.
var (
	faucetOwnerWei = chain.Ether                                                               // gas for setting up the smart account
	faucetKeyWei   = chain.Ether                                                               // the session key's gas money
	faucetTokens   = map[string]*big.Int{"dETH": chain.Units(10), "dUSD": chain.Units(25_000)} // the owner's demo portfolio
)

func startFaucet(d *chain.Dev, log zerolog.Logger) *faucet {
	ctx, cancel := context.WithCancel(context.Background())
	f := &faucet{dev: d, log: log, q: make(chan [2]common.Address, 1024), done: make(chan struct{}), ctx: ctx, end: cancel}
	go f.loop()
	return f
}

// keyMade is vault.Config.KeyMade.
func (f *faucet) keyMade(owner, key common.Address) {
	select {
	case f.q <- [2]common.Address{owner, key}:
	default:
		f.log.Warn().Str("owner", owner.Hex()).Msg("faucet queue full; this vault is not funded")
	}
}

func (f *faucet) loop() {
	defer close(f.done)
	for {
		select {
		case <-f.ctx.Done():
			return
		case a := <-f.q:
			owner, key := a[0], a[1]
			ctx, cancel := context.WithTimeout(f.ctx, 30*time.Second)
			err := f.dev.Fund(ctx, key, faucetKeyWei, nil)
			if err == nil {
				if bal, berr := f.dev.Client().BalanceAt(ctx, owner, nil); berr == nil && bal.Sign() == 0 {
					err = f.dev.Fund(ctx, owner, faucetOwnerWei, faucetTokens)
				} else if berr != nil {
					err = berr
				}
			}
			cancel()
			if err != nil && !errors.Is(err, context.Canceled) {
				f.log.Warn().Err(err).Str("owner", owner.Hex()).Msg("faucet could not fund a new vault")
			} else if err == nil {
				f.log.Info().Str("owner", owner.Hex()).Str("session_key", key.Hex()).Msg("faucet funded a vault")
			}
		}
	}
}

func (f *faucet) stop() {
	f.end()
	<-f.done
}
