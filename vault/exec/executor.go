package exec

import (
	"context"
	"encoding/json"
	"fmt"
	"math/big"
	"strings"
	"sync"
	"time"

	"github.com/ethereum/go-ethereum"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/rpc"
	"github.com/rs/zerolog"

	"github.com/spells-dev/spells/contracts"
	"github.com/spells-dev/spells/delegation"
	"github.com/spells-dev/spells/internal/clock"
	"github.com/spells-dev/spells/protocol"
)

// The node's side of execution: a pool of workers that make the chain
// calls vaults ask for, one watcher that follows new blocks and the
// receipts vaults wait on, and the schedule of intents' retries. None of
// them ever runs on a vault's goroutine: each result is posted to the
// vault's inbox (like a signal), which wakes a hibernated vault.

// Kind is what a Result reports.
type Kind uint8

// The kinds of results.
const (
	ResumeIntents      Kind = iota // the vault should carry on its open intents (after a start)
	RetryStep                      // an intent's step is due again
	PrepareDone                    // the chain's answers for signing (or why not)
	SendDone                       // the chain's node took the transaction (or not)
	ReceiptSeen                    // the head, and the receipt of a transaction followed (nil: in no block)
	PortfolioRead                  // the vault's balances, to show
	DelegationDisabled             // the owner disabled a delegation on-chain (Hash: its hash; Head: the block)
)

// Result is one chain result for one vault.
type Result struct {
	Kind   Kind
	Intent string

	Prep    *Prepared      // PrepareDone
	Hash    common.Hash    // SendDone, ReceiptSeen
	Receipt *types.Receipt // ReceiptSeen; nil while the transaction is in no block
	Head    uint64
	Final   uint64 // ReceiptSeen: the newest final block (0: none known)
	Reason  string // a revert's reason
	// What a transaction needs now to be mined (for a replacement): the
	// suggested tip and the head's base fee.
	Tip, BaseFee *big.Int
	Portfolio    []byte // PortfolioRead: the frame to show, if it changed

	Err error
}

// Prepared is what a vault needs from the chain to sign an intent's
// transaction.
type Prepared struct {
	Data       []byte // redeemDelegations calldata
	Gas        uint64
	Tip        *big.Int
	FeeCap     *big.Int
	ChainNonce uint64
	Balance    *big.Int // the session key's
}

// Account is a vault whose balances a dashboard shows: its owner's and its
// session key's.
type Account struct {
	ID         string // the vault's
	Owner, Key common.Address
}

// ExecutorConfig configures an Executor.
type ExecutorConfig struct {
	Chain     Chain
	Info      *protocol.ChainInfo
	PollEvery time.Duration // how often the watcher asks for a new head (default 1s)
	// Finality is how deep a block must be to be final (its own
	// included); 0: the chain's own finalized block, or FallbackFinality
	// deep on a chain that names none.
	Finality int
	Clock    clock.Clock // the retries' (default clock.Real)
	Logger   zerolog.Logger
	// Post hands a result to vault id (its inbox, waking it if it
	// hibernates). It must not block.
	Post func(vault string, r *Result)
	// Watched lists up to max vaults with a dashboard open, for the
	// watcher to read their balances at each new head.
	Watched func(max int) []Account
}

type job struct {
	vault string
	run   func(ctx context.Context) *Result
}

type followed struct {
	vault, intent string
}

// Executor runs the chain calls of a node's vaults. NewExecutor, then
// Start; Close stops every goroutine it started and waits for them.
type Executor struct {
	cfg     ExecutorConfig
	jobs    chan job
	retries *clock.Schedule

	mu     sync.Mutex
	follow map[common.Hash]followed

	// mined is the watcher's (receipts): each followed transaction's
	// receipt once read, with its revert reason, until it is no longer
	// followed.
	mined map[common.Hash]minedReceipt

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

const (
	execWorkers = 4
	maxJobs     = 4096
	callTimeout = 30 * time.Second
)

// NewExecutor prepares an executor; it calls nothing until Start.
func NewExecutor(cfg ExecutorConfig) *Executor {
	if cfg.PollEvery <= 0 {
		cfg.PollEvery = time.Second
	}
	if cfg.Clock == nil {
		cfg.Clock = clock.Real{}
	}
	return &Executor{cfg: cfg, jobs: make(chan job, maxJobs), retries: clock.NewSchedule(cfg.Clock), follow: map[common.Hash]followed{},
		mined: map[common.Hash]minedReceipt{}}
}

// Start runs the workers, the watcher and the retries.
func (x *Executor) Start() {
	ctx, cancel := context.WithCancel(context.Background())
	x.cancel = cancel
	for i := 0; i < execWorkers; i++ {
		x.wg.Add(1)
		go func() {
			defer x.wg.Done()
			x.work(ctx)
		}()
	}
	x.wg.Add(2)
	go func() {
		defer x.wg.Done()
		x.watch(ctx)
	}()
	go func() {
		defer x.wg.Done()
		x.retries.Run(ctx, x.retryDue)
	}()
}

// Close stops the executor and waits for its goroutines; a chain call in
// flight is cancelled, and its result dropped (the vault asks again when
// it next opens).
func (x *Executor) Close() {
	if x.cancel != nil {
		x.cancel()
	}
	x.wg.Wait()
}

func (x *Executor) work(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case j := <-x.jobs:
			cctx, cancel := context.WithTimeout(ctx, callTimeout)
			r := j.run(cctx)
			cancel()
			if r != nil && ctx.Err() == nil {
				x.cfg.Post(j.vault, r)
			}
		}
	}
}

