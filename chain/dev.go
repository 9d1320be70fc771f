package chain

import (
	"context"
	"crypto/ecdsa"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"maps"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/eth"
	"github.com/ethereum/go-ethereum/eth/catalyst"
	"github.com/ethereum/go-ethereum/eth/ethconfig"
	"github.com/ethereum/go-ethereum/eth/filters"
	"github.com/ethereum/go-ethereum/node"
	"github.com/ethereum/go-ethereum/p2p"
	"github.com/ethereum/go-ethereum/rpc"
	"github.com/rs/zerolog"

	"github.com/spells-dev/spells/contracts"
	"github.com/spells-dev/spells/internal/atomicfile"
	"github.com/spells-dev/spells/protocol"
)

// DevChainID is the embedded dev chain's id (go-ethereum's dev mode).
const DevChainID = 1337

// DevConfig configures the embedded dev chain.
type DevConfig struct {
	Dir string // its own directory (the node keeps it under data/chain)
	// BlockInterval is the time between blocks (at least a second: block
	// times are whole seconds); 0 makes blocks only when Mine is called
	// (tests).
	BlockInterval time.Duration
	// RPCListen is the loopback address of its JSON-RPC server (HTTP, the
	// eth, net and web3 APIs); empty: none.
	RPCListen string
	// CORS lists the browser origins allowed to call the JSON-RPC server.
	CORS   []string
	Logger zerolog.Logger
	// Waiting, if set, is told what the start waits on (room on a full
	// disk), for the node's /readyz.
	Waiting func(why string)
}

// Dev is the embedded dev chain: a go-ethereum node in the process, every
// fork through Osaka (EIP-7702 included), its chain in the data directory,
// sealed by a simulated beacon.
type Dev struct {
	cfg    DevConfig
	stack  *node.Node
	eth    *eth.Ethereum
	beacon *catalyst.SimulatedBeacon
	client *Client
	faucet *ecdsa.PrivateKey
	info   protocol.ChainInfo
	rpcURL string

	// Every block is sealed by the miner goroutine (the simulated beacon
	// is not safe for concurrent sealing): on each tick of the interval,
	// and when Mine or Fork ask.
	asks     chan func()
	stop     chan struct{}
	minerEnd chan struct{}

	mu sync.Mutex // the faucet's account: one sender at a time

	// halted is why the chain makes no blocks (its disk is full, or a
	// block could not be written to it); nil while it makes them.
	halted atomic.Pointer[error]
}

// devDiskReserve is the free space below which the dev chain makes no
// blocks: its database must never meet a full disk mid-write (it panics
// there), so it stops first, says so, and goes on when there is room.
const devDiskReserve = 16 << 20

const devGasLimit = 60_000_000

// StartDev starts the dev chain in cfg.Dir, creating it (and deploying the
// contracts, see Deploy) on first start. Every block is on disk (synced)
// before the next is made, so neither a clean Close nor a crash loses a
// block that anyone was told about.
func StartDev(ctx context.Context, cfg DevConfig) (*Dev, error) {
	if cfg.BlockInterval < 0 || (cfg.BlockInterval > 0 && cfg.BlockInterval < time.Second) {
		return nil, fmt.Errorf("dev chain: the block interval is at least 1s (block times are whole seconds), not %s", cfg.BlockInterval)
	}
	if err := os.MkdirAll(cfg.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("dev chain: %w", err)
	}
	if err := waitRoom(ctx, cfg); err != nil {
		return nil, err
	}
	faucet, err := devKey(filepath.Join(cfg.Dir, "faucet.key"))
	if err != nil {
		return nil, fmt.Errorf("dev chain: %w", err)
	}
	d := &Dev{cfg: cfg, faucet: faucet, asks: make(chan func()), stop: make(chan struct{}), minerEnd: make(chan struct{})}
	if err := d.start(); err != nil {
		d.Close()
		return nil, err
	}
	if err := d.loadOrDeploy(ctx); err != nil {
		d.Close()
		return nil, err
	}
	return d, nil
}

