package exec

import (
	"errors"
	"strings"

	"github.com/ethereum/go-ethereum"
	"github.com/ethereum/go-ethereum/common"

	"github.com/spells-dev/spells/contracts"
)

// What a chain's errors mean to an intent: a refusal (a revert), a node
// that did not answer, or one that has the transaction already.

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

// IsRevert reports whether err is the chain refusing a call (a revert),
// as opposed to not answering.
func IsRevert(err error) bool {
	s := err.Error()
	return strings.Contains(s, "execution reverted") || strings.Contains(s, "insufficient funds") ||
		strings.Contains(s, "gas required exceeds") || strings.Contains(s, "invalid opcode")
}

// alreadySent is a send error that means the node has (or had) it.
func alreadySent(err error) bool {
	s := strings.ToLower(err.Error())
	return strings.Contains(s, "already known") || strings.Contains(s, "nonce too low") || strings.Contains(s, "already imported")
}