// submit queues a chain call for vault id; false when the queue is full
// (the vault tries again later).
func (x *Executor) submit(vault string, run func(ctx context.Context) *Result) bool {
	select {
	case x.jobs <- job{vault: vault, run: run}:
		return true
	default:
		return false
	}
}

// retry makes intent's step of vault due again after d (the injected
// clock's time).
func (x *Executor) retry(vault, intent string, d time.Duration) {
	x.retries.Set(vault+"/"+intent, x.cfg.Clock.Now().Add(d).UnixMilli())
}

func (x *Executor) retryDue(key string) {
	vault, intent, _ := strings.Cut(key, "/")
	x.cfg.Post(vault, &Result{Kind: RetryStep, Intent: intent})
}

func (x *Executor) track(vault, intent string, hashes []common.Hash) {
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, h := range hashes {
		x.follow[h] = followed{vault: vault, intent: intent}
	}
}

func (x *Executor) untrack(hashes []common.Hash) {
	x.mu.Lock()
	defer x.mu.Unlock()
	for _, h := range hashes {
		delete(x.follow, h)
	}
}

// watch looks for a new head every PollEvery and, at each, for the receipt
// of every transaction followed, telling its vault what it found. Its pace
// is wall time: it paces questions to the chain's node, and decides
// nothing (the vaults decide on the injected clock).
func (x *Executor) watch(ctx context.Context) {
	t := time.NewTicker(x.cfg.PollEvery)
	defer t.Stop()
	var last uint64
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		head, err := x.cfg.Chain.BlockNumber(ctx)
		if err != nil {
			if ctx.Err() == nil {
				x.cfg.Logger.Warn().Err(err).Msg("chain watcher: read the head")
			}
			continue
		}
		if head == last {
			continue
		}
		from := head
		if last != 0 && head > last && head-last <= maxLogBlocks {
			from = last + 1
		}
		last = head
		x.disabled(ctx, from, head)
		x.portfolios(ctx, head)
		x.receipts(ctx, head)
	}
}

// maxLogBlocks bounds the blocks one read of the manager's events spans;
// after a longer gap only the newest block is read (a delegation disabled
// in the gap is refused by the chain at the next simulation).
const maxLogBlocks = 1000

var disabledEvent = contracts.MustGet(contracts.DelegationManager).ABI.Events["DisabledDelegation"]

// disabled reads the DelegationManager's DisabledDelegation events of
// blocks from..to and tells each delegator's vault: it stops using that
// delegation at once.
func (x *Executor) disabled(ctx context.Context, from, to uint64) {
	if x.cfg.Info == nil || !common.IsHexAddress(x.cfg.Info.DelegationManager) {
		return
	}
	logs, err := x.cfg.Chain.FilterLogs(ctx, ethereum.FilterQuery{FromBlock: new(big.Int).SetUint64(from), ToBlock: new(big.Int).SetUint64(to),
		Addresses: []common.Address{common.HexToAddress(x.cfg.Info.DelegationManager)}, Topics: [][]common.Hash{{disabledEvent.ID}}})
	if err != nil {
		if ctx.Err() == nil {
			x.cfg.Logger.Warn().Err(err).Uint64("from", from).Uint64("to", to).Msg("chain watcher: read the disabled delegations")
		}
		return
	}
	for _, l := range logs {
		if len(l.Topics) < 3 || l.Removed {
			continue
		}
		delegator := common.BytesToAddress(l.Topics[2].Bytes())
		x.cfg.Post(strings.ToLower(delegator.Hex()), &Result{Kind: DelegationDisabled, Hash: l.Topics[1], Head: l.BlockNumber})
	}
}

