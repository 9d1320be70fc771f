package exec

import (
	"fmt"

	"github.com/spells-dev/spells/protocol"
)

// Status is where an intent stands in its life. On the wire and in the
// vault's file it is the protocol's string.
type Status uint8

// An intent's statuses (ARCHITECTURE.md draws the machine).
const (
	Pending   Status = iota // recorded by a firing; not signed yet
	Signed                  // its transaction signed and stored, counters reserved
	Submitted               // its transaction sent; no block holds it yet
	Included                // in a block, fewer than the confirmations deep
	Confirmed               // deep enough: it happened (followed until its block is final)
	Final                   // its block is final
	Reverted                // in a block, and the chain refused it
	Refused                 // the vault's own check of the grants refused it
	Failed                  // it cannot execute (named why)
	Done                    // nothing to execute (a notify)
	numStatuses
)

var statusNames = [numStatuses]string{protocol.IntentPending, protocol.IntentSigned, protocol.IntentSubmitted,
	protocol.IntentIncluded, protocol.IntentConfirmed, protocol.IntentFinal, protocol.IntentReverted, protocol.IntentRefused,
	protocol.IntentFailed, protocol.IntentDone}

func (s Status) String() string {
	if s < numStatuses {
		return statusNames[s]
	}
	return fmt.Sprintf("status(%d)", uint8(s))
}

// ParseStatus reads a status as the protocol writes it.
func ParseStatus(s string) (Status, bool) {
	for i, n := range statusNames {
		if n == s {
			return Status(i), true
		}
	}
	return 0, false
}

// Ended reports whether the intent's life is over: a confirmed intent is
// still followed (a reorg deeper than the confirmations takes it back)
// until its block is final.
func (s Status) Ended() bool { return s >= Final }

// Step is what moves an intent from one status to the next.
type Step uint8

// The steps of an intent's life.
const (
	Sign     Step = iota // the vault signed its transaction (pending → signed)
	Send                 // the chain's node took the transaction (signed → submitted)
	Include              // a block holds it, not deep enough yet
	Confirm              // a block holds it, deep enough
	Finalize             // the block holding it is final
	Revert               // a block holds it, and it reverted
	Reorg                // its block left the chain: it is sent again
	Bump                 // replaced with higher fees, the same nonce
	Refuse               // the vault's check of the grants refused it
	Fail                 // it cannot execute
	Finish               // nothing to execute
	numSteps
)

var stepNames = [numSteps]string{"sign", "send", "include", "confirm", "finalize", "revert", "reorg", "bump", "refuse", "fail", "finish"}

func (s Step) String() string {
	if s < numSteps {
		return stepNames[s]
	}
	return fmt.Sprintf("step(%d)", uint8(s))
}

// moves is the one table of an intent's allowed moves: from a status, a
// step leads to exactly one status; what is not here is not allowed.
var moves = [numStatuses]map[Step]Status{
	Pending:   {Sign: Signed, Refuse: Refused, Fail: Failed, Finish: Done},
	Signed:    {Send: Submitted, Fail: Failed},
	Submitted: {Include: Included, Confirm: Confirmed, Finalize: Final, Revert: Reverted, Bump: Submitted, Fail: Failed},
	Included:  {Include: Included, Confirm: Confirmed, Finalize: Final, Revert: Reverted, Reorg: Submitted},
	// A reorg deeper than the confirmations: the block moved (Confirm
	// records the new one), the transaction reverted there, or it is in no
	// block and is sent again.
	Confirmed: {Include: Included, Confirm: Confirmed, Finalize: Final, Revert: Reverted, Reorg: Submitted},
}

// Move is where step takes an intent in status from; ok is false when the
// table does not allow it.
func Move(from Status, step Step) (to Status, ok bool) {
	if from >= numStatuses {
		return 0, false
	}
	to, ok = moves[from][step]
	return to, ok
}

// OpenStatuses are the statuses of intents whose life is not over, as the
// protocol writes them: a vault that opens carries them on.
func OpenStatuses() []string {
	var out []string
	for s := Status(0); s < numStatuses; s++ {
		if !s.Ended() {
			out = append(out, s.String())
		}
	}
	return out
}
