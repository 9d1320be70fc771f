package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/big"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/rs/zerolog"

	"github.com/spells-dev/spells/chain"
	"github.com/spells-dev/spells/internal/atomicfile"
)

// faucet funds, on the dev chain only, every new vault's owner (once) and
// session key, one account at a time, off the vault's goroutine. Each
// request is written to a journal before it is queued and marked done
// once its block is on disk, so a crash at any point funds the vault when
// the node starts again; funding is idempotent (an account already funded
// or used is left alone). What cannot be queued is logged and dropped.
type faucet struct {
	dev  *chain.Dev
	log  zerolog.Logger
	q    chan [2]common.Address
	done chan struct{}
	ctx  context.Context
	end  context.CancelFunc

	mu      sync.Mutex // the journal, and the requests queued (keyMade notes and queues under it)
	journal *os.File   // nil: requests are not journaled (it could not be opened)
	path    string
	lines   int                 // lines in the journal
	failed  [][2]common.Address // requests that failed this run: kept when the journal is compacted
}

// faucetCompactAfter is the journal's length, in lines, past which it is
// written again with only its undone requests once the queue is empty.
const faucetCompactAfter = 4096

// What the faucet gives.
var (
	faucetOwnerWei = chain.Ether                                                               // gas for setting up the smart account
	faucetKeyWei   = chain.Ether                                                               // the session key's gas money
	faucetTokens   = map[string]*big.Int{"dETH": chain.Units(10), "dUSD": chain.Units(25_000)} // the owner's demo portfolio
)

// faucetQueue bounds the requests waiting for the faucet.
const faucetQueue = 1024

// startFaucet starts the faucet of dev, its journal at path: the requests
// a crash left undone are queued first.
func startFaucet(d *chain.Dev, path string, log zerolog.Logger) *faucet {
	ctx, cancel := context.WithCancel(context.Background())
	f := &faucet{dev: d, log: log, q: make(chan [2]common.Address, faucetQueue), done: make(chan struct{}), ctx: ctx, end: cancel, path: path}
	pending, err := readFaucetJournal(path)
	if err != nil {
		log.Error().Err(err).Str("journal", path).Msg("faucet: its journal cannot be read; the vaults it had not funded yet are funded at their owner's next sign-up only")
	}
	if len(pending) > faucetQueue {
		pending = pending[len(pending)-faucetQueue:]
	}
	var b strings.Builder
	for _, a := range pending {
		fmt.Fprintf(&b, "fund %s %s\n", a[0].Hex(), a[1].Hex())
		f.q <- a
	}
	if err := atomicfile.Write(path, []byte(b.String())); err != nil {
		log.Error().Err(err).Str("journal", path).Msg("faucet: its journal cannot be written; a crash may leave a new vault unfunded")
	} else if f.journal, err = os.OpenFile(path, os.O_WRONLY|os.O_APPEND, 0o600); err != nil {
		log.Error().Err(err).Str("journal", path).Msg("faucet: its journal cannot be opened; a crash may leave a new vault unfunded")
	}
	f.lines = len(pending)
	if len(pending) > 0 {
		log.Info().Int("vaults", len(pending)).Msg("faucet: funding the vaults a crash left unfunded")
	}
	go f.loop()
	return f
}

// readFaucetJournal returns the requests of the journal at path that are
// not marked done, oldest first.
func readFaucetJournal(path string) ([][2]common.Address, error) {
	fh, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer fh.Close()
	var order []common.Address
	req := map[common.Address]common.Address{} // key → owner
	sc := bufio.NewScanner(fh)
	for sc.Scan() {
		fs := strings.Fields(sc.Text())
		switch {
		case len(fs) == 3 && fs[0] == "fund" && common.IsHexAddress(fs[1]) && common.IsHexAddress(fs[2]):
			k := common.HexToAddress(fs[2])
			if _, ok := req[k]; !ok {
				order = append(order, k)
			}
			req[k] = common.HexToAddress(fs[1])
		case len(fs) == 2 && fs[0] == "done" && common.IsHexAddress(fs[1]):
			delete(req, common.HexToAddress(fs[1]))
		}
		// Anything else is a line a crash cut short: skipped.
	}
	var out [][2]common.Address
	for _, k := range order {
		if o, ok := req[k]; ok {
			out = append(out, [2]common.Address{o, k})
		}
	}
	return out, sc.Err()
}

