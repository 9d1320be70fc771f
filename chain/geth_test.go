package chain

import (
	"context"
	"errors"
	"math/big"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"

	"github.com/spells-dev/spells/chain/gethtest"
	"github.com/spells-dev/spells/contracts"
)

// TestJSONRPCAgainstGeth: the JSON-RPC path against a real geth --dev
// process: the chain id is checked when connecting, and the contracts a
// node executes with deploy and work there as on the dev chain.
func TestJSONRPCAgainstGeth(t *testing.T) {
	g := gethtest.Start(t)
	ctx := context.Background()
	if _, err := Dial(ctx, g.URL, 1, 5*time.Second); !errors.Is(err, ErrChainID) {
		t.Fatalf("naming chain 1 for geth --dev: err = %v, want %v", err, ErrChainID)
	}
	c, err := Dial(ctx, g.URL, gethtest.ChainID, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	info, err := Deploy(ctx, c, gethtest.DevKey, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := Verify(ctx, c, info); err != nil {
		t.Fatal(err)
	}
	price := callView(t, c, contracts.ConstantProductPool, common.HexToAddress(info.Pool.Address), "price").(*big.Int)
	if price.Cmp(Units(2500)) != 0 {
		t.Fatalf("pool price on geth %s", price)
	}
	// A deployment that names another chain, or contracts that are not
	// there, is refused.
	other := info
	other.ChainID = 1
	if err := Verify(ctx, c, other); !errors.Is(err, ErrChainID) {
		t.Fatalf("a deployment for chain 1: err = %v", err)
	}
	other = info
	other.DelegationManager = common.HexToAddress("0x1234").Hex()
	if err := Verify(ctx, c, other); err == nil {
		t.Fatal("a deployment naming an address without code was accepted")
	}
}