func (d *Dev) start() error {
	ncfg := node.Config{
		Name:    "spells-dev",
		DataDir: filepath.Join(d.cfg.Dir, "geth"),
		P2P:     p2p.Config{NoDiscovery: true, MaxPeers: 0, ListenAddr: ""},
		// Accounts are never unlocked in this node; keys stay in Spells.
		UseLightweightKDF: true,
	}
	if d.cfg.RPCListen != "" {
		host, port, err := net.SplitHostPort(d.cfg.RPCListen)
		if err != nil {
			return fmt.Errorf("dev chain RPC address %q: %w", d.cfg.RPCListen, err)
		}
		if ip := net.ParseIP(host); host != "localhost" && (ip == nil || !ip.IsLoopback()) {
			return fmt.Errorf("dev chain RPC address %q: the dev chain serves JSON-RPC on loopback only", d.cfg.RPCListen)
		}
		p, err := strconv.Atoi(port)
		if err != nil {
			return fmt.Errorf("dev chain RPC port %q: %w", port, err)
		}
		ncfg.HTTPHost, ncfg.HTTPPort = host, p
		ncfg.HTTPModules = []string{"eth", "net", "web3"}
		ncfg.HTTPVirtualHosts = []string{"localhost", "127.0.0.1", "[::1]", host}
		ncfg.HTTPCors = d.cfg.CORS
	}
	stack, err := node.New(&ncfg)
	if err != nil {
		return fmt.Errorf("dev chain: %w", err)
	}
	d.stack = stack
	faucet := crypto.PubkeyToAddress(d.faucet.PublicKey)
	ecfg := ethconfig.Defaults
	ecfg.NetworkId = DevChainID
	ecfg.Genesis = core.DeveloperGenesisBlock(devGasLimit, &faucet)
	ecfg.SyncMode = ethconfig.FullSync
	// The hash scheme without pruning writes each block's state with
	// it; seal syncs the database after each block.
	ecfg.StateScheme, ecfg.NoPruning = "hash", true
	// No log index: loading it costs seconds at every start, and a search
	// of a chain this small without it costs little.
	ecfg.LogNoHistory = true
	ecfg.Miner.GasCeil = devGasLimit
	ecfg.Miner.PendingFeeRecipient = faucet
	backend, err := eth.New(stack, &ecfg)
	if err != nil {
		return fmt.Errorf("dev chain: %w", err)
	}
	d.eth = backend
	stack.RegisterAPIs([]rpc.API{{Namespace: "eth", Service: filters.NewFilterAPI(filters.NewFilterSystem(backend.APIBackend, filters.Config{}))}})
	if err := stack.Start(); err != nil {
		return fmt.Errorf("dev chain: %w", err)
	}
	// Period 0: the beacon seals only when asked, by d.miner.
	beacon, err := catalyst.NewSimulatedBeacon(0, faucet, backend)
	if err != nil {
		return fmt.Errorf("dev chain: %w", err)
	}
	d.beacon = beacon
	go d.miner()
	c, err := attach(context.Background(), stack.Attach(), DevChainID)
	if err != nil {
		return fmt.Errorf("dev chain: %w", err)
	}
	d.client = c
	if ep := stack.HTTPEndpoint(); d.cfg.RPCListen != "" && ep != "" {
		d.rpcURL = ep
	}
	return nil
}

// freeSpace is the space left to an unprivileged writer on dir's disk
// (ok false if it cannot be read).
func freeSpace(dir string) (free uint64, ok bool) {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return 0, false
	}
	return st.Bavail * uint64(st.Bsize), true
}

// waitRoom waits, before the chain's database opens (which would hang on a
// full disk), until its disk has devDiskReserve free, saying so at once
// and every minute; ctx ending gives up.
func waitRoom(ctx context.Context, cfg DevConfig) error {
	free, ok := freeSpace(cfg.Dir)
	if !ok || free >= devDiskReserve {
		return nil
	}
	start := time.Now()
	why := fmt.Sprintf("room on the dev chain's disk (%d KiB free, it needs %d MiB)", free>>10, devDiskReserve>>20)
	cfg.Logger.Error().Uint64("free_kib", free>>10).Str("dir", cfg.Dir).Msg("dev chain: its disk is full; it opens its database once there is room (free some space, or start with -chain-rpc none)")
	if cfg.Waiting != nil {
		cfg.Waiting(why)
	}
	t := time.NewTicker(time.Second)
	defer t.Stop()
	told := start
	for {
		select {
		case <-ctx.Done():
			return fmt.Errorf("dev chain: stopped while waiting for %s: %w", why, ctx.Err())
		case now := <-t.C:
			if free, ok = freeSpace(cfg.Dir); ok && free >= devDiskReserve {
				cfg.Logger.Info().Dur("waited", now.Sub(start)).Msg("dev chain: its disk has room; opening its database")
				return nil
			}
			if now.Sub(told) >= time.Minute {
				told = now
				cfg.Logger.Warn().Uint64("free_kib", free>>10).Dur("waited", now.Sub(start)).Msg("dev chain: still waiting for room on its disk")
			}
		}
	}
}