// note appends a line to the journal. It is not synced: the page cache
// keeps it through a crash of the process, which is what a dev chain
// needs (its blocks are synced).
func (f *faucet) note(line string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.noteLocked(line)
}

func (f *faucet) noteLocked(line string) {
	if f.journal == nil {
		return
	}
	if _, err := f.journal.WriteString(line); err != nil {
		f.log.Warn().Err(err).Msg("faucet: write its journal")
		return
	}
	f.lines++
}

// compact writes the journal again with only the requests that failed
// this run, once it is long and nothing is queued or being funded (the
// loop calls it between requests; keyMade notes and queues under f.mu).
func (f *faucet) compact() {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.journal == nil || f.lines < faucetCompactAfter || len(f.q) > 0 || f.ctx.Err() != nil {
		return // (a request cut short by the stop stays for the next start)
	}
	var b strings.Builder
	for _, a := range f.failed {
		fmt.Fprintf(&b, "fund %s %s\n", a[0].Hex(), a[1].Hex())
	}
	if err := atomicfile.Write(f.path, []byte(b.String())); err != nil {
		f.log.Warn().Err(err).Msg("faucet: compact its journal")
		return
	}
	f.journal.Close()
	var err error
	if f.journal, err = os.OpenFile(f.path, os.O_WRONLY|os.O_APPEND, 0o600); err != nil {
		f.journal = nil
		f.log.Error().Err(err).Msg("faucet: its journal cannot be opened again; a crash may leave a new vault unfunded")
	}
	f.lines = len(f.failed)
}

// keyMade is vault.Config.KeyMade.
func (f *faucet) keyMade(owner, key common.Address) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.noteLocked(fmt.Sprintf("fund %s %s\n", owner.Hex(), key.Hex()))
	select {
	case f.q <- [2]common.Address{owner, key}:
	default:
		f.log.Warn().Str("owner", owner.Hex()).Msg("faucet queue full; this vault is funded when the node starts again")
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
			err := f.fund(ctx, key, faucetKeyWei, nil)
			if err == nil {
				err = f.fund(ctx, owner, faucetOwnerWei, faucetTokens)
			}
			cancel()
			switch {
			case err == nil:
				f.note(fmt.Sprintf("done %s\n", key.Hex()))
				f.log.Info().Str("owner", owner.Hex()).Str("session_key", key.Hex()).Msg("faucet funded a vault")
			case !errors.Is(err, context.Canceled):
				f.log.Warn().Err(err).Str("owner", owner.Hex()).Msg("faucet could not fund a new vault")
				f.mu.Lock()
				if f.failed = append(f.failed, a); len(f.failed) > faucetQueue {
					f.failed = f.failed[1:]
				}
				f.mu.Unlock()
			}
			f.compact()
		}
	}
}

// fund gives account wei and tokens unless it has money or has sent a
// transaction already (funded before a crash, or in use).
func (f *faucet) fund(ctx context.Context, account common.Address, wei *big.Int, tokens map[string]*big.Int) error {
	c := f.dev.Client()
	bal, err := c.BalanceAt(ctx, account, nil)
	if err != nil {
		return err
	}
	nonce, err := c.NonceAt(ctx, account, nil)
	if err != nil {
		return err
	}
	if bal.Sign() > 0 || nonce > 0 {
		return nil
	}
	return f.dev.Fund(ctx, account, wei, tokens)
}

func (f *faucet) stop() {
	f.end()
	<-f.done
	f.mu.Lock()
	if f.journal != nil {
		f.journal.Close()
		f.journal = nil
	}
	f.mu.Unlock()
}
