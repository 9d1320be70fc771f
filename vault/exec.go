package vault

import (
	"context"
	"crypto/ecdsa"
	"encoding/json"
	"fmt"
	"math/big"
	"strings"
	"sync/atomic"
	"time"

	"github.com/ethereum/go-ethereum"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	"zombiezen.com/go/sqlite"

	"github.com/spells-dev/spells/contracts"
	"github.com/spells-dev/spells/delegation"
	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/vault/store"
)

// An intent's life on the vault's goroutine (ARCHITECTURE.md, "The life
// of an intent"): pending → signed → submitted → included → confirmed, or
// reverted, refused or failed. Every step is one vault transaction and a
// pushed diff; every chain call runs on the node's executor and comes back
// as an event. The vault owns its session key's nonce, and the signed
// transaction is stored before it is sent, so a crash between the two
// sends the same bytes again, never a second transaction.

// Test hooks: afterSign, when set, runs once an intent's signed
// transaction is stored, before it is sent (a crash there); skipPolicy
// makes the vault pick a delegation without checking its rules, so a test
// sees the chain refuse what the vault would have.
// They are atomic: a test sets them while other vaults run.
var (
	afterSign  atomic.Pointer[func(v *Vault) bool] // true: stop there
	skipPolicy atomic.Bool
	priceHook  atomic.Pointer[func(p *prepared)] // changes the fees a first transaction is signed with
)

// executes reports whether this node executes intents.
func (v *Vault) executes() bool { return v.m.exec != nil && v.m.cfg.Chain != nil }

// putIntent writes an intent's status, detail and transaction.
func (v *Vault) putIntent(t *store.Tx, in protocol.Intent) error {
	in.UpdatedAt = t.Now.UnixMilli()
	if err := store.UpdateIntent(v.conn, in); err != nil {
		return err
	}
	return t.Put(protocol.KindIntent, in.ID, in)
}

// settle ends an intent with status and detail.
func (v *Vault) settle(in protocol.Intent, status, detail string) {
	in.Status, in.Detail = status, detail
	if _, err := v.write(func(t *store.Tx) error { return v.putIntent(t, in) }); err != nil {
		v.fault("record intent "+in.ID, err)
		return
	}
	v.log.Info().Str("intent", in.ID).Str("status", status).Str("detail", detail).Msg("intent " + status)
}

// later posts a retry of the intent's current step after d.
func (v *Vault) later(id string, d time.Duration) {
	m, vid := v.m, v.id
	time.AfterFunc(d, func() { m.postExec(vid, &execEvent{kind: "retry", intent: id}) })
}

// resumeIntents picks up, when the vault opens, every intent that has not
// ended: a pending one is prepared, a signed one sent again (the same
// bytes), and the transactions of a submitted or included one followed.
func (v *Vault) resumeIntents() {
	if !v.executes() {
		return
	}
	ins, err := store.IntentsWith(v.conn, openStatuses...)
	if err != nil {
		v.fault("read open intents", err)
		return
	}
	for _, in := range ins {
		v.step(in)
	}
}

// step takes the intent's next step from where it is.
func (v *Vault) step(in protocol.Intent) {
	switch in.Status {
	case protocol.IntentPending:
		v.prepare(in)
	case protocol.IntentSigned:
		v.send(in)
	case protocol.IntentSubmitted:
		// The chain's node may have lost it (a restart empties its pool):
		// sending the same bytes again costs nothing if it has it.
		v.m.exec.track(v.id, in.ID, hashesOf(in))
		v.send(in)
	case protocol.IntentIncluded:
		v.m.exec.track(v.id, in.ID, hashesOf(in))
	}
}

func hashesOf(in protocol.Intent) []common.Hash {
	if in.Tx == nil {
		return nil
	}
	out := make([]common.Hash, len(in.Tx.Hashes))
	for i, h := range in.Tx.Hashes {
		out[i] = common.HexToHash(h)
	}
	return out
}

// showPortfolio pushes a portfolio frame to the vault's dashboards when
// it differs from the last one (the block number aside).
func (v *Vault) showPortfolio(f []byte) {
	if len(v.subs) == 0 || samePortfolio(f, v.portfolio) {
		return
	}
	v.portfolio = f
	v.broadcast(f)
}

