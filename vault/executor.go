package vault

import (
	"context"
	"encoding/json"
	"errors"
	"math/big"
	"strings"
	"sync"
	"time"

	"github.com/ethereum/go-ethereum"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"

	"github.com/spells-dev/spells/contracts"
	"github.com/spells-dev/spells/protocol"
)

// The node's side of execution: a pool of workers that make the chain
// calls vaults ask for, and one watcher that follows new blocks and the
// receipts vaults wait on. Neither ever runs on a vault's goroutine: each
// result is an event in the vault's inbox (like a signal), which wakes a
// hibernated vault.

// execEvent is a chain result for one intent.
type execEvent struct {
	kind   string // "prepared", "sent", "receipt", "retry"
	intent string

	// prepared
	prep *prepared
	// sent
	hash common.Hash
	// receipt: nil while the transaction is in no block
	receipt *types.Receipt
	head    uint64
	reason  string // a revert's reason
	// What a transaction needs now to be mined (for a replacement): the
	// suggested tip and the head's base fee.
	tip, baseFee *big.Int
	// portfolio: the frame to show, if it changed
	portfolio []byte

	err error
}

// prepared is what a vault needs from the chain to sign an intent's
// transaction.
type prepared struct {
	data       []byte // redeemDelegations calldata
	gas        uint64
	tip        *big.Int
	feeCap     *big.Int
	chainNonce uint64
	balance    *big.Int // the session key's
}

type job struct {
	vault string
	run   func(ctx context.Context) *execEvent
}

type followed struct {
	vault, intent string
}

type executor struct {
	m     *Manager
	c     Chain
	jobs  chan job
	every time.Duration

	mu     sync.Mutex
	follow map[common.Hash]followed
}

const execWorkers = 4

func newExecutor(m *Manager, c Chain) *executor {
	return &executor{m: m, c: c, jobs: make(chan job, 4096), every: m.cfg.PollEvery, follow: map[common.Hash]followed{}}
}

func (e *executor) run(ctx context.Context, wg *sync.WaitGroup) {
	for i := 0; i < execWorkers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-ctx.Done():
					return
				case j := <-e.jobs:
					cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
					ev := j.run(cctx)
					cancel()
					if ev != nil && ctx.Err() == nil {
						e.m.postExec(j.vault, ev)
					}
				}
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		e.watch(ctx)
	}()
}

// submit queues a chain call for vault id; false when the queue is full
// (the vault tries again later).
func (e *executor) submit(id string, run func(ctx context.Context) *execEvent) bool {
	select {
	case e.jobs <- job{vault: id, run: run}:
		return true
	default:
		return false
	}
}

func (e *executor) track(id, intent string, hashes []common.Hash) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, h := range hashes {
		e.follow[h] = followed{vault: id, intent: intent}
	}
}

func (e *executor) untrack(hashes []common.Hash) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, h := range hashes {
		delete(e.follow, h)
	}
}

// watch looks for a new head every PollEvery and, at each, for the receipt
// of every transaction followed, telling its vault what it found.
func (e *executor) watch(ctx context.Context) {
	t := time.NewTicker(e.every)
	defer t.Stop()
	var last uint64
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		head, err := e.c.BlockNumber(ctx)
		if err != nil {
			if ctx.Err() == nil {
				e.m.cfg.Logger.Warn().Err(err).Msg("chain watcher: read the head")
			}
			continue
		}
		if head == last {
			continue
		}
		last = head
		e.portfolios(ctx, head)
		e.mu.Lock()
		hs := make(map[common.Hash]followed, len(e.follow))
		for h, f := range e.follow {
			hs[h] = f
		}
		e.mu.Unlock()
		if len(hs) == 0 {
			continue
		}
		var tip, baseFee *big.Int
		if hd, err := e.c.HeaderByNumber(ctx, nil); err == nil {
			baseFee = hd.BaseFee
		}
		if t, err := e.c.SuggestGasTipCap(ctx); err == nil {
			tip = t
		}
		for h, f := range hs {
			r, err := e.c.TransactionReceipt(ctx, h)
			if err != nil && !notFound(err) {
				if ctx.Err() == nil {
					e.m.cfg.Logger.Warn().Err(err).Str("tx", h.Hex()).Msg("chain watcher: read a receipt")
				}
				continue
			}
			ev := &execEvent{kind: "receipt", intent: f.intent, hash: h, receipt: r, head: head, tip: tip, baseFee: baseFee}
			if r != nil && r.Status != types.ReceiptStatusSuccessful {
				ev.reason = e.revertReason(ctx, h, r)
			}
			e.m.postExec(f.vault, ev)
		}
	}
}

