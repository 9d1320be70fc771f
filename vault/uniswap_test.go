package vault

import (
	"context"
	"crypto/ecdsa"
	"encoding/json"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/accounts/abi"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"

	"github.com/spells-dev/spells/chain"
	"github.com/spells-dev/spells/protocol"
)

// uniswap is a contract of the Uniswap V2 npm packages, as their build
// artifacts publish it (GPL bytecode: the tests deploy it, the binary never
// holds it).
type uniswap struct {
	abi  abi.ABI
	code []byte
}

// uniswapArtifact reads one of the packages' artifacts from
// $SPELLS_UNISWAP_V2 (.ci/run fetches them), or skips (fails, under
// SPELLS_REQUIRE_UNISWAP=1).
func uniswapArtifact(t *testing.T, pkg, name string) uniswap {
	t.Helper()
	dir := os.Getenv("SPELLS_UNISWAP_V2")
	if dir == "" {
		msg := "no Uniswap V2 artifacts: set SPELLS_UNISWAP_V2 to a directory holding core/ and periphery/ of @uniswap/v2-core@1.0.1 and @uniswap/v2-periphery@1.1.0-beta.0 (.ci/run fetches them)"
		if os.Getenv("SPELLS_REQUIRE_UNISWAP") == "1" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	b, err := os.ReadFile(filepath.Join(dir, pkg, "build", name+".json"))
	if err != nil {
		t.Fatal(err)
	}
	var raw struct {
		ABI      json.RawMessage `json:"abi"`
		Bytecode string          `json:"bytecode"`
	}
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatal(err)
	}
	a, err := abi.JSON(strings.NewReader(string(raw.ABI)))
	if err != nil {
		t.Fatal(err)
	}
	return uniswap{abi: a, code: common.FromHex(raw.Bytecode)}
}

// deployer sends a funded key's transactions to a dev chain and waits for
// each to be mined.
type deployer struct {
	t   *testing.T
	c   *chain.Client
	key *ecdsa.PrivateKey
}

