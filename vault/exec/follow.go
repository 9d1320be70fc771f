package exec

import (
	"fmt"
	"time"

	"github.com/ethereum/go-ethereum/core/types"

	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/vault/store"
)

// Following a sent transaction: its receipt at each new head moves the
// intent (included, confirmed, reverted); a block that left the chain
// sends it again; a transaction no block takes within BumpAfter is
// replaced with higher fees.

func (r *Runner) onReceipt(in protocol.Intent, res *Result) {
	rc := res.Receipt
	if rc == nil {
		r.notInABlock(in, res)
		return
	}
	in.Tx.Hash, in.Tx.Block, in.Tx.GasUsed = res.Hash.Hex(), rc.BlockNumber.Uint64(), rc.GasUsed
	if res.Head >= in.Tx.Block {
		in.Tx.Confirms = res.Head - in.Tx.Block + 1
	}
	step := Include
	switch {
	case rc.Status != types.ReceiptStatusSuccessful:
		step, in.Detail = Revert, res.Reason
	case in.Tx.Confirms >= uint64(r.node.Confirmations):
		step, in.Detail = Confirm, ""
	}
	if !r.write("record intent receipt "+in.ID, func(t *store.Tx) error { return r.set(t, &in, step) }) {
		return
	}
	if step != Include {
		r.node.Executor.untrack(hashesOf(in))
		r.log.Info().Str("intent", in.ID).Str("status", in.Status).Uint64("block", in.Tx.Block).Str("detail", in.Detail).Msg("intent " + in.Status)
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
	case Included.String():
		in.Detail = fmt.Sprintf("its block %d left the chain (a reorg); sent again", in.Tx.Block)
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