func samePortfolio(a, b []byte) bool {
	if b == nil {
		return false
	}
	var x, y protocol.PortfolioFrame
	if json.Unmarshal(a, &x) != nil || json.Unmarshal(b, &y) != nil {
		return false
	}
	x.Block, y.Block = 0, 0
	ax, _ := json.Marshal(x)
	by, _ := json.Marshal(y)
	return string(ax) == string(by)
}

// openStatuses are those of intents that have not ended.
var openStatuses = []string{protocol.IntentPending, protocol.IntentSigned, protocol.IntentSubmitted, protocol.IntentIncluded}

// hasOpenIntents reports whether the vault has intents that have not
// ended (so the node wakes it at start to carry them on).
func hasOpenIntents(conn *sqlite.Conn) bool {
	found, _ := store.AnyIntentWith(conn, openStatuses...)
	return found
}

// startIntent is called after a firing's commit for its new intent.
func (v *Vault) startIntent(in protocol.Intent) {
	if in.Action.Kind == "notify" {
		v.settle(in, protocol.IntentDone, "nothing to execute")
		return
	}
	if v.executes() {
		v.prepare(in)
	}
}

// prepare checks the intent against the grants (refusing it, naming the
// rule) and asks the executor to simulate it and read what signing needs.
func (v *Vault) prepare(in protocol.Intent) {
	act, err := v.resolve(in.Action)
	if err != nil {
		v.settle(in, protocol.IntentFailed, "its action cannot execute: "+messageOf(err))
		return
	}
	if err := v.plan(act, v.m.now().UnixMilli()); err != nil {
		if r, ok := err.(refusal); ok {
			v.settle(in, protocol.IntentRefused, r.Error())
			return
		}
		v.fault("plan intent "+in.ID, err)
		return
	}
	if !v.ring.HasKey() {
		v.settle(in, protocol.IntentFailed, errKeyUnavailable.Error())
		return
	}
	c, from, owner := v.m.exec.c, v.ring.Address, v.owner
	manager := common.HexToAddress(v.m.cfg.Chain.DelegationManager)
	id := in.ID
	if !v.m.exec.submit(v.id, func(ctx context.Context) *execEvent {
		p, err := prepareCall(ctx, c, act, from, owner, manager)
		return &execEvent{kind: "prepared", intent: id, prep: p, err: err}
	}) {
		v.later(id, time.Second)
	}
}

func messageOf(err error) string {
	if pe := protocol.AsError(err); pe != nil {
		return pe.Message
	}
	return err.Error()
}