// minedReceipt is a receipt the watcher read, and why it reverted.
type minedReceipt struct {
	r      *types.Receipt
	reason string
}

// receipts reads, at a new head, the receipt of every transaction
// followed and posts it to its vault. A receipt read at an earlier head is
// not read again while its block is still the chain's at that height (one
// header a block, not a receipt a transaction, for the transactions
// followed to finality); a block replaced there (a reorg) has each of its
// receipts read again.
func (x *Executor) receipts(ctx context.Context, head uint64) {
	x.mu.Lock()
	hs := make(map[common.Hash]followed, len(x.follow))
	for h, f := range x.follow {
		hs[h] = f
	}
	x.mu.Unlock()
	for h := range x.mined {
		if _, ok := hs[h]; !ok {
			delete(x.mined, h)
		}
	}
	if len(hs) == 0 {
		return
	}
	var tip, baseFee *big.Int
	if hd, err := x.cfg.Chain.HeaderByNumber(ctx, nil); err == nil {
		baseFee = hd.BaseFee
	}
	final := x.final(ctx, head)
	if t, err := x.cfg.Chain.SuggestGasTipCap(ctx); err == nil {
		tip = t
	}
	canonical := map[uint64]common.Hash{} // block number → the chain's block there now, read once this head
	for h, f := range hs {
		m, ok := x.mined[h]
		if ok {
			n := m.r.BlockNumber.Uint64()
			bh, read := canonical[n]
			if !read {
				if hd, err := x.cfg.Chain.HeaderByNumber(ctx, m.r.BlockNumber); err == nil {
					bh = hd.Hash()
				}
				canonical[n] = bh
			}
			ok = bh == m.r.BlockHash
		}
		if !ok {
			r, err := x.cfg.Chain.TransactionReceipt(ctx, h)
			if err != nil && !notFound(err) {
				if ctx.Err() == nil {
					x.cfg.Logger.Warn().Err(err).Str("tx", h.Hex()).Msg("chain watcher: read a receipt")
				}
				continue
			}
			m = minedReceipt{r: r}
			if r != nil && r.Status != types.ReceiptStatusSuccessful {
				m.reason = x.revertReason(ctx, h, r)
			}
			if r != nil && r.BlockNumber != nil {
				x.mined[h] = m
			} else {
				delete(x.mined, h)
			}
		}
		x.cfg.Post(f.vault, &Result{Kind: ReceiptSeen, Intent: f.intent, Hash: h, Receipt: m.r, Head: head, Final: final,
			Tip: tip, BaseFee: baseFee, Reason: m.reason})
	}
}

// FallbackFinality is the depth taken as final on a chain that names no
// finalized block (and no -finality is set).
const FallbackFinality = 64

// final is the newest final block at head: Finality deep, or the chain's
// finalized block.
func (x *Executor) final(ctx context.Context, head uint64) uint64 {
	depth := uint64(x.cfg.Finality)
	if depth == 0 {
		if hd, err := x.cfg.Chain.HeaderByNumber(ctx, big.NewInt(int64(rpc.FinalizedBlockNumber))); err == nil && hd.Number != nil {
			return hd.Number.Uint64()
		}
		depth = FallbackFinality
	}
	if head+1 < depth {
		return 0
	}
	return head + 1 - depth
}

// maxPortfolios bounds the vaults whose balances are read at one block.
const maxPortfolios = 256

// portfolios reads, for each vault with a dashboard open (up to
// maxPortfolios), its owner's balances and its session key's, and posts
// them; the vault pushes them when they changed.
func (x *Executor) portfolios(ctx context.Context, head uint64) {
	if x.cfg.Watched == nil || x.cfg.Info == nil {
		return
	}
	erc20 := contracts.MustGet(contracts.DemoToken).ABI
	block := new(big.Int).SetUint64(head)
	for _, w := range x.cfg.Watched(maxPortfolios) {
		acct := &protocol.Holdings{Address: w.Owner.Hex(), Tokens: map[string]string{}}
		key := &protocol.Holdings{Address: w.Key.Hex()}
		nat, err := x.cfg.Chain.BalanceAt(ctx, w.Owner, block)
		if err != nil {
			continue
		}
		acct.Native = nat.String()
		kb, err := x.cfg.Chain.BalanceAt(ctx, w.Key, block)
		if err != nil {
			continue
		}
		key.Native = kb.String()
		for _, t := range x.cfg.Info.Tokens {
			data, _ := erc20.Pack("balanceOf", w.Owner)
			to := common.HexToAddress(t.Address)
			out, err := x.cfg.Chain.CallContract(ctx, ethereum.CallMsg{To: &to, Data: data}, block)
			if err != nil {
				continue
			}
			acct.Tokens[t.Symbol] = new(big.Int).SetBytes(out).String()
		}
		f, _ := json.Marshal(protocol.PortfolioFrame{Type: protocol.TypePortfolio, Vault: w.Owner.Hex(), Block: head, Account: acct, Key: key})
		x.cfg.Post(w.ID, &Result{Kind: PortfolioRead, Portfolio: f})
	}
}

