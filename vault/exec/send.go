package exec

import (
	"context"
	"time"

	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/vault/store"
)

// Sending an intent's signed transaction: always the stored bytes, so a
// second send is the same transaction, never a second one.

// send asks the executor to send the intent's newest signed transaction.
func (r *Runner) send(in protocol.Intent) {
	if in.Tx == nil {
		return
	}
	tx, ok := r.signedTx(in, in.Tx.Hash)
	if !ok {
		return
	}
	c, id := r.node.Executor.cfg.Chain, in.ID
	if !r.node.Executor.submit(r.vaultID, func(ctx context.Context) *Result {
		err := c.SendTransaction(ctx, tx)
		return &Result{Kind: SendDone, Intent: id, Hash: tx.Hash(), Err: err}
	}) {
		r.later(id, time.Second)
	}
}

// onSent records that the chain's node took the transaction (the first
// time: signed → submitted) and follows its hashes; a node that did not
// answer is asked again, with backoff.
func (r *Runner) onSent(in protocol.Intent, res *Result) {
	if res.Err != nil && !alreadySent(res.Err) {
		if IsRevert(res.Err) {
			r.settle(in, Fail, "the chain's node refused the transaction: "+res.Err.Error())
			return
		}
		r.log.Warn().Err(res.Err).Str("intent", in.ID).Msg("send intent: the chain did not take it; sending the same transaction again")
		r.later(in.ID, r.backoff(in.ID))
		return
	}
	delete(r.tries, in.ID)
	at := r.now().UnixMilli()
	if in.Status == Signed.String() {
		if !r.write("record submitted intent "+in.ID, func(t *store.Tx) error {
			if err := store.MarkSent(r.v.Conn(), res.Hash.Hex(), at); err != nil {
				return err
			}
			return r.set(t, &in, Send)
		}) {
			return
		}
	} else if err := store.MarkSent(r.v.Conn(), res.Hash.Hex(), at); err != nil {
		r.v.Fault("record a sent transaction of intent "+in.ID, err)
		return
	}
	r.node.Executor.track(r.vaultID, in.ID, hashesOf(in))
}