// maxPortfolios bounds the vaults whose balances are read at one block.
const maxPortfolios = 256

// portfolios reads, for each vault with a dashboard open (up to
// maxPortfolios), its owner's balances and its session key's, and posts
// them; the vault pushes them when they changed.
func (e *executor) portfolios(ctx context.Context, head uint64) {
	type who struct {
		id         string
		owner, key common.Address
	}
	var ws []who
	e.m.mu.Lock()
	for id, v := range e.m.vaults {
		if v.subCount.Load() == 0 || len(ws) >= maxPortfolios {
			continue
		}
		if k := v.keyAddr.Load(); k != nil {
			ws = append(ws, who{id, v.addr, *k})
		}
	}
	e.m.mu.Unlock()
	tokens := e.m.cfg.Chain.Tokens
	erc20 := contracts.MustGet(contracts.DemoToken).ABI
	block := new(big.Int).SetUint64(head)
	for _, w := range ws {
		acct := &protocol.Holdings{Address: w.owner.Hex(), Tokens: map[string]string{}}
		key := &protocol.Holdings{Address: w.key.Hex()}
		nat, err := e.c.BalanceAt(ctx, w.owner, block)
		if err != nil {
			continue
		}
		acct.Native = nat.String()
		kb, err := e.c.BalanceAt(ctx, w.key, block)
		if err != nil {
			continue
		}
		key.Native = kb.String()
		for _, t := range tokens {
			data, _ := erc20.Pack("balanceOf", w.owner)
			to := common.HexToAddress(t.Address)
			out, err := e.c.CallContract(ctx, ethereum.CallMsg{To: &to, Data: data}, block)
			if err != nil {
				continue
			}
			acct.Tokens[t.Symbol] = new(big.Int).SetBytes(out).String()
		}
		f, _ := json.Marshal(protocol.PortfolioFrame{Type: protocol.TypePortfolio, Vault: w.owner.Hex(), Block: head, Account: acct, Key: key})
		e.m.postExec(w.id, &execEvent{kind: "portfolio", portfolio: f})
	}
}

// revertReason replays a reverted transaction on the state before its
// block and returns what the revert said.
func (e *executor) revertReason(ctx context.Context, h common.Hash, r *types.Receipt) string {
	type txGetter interface {
		TransactionByHash(ctx context.Context, hash common.Hash) (*types.Transaction, bool, error)
	}
	g, ok := e.c.(txGetter)
	if !ok {
		return "the transaction reverted"
	}
	tx, _, err := g.TransactionByHash(ctx, h)
	if err != nil {
		return "the transaction reverted"
	}
	from, err := types.Sender(types.LatestSignerForChainID(tx.ChainId()), tx)
	if err != nil {
		return "the transaction reverted"
	}
	// Replayed on the state after its block first (what the transactions
	// before it in the block did, it sees), then before it.
	call := ethereum.CallMsg{From: from, To: tx.To(), Gas: tx.Gas(), Value: tx.Value(), Data: tx.Data()}
	for _, at := range []*big.Int{r.BlockNumber, new(big.Int).Sub(r.BlockNumber, big.NewInt(1))} {
		if _, err := e.c.CallContract(ctx, call, at); err != nil {
			return revertText(err)
		}
	}
	return "the transaction reverted (out of gas, or the state changed within its block)"
}

// notFound is "no receipt yet": go-ethereum answers ethereum.NotFound, or
// while it indexes, an error saying so.
func notFound(err error) bool {
	return errors.Is(err, ethereum.NotFound) || (err != nil && strings.Contains(err.Error(), "indexing is in progress"))
}

// revertText is the readable part of a revert error. A custom error
// (a 4-byte selector and its arguments in the error's data) is named from
// the ABIs of the contracts the node knows.
func revertText(err error) string {
	s := err.Error()
	if i := strings.Index(s, "execution reverted"); i >= 0 {
		s = s[i:]
	}
	var de interface{ ErrorData() any }
	if errors.As(err, &de) {
		if hexData, ok := de.ErrorData().(string); ok {
			if name := contracts.ErrorName(common.FromHex(hexData)); name != "" {
				return "execution reverted: " + name
			}
		}
	}
	return s
}

// reverted reports whether err is the chain refusing a call (a revert),
// as opposed to not answering.
func reverted(err error) bool {
	s := err.Error()
	return strings.Contains(s, "execution reverted") || strings.Contains(s, "insufficient funds") ||
		strings.Contains(s, "gas required exceeds") || strings.Contains(s, "invalid opcode")
}

// postExec hands ev to vault id's inbox, waking it if it hibernates.
func (m *Manager) postExec(id string, ev *execEvent) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.postLocked(id, inboxEvent{exec: ev, received: time.Now()})
}
