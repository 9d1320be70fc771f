package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

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
func startChain(ctx context.Context, o Options, origins []string, waiting func(string), log zerolog.Logger) (*nodeChain, error) {
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
			RPCListen: o.DevChainRPC, CORS: origins, Logger: log, Waiting: waiting})
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
		return &nodeChain{client: d.Client(), dev: d, info: d.Info(), faucet: startFaucet(d, filepath.Join(o.DataDir, "chain", "faucet.journal"), log), log: log}, nil
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

// halted is why the dev chain makes no blocks (its disk is full), or nil.
func (c *nodeChain) halted() error {
	if c == nil || c.dev == nil {
		return nil
	}
	return c.dev.Halted()
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
