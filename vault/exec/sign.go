package exec

import (
	"context"
	"fmt"
	"math/big"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"

	"github.com/spells-dev/spells/delegation"
	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/vault/keys"
	"github.com/spells-dev/spells/vault/store"
)

// Signing: the vault checks the intent against its grants, the executor
// simulates it and reads what signing needs, and the vault signs and
// stores the transaction, reserving the grants' counters, in one
// transaction. A stuck transaction is replaced: the same nonce and call,
// higher fees.

// plan checks act against the vault's grants at nowMs (see plan).
func (r *Runner) plan(act *action, nowMs int64, later bool) error {
	key, _ := r.v.SessionKey()
	skip := r.node.Hooks != nil && r.node.Hooks.SkipPolicy.Load()
	return plan(r.v.Conn(), r.node.Chain, key, act, nowMs, later, skip)
}

// resolveIntent is the intent's action as calls checked against its grant
// at nowMs: under its trigger's own grant, that grant's pinned batch
// (bound set); otherwise the action's calls, each under a standing grant.
// A refusal names the rule.
func (r *Runner) resolveIntent(in protocol.Intent, nowMs int64) (act *action, bound *grantDelegation, err error) {
	if in.Grant == "" {
		if act, err = resolve(r.node.Chain, in.Action, r.v.Owner()); err != nil {
			return nil, nil, err
		}
		return act, nil, r.plan(act, nowMs, false)
	}
	key, _ := r.v.SessionKey()
	skip := r.node.Hooks != nil && r.node.Hooks.SkipPolicy.Load()
	gd, err := triggerGrant(r.v.Conn(), r.node.Chain, key, in.Grant, nowMs, skip)
	if err != nil {
		return nil, nil, err
	}
	act = &action{kind: in.Action.Kind}
	for i, x := range gd.rules.Batch {
		act.calls = append(act.calls, &call{target: x.Target, value: x.Value, data: x.Data, what: fmt.Sprintf("call %d of the trigger's grant", i+1)})
	}
	return act, gd, nil
}

// prepare checks the intent against its grant (refusing it, naming the
// rule) and asks the executor to simulate it and read what signing needs.
func (r *Runner) prepare(in protocol.Intent) {
	act, bound, err := r.resolveIntent(in, r.now().UnixMilli())
	if err != nil {
		if rf, ok := err.(refusal); ok {
			r.settle(in, Refuse, rf.Error())
			return
		}
		if protocol.AsError(err) != nil {
			r.settle(in, Fail, "its action cannot execute: "+messageOf(err))
			return
		}
		r.v.Fault("plan intent "+in.ID, err)
		return
	}
	from, ok := r.v.SessionKey()
	if !ok {
		r.settle(in, Fail, keys.ErrUnavailable.Error())
		return
	}
	var d *delegation.Delegation
	if bound != nil {
		d = &bound.d
	}
	c := r.node.Executor.cfg.Chain
	manager := common.HexToAddress(r.node.Chain.DelegationManager)
	id := in.ID
	if !r.node.Executor.submit(r.vaultID, func(ctx context.Context) *Result {
		p, err := prepareCall(ctx, c, act, d, from, manager)
		return &Result{Kind: PrepareDone, Intent: id, Prep: p, Err: err}
	}) {
		r.later(id, time.Second)
	}
}

// onPrepared signs the intent's transaction with what the chain answered,
// and stores it, checking the grants again and reserving their counters
// in the same transaction; then sends it.
func (r *Runner) onPrepared(in protocol.Intent, res *Result) {
	if res.Err != nil {
		if IsRevert(res.Err) {
			r.settle(in, Fail, "the simulation refused it: "+revertText(res.Err))
			return
		}
		r.log.Warn().Err(res.Err).Str("intent", in.ID).Msg("prepare intent: the chain did not answer; trying again")
		r.later(in.ID, r.backoff(in.ID))
		return
	}
	p := res.Prep
	if h := r.hooks().Price.Load(); h != nil {
		(*h)(p)
	}
	from, _ := r.v.SessionKey()
	need := new(big.Int).Mul(new(big.Int).SetUint64(p.Gas), p.FeeCap)
	if p.Balance.Cmp(need) < 0 {
		r.settle(in, Fail, fmt.Sprintf("the session key %s holds %s wei; this transaction may cost up to %s wei in gas: send it gas money, then fire again",
			from.Hex(), p.Balance, need))
		return
	}
	next, err := store.NextNonce(r.v.Conn())
	if err != nil {
		r.v.Fault("read the next nonce of intent "+in.ID, err)
		return
	}
	nonce := max(next, p.ChainNonce)
	manager := common.HexToAddress(r.node.Chain.DelegationManager)
	signed, err := r.v.Sign(types.NewTx(&types.DynamicFeeTx{ChainID: new(big.Int).SetUint64(r.node.Chain.ChainID), Nonce: nonce,
		GasTipCap: p.Tip, GasFeeCap: p.FeeCap, Gas: p.Gas, To: &manager, Data: p.Data}))
	if err != nil {
		r.settle(in, Fail, "sign: "+messageOf(err))
		return
	}
	raw, _ := signed.MarshalBinary()
	refused := false
	if !r.write("record signed intent "+in.ID, func(t *store.Tx) error {
		// The grants' counters are checked again and reserved in the same
		// transaction that stores the signed transaction.
		act, bound, err := r.resolveIntent(in, t.Now.UnixMilli())
		if err != nil {
			if rf, ok := err.(refusal); ok {
				refused, in.Detail = true, rf.Error()
				return r.set(t, &in, Refuse)
			}
			if pe := protocol.AsError(err); pe != nil {
				refused, in.Detail = true, "its action cannot execute: "+pe.Message
				return r.set(t, &in, Fail)
			}
			return err
		}
		conn := r.v.Conn()
		if bound != nil {
			err = store.AddCall(conn, bound.hash.Hex())
		} else {
			err = reserve(conn, act, t.Now.UnixMilli())
		}
		if err != nil {
			return err
		}
		if err := r.grantsUsed(t, act, bound); err != nil {
			return err
		}
		if err := store.SetNextNonce(conn, nonce+1); err != nil {
			return err
		}
		if err := store.AddSignedTx(conn, signed.Hash().Hex(), in.ID, raw); err != nil {
			return err
		}
		in.Detail = ""
		in.Tx = &protocol.IntentTx{From: from.Hex(), To: manager.Hex(), Nonce: nonce, Hash: signed.Hash().Hex(),
			Hashes: []string{signed.Hash().Hex()}, Gas: p.Gas, FeeCap: p.FeeCap.String(), Tip: p.Tip.String()}
		return r.set(t, &in, Sign)
	}) || refused {
		return
	}
	r.log.Info().Str("intent", in.ID).Uint64("nonce", nonce).Str("tx", signed.Hash().Hex()).Msg("intent signed")
	if h := r.hooks().AfterSign.Load(); h != nil && (*h)() {
		return
	}
	r.send(in)
}