func (d deployer) send(to *common.Address, data []byte) *types.Receipt {
	d.t.Helper()
	ctx := context.Background()
	from := crypto.PubkeyToAddress(d.key.PublicKey)
	nonce, err := d.c.PendingNonceAt(ctx, from)
	if err != nil {
		d.t.Fatal(err)
	}
	id := new(big.Int).SetUint64(d.c.ID())
	tx, err := types.SignNewTx(d.key, types.LatestSignerForChainID(id), &types.DynamicFeeTx{ChainID: id, Nonce: nonce,
		GasTipCap: big.NewInt(1e9), GasFeeCap: big.NewInt(1e11), Gas: 6_000_000, To: to, Data: data})
	if err != nil {
		d.t.Fatal(err)
	}
	if err := d.c.SendTransaction(ctx, tx); err != nil {
		d.t.Fatal(err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		r, err := d.c.TransactionReceipt(ctx, tx.Hash())
		if err == nil {
			if r.Status != types.ReceiptStatusSuccessful {
				d.t.Fatalf("transaction %s reverted", tx.Hash().Hex())
			}
			return r
		}
		if time.Now().After(deadline) {
			d.t.Fatalf("transaction %s not mined in 30 s", tx.Hash().Hex())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (d deployer) create(u uniswap, args ...any) common.Address {
	d.t.Helper()
	ctor, err := u.abi.Pack("", args...)
	if err != nil {
		d.t.Fatal(err)
	}
	return d.send(nil, append(append([]byte{}, u.code...), ctor...)).ContractAddress
}

func (d deployer) call(to common.Address, a abi.ABI, method string, args ...any) {
	d.t.Helper()
	data, err := a.Pack(method, args...)
	if err != nil {
		d.t.Fatal(err)
	}
	d.send(&to, data)
}

// TestASwapThroughUniswapV2: the swap action, under a trigger's own grant,
// works unchanged against the real Uniswap V2 router (Router02 over the
// published factory and pair): the vault quotes nothing it did not sign,
// the router pays the owner at least the signed minimum, and a minimum
// the pool cannot give is refused by the simulation with the router's own
// reason.
func TestASwapThroughUniswapV2(t *testing.T) {
	factoryArt := uniswapArtifact(t, "core", "UniswapV2Factory")
	routerArt := uniswapArtifact(t, "periphery", "UniswapV2Router02")
	wethArt := uniswapArtifact(t, "periphery", "WETH9")
	erc20 := uniswapArtifact(t, "core", "ERC20").abi
	var router common.Address
	ce := newChainEnvPrepared(t, nil, func(dev *chain.Dev, info *protocol.ChainInfo) {
		key, _ := crypto.GenerateKey()
		lp := crypto.PubkeyToAddress(key.PublicKey)
		dETH, dUSD := common.HexToAddress(info.Tokens[0].Address), common.HexToAddress(info.Tokens[1].Address)
		if err := dev.Fund(context.Background(), lp, chain.Units(10), map[string]*big.Int{"dETH": chain.Units(1000), "dUSD": chain.Units(2_500_000)}); err != nil {
			t.Fatal(err)
		}
		d := deployer{t: t, c: dev.Client(), key: key}
		weth := d.create(wethArt)
		factory := d.create(factoryArt, lp)
		router = d.create(routerArt, factory, weth)
		d.call(dETH, erc20, "approve", router, chain.Units(1000))
		d.call(dUSD, erc20, "approve", router, chain.Units(2_500_000))
		d.call(router, routerArt.abi, "addLiquidity", dETH, dUSD, chain.Units(1000), chain.Units(2_500_000),
			big.NewInt(0), big.NewInt(0), lp, big.NewInt(time.Now().Add(time.Hour).Unix()))
		// The vaults know this router, and no pool of the dev chain's.
		info.Router, info.Pool = router.Hex(), nil
	})
	ce.latest["X"] = 15
	u, key := ce.funded(t, true)
	dETH, dUSD := ce.token("dETH"), ce.token("dUSD")
	expires := ce.clock.Now().Add(time.Hour).UnixMilli()
	spec := ce.ownGrant(t, u, protocol.TriggerSpec{Name: "via uniswap", Condition: below("X", 10), MaxFires: 1, ExpiresAt: expires,
		Action: actionOf("swap", protocol.SwapParams{Sell: "dETH", Buy: "dUSD", Amount: "1", MinOut: "2400"})})
	u.create(t, spec)
	ethBefore, usdBefore := ce.balance(t, dETH, u.w.Address()), ce.balance(t, dUSD, u.w.Address())
	ce.cross(t, u)
	in := waitIntent(t, u)
	if !confirmed(in.Status) || in.Tx.From != key.Hex() {
		t.Fatalf("the swap through Uniswap: %s %q", in.Status, in.Detail)
	}
	if got := new(big.Int).Sub(ethBefore, ce.balance(t, dETH, u.w.Address())); got.Cmp(chain.Units(1)) != 0 {
		t.Fatalf("the owner's dETH fell by %s, want 1", got)
	}
	if got := new(big.Int).Sub(ce.balance(t, dUSD, u.w.Address()), usdBefore); got.Cmp(chain.Units(2400)) < 0 || got.Cmp(chain.Units(2500)) > 0 {
		t.Fatalf("the owner got %s dUSD units for 1 dETH", got)
	}
	// A minimum the pool cannot give: the simulation refuses it, with the
	// router's reason, and nothing is sent.
	greedy := ce.ownGrant(t, u, protocol.TriggerSpec{Name: "too greedy", Condition: below("Y", 10), MaxFires: 1, ExpiresAt: expires,
		Action: actionOf("swap", protocol.SwapParams{Sell: "dETH", Buy: "dUSD", Amount: "1", MinOut: "5000"})})
	u.create(t, greedy)
	nonce, _ := ce.d.Client().NonceAt(context.Background(), key, nil)
	ce.signal(t, u, "Y", 15)
	ce.signal(t, u, "Y", 5)
	in = waitIntent(t, u)
	if in.Status != protocol.IntentFailed || !strings.Contains(in.Detail, "UniswapV2Router: INSUFFICIENT_OUTPUT_AMOUNT") {
		t.Fatalf("a minimum the pool cannot give: %s %q", in.Status, in.Detail)
	}
	if n, _ := ce.d.Client().NonceAt(context.Background(), key, nil); n != nonce {
		t.Fatal("a refused swap sent a transaction")
	}
}