// revertReason replays a reverted transaction on the state before its
// block and returns what the revert said.
func (x *Executor) revertReason(ctx context.Context, h common.Hash, r *types.Receipt) string {
	type txGetter interface {
		TransactionByHash(ctx context.Context, hash common.Hash) (*types.Transaction, bool, error)
	}
	g, ok := x.cfg.Chain.(txGetter)
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
		if _, err := x.cfg.Chain.CallContract(ctx, call, at); err != nil {
			return revertText(err)
		}
	}
	return "the transaction reverted (out of gas, or the state changed within its block)"
}

// swapDeadline is how long a swap prepared without a signed deadline may
// wait for a block: the router's deadline, from the newest block's time.
const swapDeadline = 20 * 60

// prepareCall runs off the vault: it quotes a swap that has no signed
// minimum output, builds the redemption (each call under its own
// delegation, or, with bound, the whole batch under the trigger's own
// delegation), simulates it (estimating its gas) and reads the fees, the
// session key's nonce and balance.
func prepareCall(ctx context.Context, c Chain, act *action, bound *delegation.Delegation, from, manager common.Address) (*Prepared, error) {
	head, err := c.HeaderByNumber(ctx, nil)
	if err != nil {
		return nil, err
	}
	if sp := act.swap; sp != nil && bound == nil {
		minOut := sp.minOut
		if minOut == nil {
			q, _ := routerABI.Pack("getAmountsOut", sp.amount, []common.Address{sp.sell, sp.buy})
			out, err := c.CallContract(ctx, ethereum.CallMsg{To: &sp.router, Data: q}, nil)
			if err != nil {
				return nil, fmt.Errorf("quote the swap: %w", err)
			}
			amounts, err := routerABI.Unpack("getAmountsOut", out)
			if err != nil || len(amounts) != 1 {
				return nil, fmt.Errorf("quote the swap: the router answered %d bytes that are not a list of amounts", len(out))
			}
			path := amounts[0].([]*big.Int)
			if len(path) != 2 {
				return nil, fmt.Errorf("quote the swap: the router answered %d amounts for a path of 2", len(path))
			}
			minOut = new(big.Int).Div(new(big.Int).Mul(path[1], big.NewInt(10_000-sp.slippageBps)), big.NewInt(10_000))
		}
		sp.fill(act, minOut, head.Time+swapDeadline)
	}
	var ctxs, execs [][]byte
	var modes [][32]byte
	if bound != nil {
		pc, err := delegation.PermissionContext(*bound)
		if err != nil {
			return nil, err
		}
		ctxs, modes, execs = [][]byte{pc}, [][32]byte{delegation.BatchMode}, [][]byte{delegation.EncodeBatch(act.batch())}
	} else {
		for _, st := range act.calls {
			pc, err := delegation.PermissionContext(st.deleg)
			if err != nil {
				return nil, err
			}
			ctxs, modes, execs = append(ctxs, pc), append(modes, [32]byte{}), append(execs, delegation.SingleCall(st.target, st.value, st.data))
		}
	}
	data, err := contracts.MustGet(contracts.DelegationManager).ABI.Pack("redeemDelegations", ctxs, modes, execs)
	if err != nil {
		return nil, err
	}
	gas, err := c.EstimateGas(ctx, ethereum.CallMsg{From: from, To: &manager, Data: data})
	if err != nil {
		return nil, err
	}
	tip, err := c.SuggestGasTipCap(ctx)
	if err != nil {
		return nil, err
	}
	nonce, err := c.NonceAt(ctx, from, nil)
	if err != nil {
		return nil, err
	}
	bal, err := c.BalanceAt(ctx, from, nil)
	if err != nil {
		return nil, err
	}
	feeCap := new(big.Int).Add(tip, new(big.Int).Mul(head.BaseFee, big.NewInt(2)))
	return &Prepared{Data: data, Gas: gas + gas/4, Tip: tip, FeeCap: feeCap, ChainNonce: nonce, Balance: bal}, nil
}