// prepareCall runs off the vault: it quotes a swap, builds the
// redemption, simulates it (estimating its gas) and reads the fees, the
// session key's nonce and balance.
func prepareCall(ctx context.Context, c Chain, act *action, from, owner, manager common.Address) (*prepared, error) {
	if sp := act.swap; sp != nil {
		pool := contracts.MustGet(contracts.ConstantProductPool).ABI
		q, _ := pool.Pack("getAmountOut", sp.sell, sp.amount)
		out, err := c.CallContract(ctx, ethereum.CallMsg{To: &sp.pool, Data: q}, nil)
		if err != nil {
			return nil, fmt.Errorf("quote the swap: %w", err)
		}
		quote := new(big.Int).SetBytes(out)
		minOut := new(big.Int).Div(new(big.Int).Mul(quote, big.NewInt(10_000-sp.slippageBps)), big.NewInt(10_000))
		data, _ := pool.Pack("swap", sp.sell, minOut, owner)
		act.steps[1].data = data
	}
	ctxs := make([][]byte, len(act.steps))
	modes := make([][32]byte, len(act.steps))
	execs := make([][]byte, len(act.steps))
	for i, st := range act.steps {
		pc, err := delegation.PermissionContext(st.deleg)
		if err != nil {
			return nil, err
		}
		ctxs[i], execs[i] = pc, delegation.SingleCall(st.target, st.value, st.data)
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
	head, err := c.HeaderByNumber(ctx, nil)
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
	return &prepared{data: data, gas: gas + gas/4, tip: tip, feeCap: feeCap, chainNonce: nonce, balance: bal}, nil
}

// onExec handles a chain result for one of the vault's intents.
func (v *Vault) onExec(ev *execEvent) {
	if v.conn == nil || !v.executes() {
		return
	}
	if ev.kind == "resume" {
		return // opening the vault resumed its intents (openExisting)
	}
	in, ok, err := store.LoadIntent(v.conn, ev.intent)
	if err != nil {
		v.fault("read intent "+ev.intent, err)
		return
	}
	if !ok {
		return
	}
	switch ev.kind {
	case "retry":
		v.step(in)
	case "prepared":
		if in.Status == protocol.IntentPending {
			v.onPrepared(in, ev)
		}
	case "sent":
		if in.Status == protocol.IntentSigned || in.Status == protocol.IntentSubmitted {
			v.onSent(in, ev)
		}
	case "receipt":
		if in.Status == protocol.IntentSubmitted || in.Status == protocol.IntentIncluded {
			v.onReceipt(in, ev)
		}
	}
}

// retryBase is the first pause before a chain call is tried again; it
// doubles up to 30 s.
// (A test shortens it.)
var retryBase atomic.Int64

func init() { retryBase.Store(int64(time.Second)) }

// backoff is how long an intent waits before trying a chain call again.
func backoff(n int) time.Duration {
	d := time.Duration(retryBase.Load()) << min(n, 5)
	return min(d, 30*time.Second)
}

// maxBumps bounds the fee raises of one intent's transaction.
const maxBumps = 10

// bump replaces the intent's stuck transaction: the same nonce and call,
// both fees raised by an eighth (a node takes a replacement from +10 %),
// stored before it is sent, and every hash followed.
func (v *Vault) bump(in protocol.Intent, ev *execEvent) {
	if len(in.Tx.Hashes) > maxBumps {
		return
	}
	old, ok := v.signedTx(in)
	if !ok {
		return
	}
	raise := func(x *big.Int) *big.Int {
		return new(big.Int).Add(new(big.Int).Div(new(big.Int).Mul(x, big.NewInt(9)), big.NewInt(8)), big.NewInt(1))
	}
	// At least an eighth more than before, and at least what the chain
	// asks for now.
	tip, feeCap := raise(old.GasTipCap()), raise(old.GasFeeCap())
	if ev.tip != nil && ev.tip.Cmp(tip) > 0 {
		tip = ev.tip
	}
	if ev.baseFee != nil {
		if want := new(big.Int).Add(tip, new(big.Int).Mul(ev.baseFee, big.NewInt(2))); want.Cmp(feeCap) > 0 {
			feeCap = want
		}
	}
	if feeCap.Cmp(tip) < 0 {
		feeCap = new(big.Int).Set(tip)
	}
	unsigned := types.NewTx(&types.DynamicFeeTx{ChainID: old.ChainId(), Nonce: old.Nonce(), GasTipCap: tip, GasFeeCap: feeCap,
		Gas: old.Gas(), To: old.To(), Value: old.Value(), Data: old.Data()})
	var signed *types.Transaction
	if err := v.withSessionKey(func(k *ecdsa.PrivateKey) error {
		var err error
		signed, err = types.SignTx(unsigned, types.LatestSignerForChainID(unsigned.ChainId()), k)
		return err
	}); err != nil {
		v.settle(in, protocol.IntentFailed, "sign a replacement: "+messageOf(err))
		return
	}
	nraw, _ := signed.MarshalBinary()
	in.Tx.Hash, in.Tx.Hashes = signed.Hash().Hex(), append(in.Tx.Hashes, signed.Hash().Hex())
	in.Tx.Tip, in.Tx.FeeCap = tip.String(), feeCap.String()
	in.Detail = fmt.Sprintf("no block took it within %s: replaced with higher fees (%d hashes tried)", v.m.cfg.BumpAfter, len(in.Tx.Hashes))
	if _, err := v.write(func(t *store.Tx) error {
		if err := store.AddSignedTx(v.conn, signed.Hash().Hex(), in.ID, nraw); err != nil {
			return err
		}
		return v.putIntent(t, in)
	}); err != nil {
		v.fault("record the replacement of intent "+in.ID, err)
		return
	}
	v.log.Info().Str("intent", in.ID).Str("tx", signed.Hash().Hex()).Str("tip", tip.String()).Msg("intent stuck; fee raised")
	v.m.exec.track(v.id, in.ID, hashesOf(in))
	v.send(in)
}

// sentAt is when the intent's newest transaction was last sent (unix ms,
// wall clock), 0 if never.
func (v *Vault) sentAt(hash string) int64 {
	at, _ := store.SentAt(v.conn, hash)
	return at
}

func (v *Vault) onPrepared(in protocol.Intent, ev *execEvent) {
	if ev.err != nil {
		if reverted(ev.err) {
			v.settle(in, protocol.IntentFailed, "the simulation refused it: "+revertText(ev.err))
			return
		}
		v.log.Warn().Err(ev.err).Str("intent", in.ID).Msg("prepare intent: the chain did not answer; trying again")
		v.later(in.ID, backoff(v.retries(in.ID)))
		return
	}
	p := ev.prep
	if h := priceHook.Load(); h != nil {
		(*h)(p)
	}
	need := new(big.Int).Mul(new(big.Int).SetUint64(p.gas), p.feeCap)
	if p.balance.Cmp(need) < 0 {
		v.settle(in, protocol.IntentFailed, fmt.Sprintf("the session key %s holds %s wei; this transaction may cost up to %s wei in gas: send it gas money, then fire again",
			v.ring.Address.Hex(), p.balance, need))
		return
	}
	act, err := v.resolve(in.Action)
	if err != nil {
		v.settle(in, protocol.IntentFailed, "its action cannot execute: "+messageOf(err))
		return
	}
	nonce := max(v.nextNonce(), p.chainNonce)
	manager := common.HexToAddress(v.m.cfg.Chain.DelegationManager)
	unsigned := types.NewTx(&types.DynamicFeeTx{ChainID: new(big.Int).SetUint64(v.m.cfg.Chain.ChainID), Nonce: nonce,
		GasTipCap: p.tip, GasFeeCap: p.feeCap, Gas: p.gas, To: &manager, Data: p.data})
	var signed *types.Transaction
	if err := v.withSessionKey(func(k *ecdsa.PrivateKey) error {
		var err error
		signed, err = types.SignTx(unsigned, types.LatestSignerForChainID(unsigned.ChainId()), k)
		return err
	}); err != nil {
		v.settle(in, protocol.IntentFailed, "sign: "+messageOf(err))
		return
	}
	raw, _ := signed.MarshalBinary()
	refused := ""
	_, err = v.write(func(t *store.Tx) error {
		// The grants' counters are checked again and reserved in the same
		// transaction that stores the signed transaction.
		if err := v.plan(act, t.Now.UnixMilli()); err != nil {
			if r, ok := err.(refusal); ok {
				refused = r.Error()
				in.Status, in.Detail = protocol.IntentRefused, refused
				return v.putIntent(t, in)
			}
			return err
		}
		if err := v.reserve(act, t.Now.UnixMilli()); err != nil {
			return err
		}
		if err := store.SetNextNonce(v.conn, nonce+1); err != nil {
			return err
		}
		if err := store.AddSignedTx(v.conn, signed.Hash().Hex(), in.ID, raw); err != nil {
			return err
		}
		in.Status, in.Detail = protocol.IntentSigned, ""
		in.Tx = &protocol.IntentTx{From: v.ring.Address.Hex(), To: manager.Hex(), Nonce: nonce, Hash: signed.Hash().Hex(),
			Hashes: []string{signed.Hash().Hex()}, Gas: p.gas, FeeCap: p.feeCap.String(), Tip: p.tip.String()}
		return v.putIntent(t, in)
	})
	if err != nil {
		v.fault("record signed intent "+in.ID, err)
		return
	}
	if refused != "" {
		return
	}
	v.log.Info().Str("intent", in.ID).Uint64("nonce", nonce).Str("tx", signed.Hash().Hex()).Msg("intent signed")
	if h := afterSign.Load(); h != nil && (*h)(v) {
		return
	}
	v.send(in)
}

func (v *Vault) nextNonce() uint64 {
	n, _ := store.NextNonce(v.conn)
	return n
}

// retries counts the chain calls an intent retried, for its backoff.
func (v *Vault) retries(id string) int {
	if v.tries == nil {
		v.tries = map[string]int{}
	}
	v.tries[id]++
	return v.tries[id]
}

// signedTx reads the intent's newest signed transaction as stored; a
// fault (logged) if it cannot.
func (v *Vault) signedTx(in protocol.Intent) (*types.Transaction, bool) {
	raw, err := store.SignedTx(v.conn, in.Tx.Hash)
	if err != nil || raw == nil {
		v.fault("read the signed transaction of intent "+in.ID, fmt.Errorf("%v (found %d bytes)", err, len(raw)))
		return nil, false
	}
	tx := new(types.Transaction)
	if err := tx.UnmarshalBinary(raw); err != nil {
		v.fault("decode the signed transaction of intent "+in.ID, err)
		return nil, false
	}
	return tx, true
}

// send sends the intent's newest signed transaction (the stored bytes).
func (v *Vault) send(in protocol.Intent) {
	if in.Tx == nil {
		return
	}
	tx, ok := v.signedTx(in)
	if !ok {
		return
	}
	c, id := v.m.exec.c, in.ID
	if !v.m.exec.submit(v.id, func(ctx context.Context) *execEvent {
		err := c.SendTransaction(ctx, tx)
		return &execEvent{kind: "sent", intent: id, hash: tx.Hash(), err: err}
	}) {
		v.later(id, time.Second)
	}
}

// alreadySent is a send error that means the node has (or had) it.
func alreadySent(err error) bool {
	s := strings.ToLower(err.Error())
	return strings.Contains(s, "already known") || strings.Contains(s, "nonce too low") || strings.Contains(s, "already imported")
}

func (v *Vault) onSent(in protocol.Intent, ev *execEvent) {
	if ev.err != nil && !alreadySent(ev.err) {
		if reverted(ev.err) {
			v.settle(in, protocol.IntentFailed, "the chain's node refused the transaction: "+ev.err.Error())
			return
		}
		v.log.Warn().Err(ev.err).Str("intent", in.ID).Msg("send intent: the chain did not take it; sending the same transaction again")
		v.later(in.ID, backoff(v.retries(in.ID)))
		return
	}
	delete(v.tries, in.ID)
	markSent := func() error {
		return store.MarkSent(v.conn, ev.hash.Hex(), time.Now().UnixMilli())
	}
	if in.Status == protocol.IntentSigned {
		in.Status = protocol.IntentSubmitted
		if _, err := v.write(func(t *store.Tx) error {
			if err := markSent(); err != nil {
				return err
			}
			return v.putIntent(t, in)
		}); err != nil {
			v.fault("record submitted intent "+in.ID, err)
			return
		}
	} else if err := markSent(); err != nil {
		v.fault("record a sent transaction of intent "+in.ID, err)
		return
	}
	v.m.exec.track(v.id, in.ID, hashesOf(in))
}

func (v *Vault) onReceipt(in protocol.Intent, ev *execEvent) {
	r := ev.receipt
	if r == nil {
		if in.Status == protocol.IntentIncluded && in.Tx.Hash == ev.hash.Hex() {
			// Its block left the chain: a reorg. The same transaction is
			// valid again; send it.
			in.Status, in.Detail = protocol.IntentSubmitted, fmt.Sprintf("its block %d left the chain (a reorg); sent again", in.Tx.Block)
			in.Tx.Block, in.Tx.Confirms, in.Tx.GasUsed = 0, 0, 0
			if _, err := v.write(func(t *store.Tx) error { return v.putIntent(t, in) }); err != nil {
				v.fault("record reorged intent "+in.ID, err)
				return
			}
			v.log.Warn().Str("intent", in.ID).Msg("intent's block left the chain; sending it again")
			v.send(in)
			return
		}
		if in.Status == protocol.IntentSubmitted && in.Tx.Hash == ev.hash.Hex() {
			if at := v.sentAt(in.Tx.Hash); at > 0 && time.Since(time.UnixMilli(at)) >= v.m.cfg.BumpAfter {
				v.bump(in, ev)
			}
		}
		return
	}
	in.Tx.Hash, in.Tx.Block, in.Tx.GasUsed = ev.hash.Hex(), r.BlockNumber.Uint64(), r.GasUsed
	if ev.head >= in.Tx.Block {
		in.Tx.Confirms = ev.head - in.Tx.Block + 1
	}
	switch {
	case r.Status != types.ReceiptStatusSuccessful:
		in.Status, in.Detail = protocol.IntentReverted, ev.reason
	case in.Tx.Confirms >= uint64(v.m.cfg.Confirmations):
		in.Status, in.Detail = protocol.IntentConfirmed, ""
	default:
		in.Status = protocol.IntentIncluded
	}
	if _, err := v.write(func(t *store.Tx) error { return v.putIntent(t, in) }); err != nil {
		v.fault("record intent receipt "+in.ID, err)
		return
	}
	if in.Status == protocol.IntentConfirmed || in.Status == protocol.IntentReverted {
		v.m.exec.untrack(hashesOf(in))
		v.log.Info().Str("intent", in.ID).Str("status", in.Status).Uint64("block", in.Tx.Block).Str("detail", in.Detail).Msg("intent " + in.Status)
	}
}
