package exec

import (
	"fmt"
	"time"

	"github.com/ethereum/go-ethereum/core/types"

	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/vault/store"
)

// Following a sent transaction: its receipt at each new head moves the
// intent (included, confirmed, final, reverted); a block that left the
// chain sends it again, even after the intent was confirmed (a reorg
// deeper than the confirmations), until its block is final; a transaction
// no block takes within BumpAfter is replaced with higher fees.

func (r *Runner) onReceipt(in protocol.Intent, res *Result) {
	rc := res.Receipt
	if rc == nil {
		r.notInABlock(in, res)
		return
	}
	was := in.Tx.Block
	in.Tx.Hash, in.Tx.Block, in.Tx.GasUsed = res.Hash.Hex(), rc.BlockNumber.Uint64(), rc.GasUsed
	readCost(in.Tx, rc, r.node.Chain, r.v.Owner())
	if res.Head >= in.Tx.Block {
		in.Tx.Confirms = res.Head - in.Tx.Block + 1
	}
	confirmed := in.Status == Confirmed.String()
	step := Include
	switch {
	case rc.Status != types.ReceiptStatusSuccessful:
		step, in.Detail = Revert, res.Reason
		if confirmed {
			in.Detail = fmt.Sprintf("a reorg deeper than the %d confirmations moved it to block %d, where it reverted: %s", r.node.Confirmations, in.Tx.Block, res.Reason)
		}
	case in.Tx.Confirms >= uint64(r.node.Confirmations) && res.Final >= in.Tx.Block:
		step = Finalize
		if !confirmed {
			in.Detail = ""
		}
	case in.Tx.Confirms >= uint64(r.node.Confirmations):
		step = Confirm
		if confirmed && was == in.Tx.Block {
			return // nothing new until its block is final
		}
		in.Detail = ""
		if confirmed {
			in.Detail = fmt.Sprintf("a reorg deeper than the %d confirmations moved it from block %d to block %d", r.node.Confirmations, was, in.Tx.Block)
		}
	case confirmed:
		// Its block moved and the new one is not deep enough yet.
		in.Detail = fmt.Sprintf("a reorg deeper than the %d confirmations moved it from block %d to block %d", r.node.Confirmations, was, in.Tx.Block)
	}
	if !r.write("record intent receipt "+in.ID, func(t *store.Tx) error { return r.set(t, &in, step) }) {
		return
	}
	if step == Finalize || step == Revert {
		r.node.Executor.untrack(hashesOf(in))
	}
	if step != Include && !(step == Finalize && confirmed) {
		ev := r.log.Info()
		if confirmed {
			ev = r.log.Warn()
		}
		ev.Str("intent", in.ID).Str("status", in.Status).Uint64("block", in.Tx.Block).Str("detail", in.Detail).Msg("intent " + in.Status)
	}
}

// notInABlock handles a head at which the intent's newest transaction is
// in no block: its block left the chain (a reorg: the same transaction is
// valid again, and is sent again), or it waits, and is replaced once it
// has waited BumpAfter.
func (r *Runner) notInABlock(in protocol.Intent, res *Result) {
	if in.Tx.Hash != res.Hash.Hex() {
		return
	}
	switch in.Status {
	case Included.String(), Confirmed.String():
		in.Detail = fmt.Sprintf("its block %d left the chain (a reorg); sent again", in.Tx.Block)
		if in.Status == Confirmed.String() {
			in.Detail = fmt.Sprintf("its block %d left the chain after it was confirmed (a reorg deeper than the %d confirmations); sent again", in.Tx.Block, r.node.Confirmations)
		}
		in.Tx.Block, in.Tx.Confirms, in.Tx.GasUsed = 0, 0, 0
		if !r.write("record reorged intent "+in.ID, func(t *store.Tx) error { return r.set(t, &in, Reorg) }) {
			return
		}
		r.log.Warn().Str("intent", in.ID).Msg("intent's block left the chain; sending it again")
		r.send(in)
	case Submitted.String():
		at, err := store.SentAt(r.v.Conn(), in.Tx.Hash)
		if err == nil && at > 0 && r.now().Sub(time.UnixMilli(at)) >= r.node.BumpAfter {
			r.bump(in, res)
		}
	}
}