// devKey reads a hex secp256k1 key from p, generating it on first use.
func devKey(p string) (*ecdsa.PrivateKey, error) {
	b, err := os.ReadFile(p)
	if err == nil {
		k, err := crypto.HexToECDSA(strings.TrimSpace(string(b)))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		return k, nil
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return nil, err
	}
	k, err := crypto.GenerateKey()
	if err != nil {
		return nil, err
	}
	if err := atomicfile.Write(p, []byte(hex.EncodeToString(crypto.FromECDSA(k))+"\n")); err != nil {
		return nil, err
	}
	return k, nil
}

// loadOrDeploy reads the deployment recorded in the chain's directory, or
// deploys the contracts when there is none or the chain lost them (a crash
// before its blocks reached the disk).
func (d *Dev) loadOrDeploy(ctx context.Context) error {
	p := filepath.Join(d.cfg.Dir, "deployment.json")
	if b, err := os.ReadFile(p); err == nil {
		var info protocol.ChainInfo
		if err := json.Unmarshal(b, &info); err != nil {
			return fmt.Errorf("dev chain: %s: %w", p, err)
		}
		err := Verify(ctx, d.client, info)
		if err == nil {
			err = d.stocked(ctx, info)
		}
		if err == nil {
			// A deployment from before a contract this node uses gets it.
			if info, err = d.complete(ctx, p, info); err != nil {
				return err
			}
			d.setInfo(info)
			return nil
		} else {
			d.cfg.Logger.Warn().Err(err).Msg("dev chain: the recorded deployment is not whole on the chain; deploying it again")
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("dev chain: %w", err)
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	d.mu.Lock()
	info, err := Deploy(ctx, d.client, d.faucet, d.Mine)
	d.mu.Unlock()
	if err != nil {
		return fmt.Errorf("dev chain: %w", err)
	}
	b, _ := json.MarshalIndent(info, "", "  ")
	if err := atomicfile.Write(p, append(b, '\n')); err != nil {
		return fmt.Errorf("dev chain: %w", err)
	}
	d.setInfo(info)
	d.cfg.Logger.Info().Dur("took", time.Since(start)).Str("delegation_manager", info.DelegationManager).
		Str("pool", info.Pool.Address).Msg("dev chain: contracts deployed")
	return nil
}

// stocked checks what a deployment needs beyond code: the pool holds both
// tokens and the faucet has money, so a deployment cut short is made
// again rather than kept.
func (d *Dev) stocked(ctx context.Context, info protocol.ChainInfo) error {
	bal, err := d.client.BalanceAt(ctx, d.Faucet(), nil)
	if err != nil {
		return err
	}
	if bal.Sign() == 0 {
		return errors.New("the faucet has no money")
	}
	if info.Pool == nil {
		return nil
	}
	pool := common.HexToAddress(info.Pool.Address)
	for _, t := range []string{info.Pool.Token0, info.Pool.Token1} {
		n, err := TokenBalance(ctx, d.client, common.HexToAddress(t), pool)
		if err != nil {
			return fmt.Errorf("the pool's balance of %s: %w", t, err)
		}
		if n.Sign() == 0 {
			return fmt.Errorf("the pool holds no %s (its liquidity was never added)", t)
		}
	}
	return nil
}

// complete deploys what a deployment recorded at p lacks of what this
// node uses (the router over its pool, a caveat enforcer) and records it.
func (d *Dev) complete(ctx context.Context, p string, info protocol.ChainInfo) (protocol.ChainInfo, error) {
	var missing []string
	for _, name := range contracts.Enforcers {
		if info.Enforcers[name] == "" {
			missing = append(missing, name)
		}
	}
	needRouter := info.Router == "" && info.Pool != nil
	needFeed := len(info.Feeds) == 0 && info.Pool != nil
	if len(missing) == 0 && !needRouter && !needFeed {
		return info, nil
	}
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	d.mu.Lock()
	s, err := newSender(ctx, d.client, d.faucet)
	added := map[string]common.Address{}
	for _, name := range missing {
		if err == nil {
			added[name], err = s.create(ctx, name)
		}
	}
	if err == nil && needRouter {
		added["router"], err = s.create(ctx, contracts.DemoRouter, []common.Address{common.HexToAddress(info.Pool.Address)})
	}
	if err == nil && needFeed {
		var price float64
		if price, err = PoolPrice(ctx, d.client, common.HexToAddress(info.Pool.Address)); err == nil {
			added["feed"], err = s.create(ctx, contracts.MockV3Aggregator, uint8(demoFeedDecimals), feedAnswer(price))
		}
	}
	if err == nil {
		err = s.settle(ctx, d.Mine)
	}
	d.mu.Unlock()
	if err != nil {
		return info, fmt.Errorf("dev chain: deploy what the recorded deployment lacks: %w", err)
	}
	enf := maps.Clone(info.Enforcers)
	for name, a := range added {
		switch name {
		case "router":
			info.Router = a.Hex()
			continue
		case "feed":
			info.Feeds = []protocol.Feed{demoFeed(a)}
			continue
		}
		enf[name] = a.Hex()
	}
	info.Enforcers = enf
	b, _ := json.MarshalIndent(info, "", "  ")
	if err := atomicfile.Write(p, append(b, '\n')); err != nil {
		return info, fmt.Errorf("dev chain: %w", err)
	}
	d.cfg.Logger.Info().Strs("enforcers", missing).Bool("router", needRouter).Bool("feed", needFeed).Msg("dev chain: deployed what the recorded deployment lacked")
	return info, nil
}

func (d *Dev) setInfo(info protocol.ChainInfo) {
	info.Dev, info.RPC = true, d.rpcURL
	d.info = info
}

// Client is the in-process connection to the chain.
func (d *Dev) Client() *Client { return d.client }

// Info describes the chain and its contracts.
func (d *Dev) Info() protocol.ChainInfo { return d.info }

// RPCURL is the loopback JSON-RPC URL, if it serves one.
func (d *Dev) RPCURL() string { return d.rpcURL }

// miner seals a block at every tick of the interval and runs what Mine
// and Fork ask, one at a time.
func (d *Dev) miner() {
	defer close(d.minerEnd)
	var tick <-chan time.Time
	if d.cfg.BlockInterval > 0 {
		t := time.NewTicker(d.cfg.BlockInterval)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-d.stop:
			return
		case <-tick:
			_ = d.seal(func() error { d.beacon.Commit(); return nil })
		case f := <-d.asks:
			f()
		}
	}
}

// ask runs f on the miner goroutine and waits for it; false if the chain
// is closed.
func (d *Dev) ask(f func()) bool {
	done := make(chan struct{})
	select {
	case d.asks <- func() { f(); close(done) }:
		<-done
		return true
	case <-d.minerEnd:
		return false
	}
}

// seal makes a block with make, on the miner goroutine, if the disk has
// room, and syncs the chain's database, so the block survives a crash of
// the process (or of the machine) from here on. A chain whose disk is
// full makes no block and says why.
func (d *Dev) seal(make func() error) error {
	if err := d.room(); err != nil {
		return err
	}
	if err := make(); err != nil {
		return err
	}
	if err := d.eth.ChainDb().SyncKeyValue(); err != nil {
		err = fmt.Errorf("dev chain: write its blocks to disk: %w", err)
		d.halt(err)
		return err
	}
	return nil
}

// room checks the free space of the chain's disk: below devDiskReserve
// the chain halts (once, with a log line); above it, a halted chain goes
// on.
func (d *Dev) room() error {
	free, ok := freeSpace(d.cfg.Dir)
	if !ok {
		return nil // unknown: the sync after the block still catches a failed write
	}
	if free < devDiskReserve {
		err := fmt.Errorf("dev chain: its disk is full (%d KiB free, it keeps %d MiB): no blocks until there is room", free>>10, devDiskReserve>>20)
		d.halt(err)
		return err
	}
	if was := d.halted.Swap(nil); was != nil {
		d.cfg.Logger.Info().Uint64("free_mib", free>>20).Msg("dev chain: its disk has room again; making blocks")
	}
	return nil
}

func (d *Dev) halt(err error) {
	if d.halted.Swap(&err) == nil {
		d.cfg.Logger.Error().Err(err).Msg("dev chain halted: no blocks are made until there is room; transactions wait in its pool")
	}
}

// Halted is why the chain makes no blocks now (its disk is full), or nil.
func (d *Dev) Halted() error {
	if p := d.halted.Load(); p != nil {
		return *p
	}
	return nil
}

// Mine seals a block now, with whatever transactions are pending (none
// while the chain is halted).
func (d *Dev) Mine() { d.ask(func() { _ = d.seal(func() error { d.beacon.Commit(); return nil }) }) }

// Fork makes the block with hash parent the head: the blocks after it are
// dropped (their transactions go back to the pool) and the next block
// builds on it, so a reorg can be staged. It fails while transactions are
// pending.
func (d *Dev) Fork(parent common.Hash) error {
	err := errors.New("dev chain closed")
	d.ask(func() { err = d.seal(func() error { return d.beacon.Fork(parent) }) })
	return err
}

// Faucet is the dev chain's funded account.
func (d *Dev) Faucet() common.Address { return crypto.PubkeyToAddress(d.faucet.PublicKey) }

// Fund sends wei of native currency and, for each demo token named in
// tokens (by symbol), that many of its smallest units from the faucet to
// the account, and waits until it is mined.
func (d *Dev) Fund(ctx context.Context, to common.Address, wei *big.Int, tokens map[string]*big.Int) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	s, err := newSender(ctx, d.client, d.faucet)
	if err != nil {
		return fmt.Errorf("faucet: %w", err)
	}
	if wei != nil && wei.Sign() > 0 {
		if _, err := s.send(ctx, "fund", &to, wei, nil, 0); err != nil {
			return fmt.Errorf("faucet: %w", err)
		}
	}
	for _, t := range d.info.Tokens {
		if n := tokens[t.Symbol]; n != nil && n.Sign() > 0 {
			if err := s.call(ctx, contracts.DemoToken, common.HexToAddress(t.Address), 0, "mint", to, n); err != nil {
				return fmt.Errorf("faucet: %w", err)
			}
		}
	}
	return s.settle(ctx, d.Mine)
}