func (r *Runner) hooks() *Hooks {
	if r.node.Hooks == nil {
		return &noHooks
	}
	return r.node.Hooks
}

var noHooks Hooks

// maxBumps bounds the fee raises of one intent's transaction.
const maxBumps = 10

// stuckAfter is how many fee raises leave an intent stuck for its owner:
// the first, a BumpAfter in no block.
const stuckAfter = 1

// bump replaces the intent's stuck transaction: the same nonce and call,
// both fees raised by an eighth (a node takes a replacement from +10 %)
// over the last one signed, which has the highest (the one waiting may be
// an older one, mined and then dropped by a reorg), stored before it is
// sent, and every hash followed.
func (r *Runner) bump(in protocol.Intent, res *Result) {
	if len(in.Tx.Hashes) > maxBumps {
		return
	}
	old, ok := r.signedTx(in, in.Tx.Hashes[len(in.Tx.Hashes)-1])
	if !ok {
		return
	}
	raise := func(x *big.Int) *big.Int {
		return new(big.Int).Add(new(big.Int).Div(new(big.Int).Mul(x, big.NewInt(9)), big.NewInt(8)), big.NewInt(1))
	}
	// At least an eighth more than before, and at least what the chain
	// asks for now.
	tip, feeCap := raise(old.GasTipCap()), raise(old.GasFeeCap())
	if res.Tip != nil && res.Tip.Cmp(tip) > 0 {
		tip = res.Tip
	}
	if res.BaseFee != nil {
		if want := new(big.Int).Add(tip, new(big.Int).Mul(res.BaseFee, big.NewInt(2))); want.Cmp(feeCap) > 0 {
			feeCap = want
		}
	}
	if feeCap.Cmp(tip) < 0 {
		feeCap = new(big.Int).Set(tip)
	}
	signed, err := r.v.Sign(types.NewTx(&types.DynamicFeeTx{ChainID: old.ChainId(), Nonce: old.Nonce(), GasTipCap: tip, GasFeeCap: feeCap,
		Gas: old.Gas(), To: old.To(), Value: old.Value(), Data: old.Data()}))
	if err != nil {
		r.settle(in, Fail, "sign a replacement: "+messageOf(err))
		return
	}
	nraw, _ := signed.MarshalBinary()
	in.Tx.Hash, in.Tx.Hashes = signed.Hash().Hex(), append(in.Tx.Hashes, signed.Hash().Hex())
	in.Tx.Tip, in.Tx.FeeCap = tip.String(), feeCap.String()
	in.Detail = fmt.Sprintf("no block took it within %s: replaced with higher fees (%d hashes tried)", r.node.BumpAfter, len(in.Tx.Hashes))
	if !r.write("record the replacement of intent "+in.ID, func(t *store.Tx) error {
		if err := store.AddSignedTx(r.v.Conn(), signed.Hash().Hex(), in.ID, nraw); err != nil {
			return err
		}
		if len(in.Tx.Hashes) == stuckAfter+1 {
			// In no block within BumpAfter, its fees raised: the owner
			// hears of it once.
			a := protocol.Alert{Event: "stuck-" + in.ID, Kind: protocol.AlertIntentStuck, TriggerID: in.TriggerID, IntentID: in.ID,
				Title: "A " + in.Action.Kind + " is in no block yet", Detail: in.Detail, At: t.Now.UnixMilli()}
			if err := r.v.Raise(t, a); err != nil {
				return err
			}
		}
		return r.set(t, &in, Bump)
	}) {
		return
	}
	r.log.Info().Str("intent", in.ID).Str("tx", signed.Hash().Hex()).Str("tip", tip.String()).Msg("intent stuck; fee raised")
	r.node.Executor.track(r.vaultID, in.ID, hashesOf(in))
	r.send(in)
}
