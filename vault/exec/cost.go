package exec

import (
	"math/big"
	"strings"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"

	"github.com/spells-dev/spells/protocol"
)

// What an intent cost and moved, read from its receipt: money as the
// owner counts it (the fee in wei, the tokens in whole units).

// transferTopic is the ERC-20 Transfer event's topic.
var transferTopic = crypto.Keccak256Hash([]byte("Transfer(address,address,uint256)"))

// readCost records on tx what its receipt says it cost and moved: the
// price per gas paid, the fee, and the ERC-20 transfers to or from owner.
func readCost(tx *protocol.IntentTx, rc *types.Receipt, c *protocol.ChainInfo, owner common.Address) {
	if rc.EffectiveGasPrice != nil {
		tx.GasPrice = rc.EffectiveGasPrice.String()
		tx.Fee = new(big.Int).Mul(rc.EffectiveGasPrice, new(big.Int).SetUint64(rc.GasUsed)).String()
	}
	tx.Moved = nil
	for _, l := range rc.Logs {
		if len(l.Topics) != 3 || l.Topics[0] != transferTopic || len(l.Data) != 32 {
			continue
		}
		from, to := common.BytesToAddress(l.Topics[1].Bytes()), common.BytesToAddress(l.Topics[2].Bytes())
		if from != owner && to != owner {
			continue
		}
		symbol, decimals := tokenName(c, l.Address)
		tx.Moved = append(tx.Moved, protocol.TokenMove{Token: symbol, Amount: plainUnits(new(big.Int).SetBytes(l.Data), decimals), In: to == owner})
	}
}

// plainUnits writes an amount of smallest units in whole units, exactly,
// without separators: 9500000 at 6 → "9.5".
func plainUnits(v *big.Int, decimals uint8) string {
	r := new(big.Rat).SetFrac(v, new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(decimals)), nil))
	return strings.TrimRight(strings.TrimRight(r.FloatString(int(decimals)), "0"), ".")
}