// SetFeed sets the dev chain's price feed for signal to price, from the
// faucet's account, and waits until it is mined: tests and tools move the
// price the chain checks. (The feed is Chainlink's test aggregator, which
// anyone on the dev chain may set.)
func (d *Dev) SetFeed(ctx context.Context, signal string, price float64) error {
	for _, f := range d.info.Feeds {
		if f.Signal != signal {
			continue
		}
		d.mu.Lock()
		defer d.mu.Unlock()
		s, err := newSender(ctx, d.client, d.faucet)
		if err != nil {
			return fmt.Errorf("set feed: %w", err)
		}
		if err := s.call(ctx, contracts.MockV3Aggregator, common.HexToAddress(f.Address), 0, "updateAnswer", feedAnswer(price)); err != nil {
			return fmt.Errorf("set feed: %w", err)
		}
		return s.settle(ctx, d.Mine)
	}
	return fmt.Errorf("set feed: the dev chain has no feed for %q", signal)
}

// Close stops block production and the node, writing its state to disk.
func (d *Dev) Close() error {
	var err error
	if d.client != nil {
		d.client.Close()
	}
	if d.beacon != nil {
		close(d.stop)
		<-d.minerEnd
		d.beacon = nil
	}
	if d.stack != nil {
		err = errors.Join(err, d.stack.Close())
	}
	return err
}

// Deploy deploys the named contract (of package contracts) from the
// faucet's account with constructor args, for tools and tests, and waits
// until it is mined.
func (d *Dev) Deploy(ctx context.Context, name string, args ...any) (common.Address, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	s, err := newSender(ctx, d.client, d.faucet)
	if err != nil {
		return common.Address{}, err
	}
	a, err := s.create(ctx, name, args...)
	if err != nil {
		return common.Address{}, err
	}
	return a, s.settle(ctx, d.Mine)
}

// AdjustTime seals a block whose time is d later than it would be, moving
// the chain's clock forward (for tests of validity windows). It fails
// while transactions are pending.
func (d *Dev) AdjustTime(by time.Duration) error {
	err := errors.New("dev chain closed")
	d.ask(func() { err = d.seal(func() error { return d.beacon.AdjustTime(by) }) })
	return err
}
