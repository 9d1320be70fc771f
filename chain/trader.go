package chain

import (
	"context"
	"crypto/ecdsa"
	"fmt"
	"math"
	"math/big"
	"math/rand/v2"
	"path/filepath"

	"github.com/ethereum/go-ethereum"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"

	"github.com/spells-dev/spells/contracts"
)

// Trader moves the dev pool's price and its price feed with it: the feed
// is the ETH/USD signal, so a trigger that fires swaps on the market it
// watched. Each Step sets the feed to the pool's price (an oracle's answer
// lags its market by a step), then sends one swap of a random size and
// side, about 0.1 % of the pool's dETH, leaning back toward the starting
// price, so the price walks by about 0.2 % a step and stays near it over
// hours.
type Trader struct {
	d     *Dev
	key   *ecdsa.PrivateKey
	from  common.Address
	pool  common.Address
	feed  common.Address    // zero: none
	token [2]common.Address // dETH, dUSD
	rnd   *rand.Rand
}

// NewTrader funds the dev chain's demo trader (its key kept in the chain's
// directory) and lets the pool take its tokens.
func (d *Dev) NewTrader(ctx context.Context) (*Trader, error) {
	key, err := devKey(filepath.Join(d.cfg.Dir, "trader.key"))
	if err != nil {
		return nil, fmt.Errorf("demo trader: %w", err)
	}
	if d.info.Pool == nil {
		return nil, fmt.Errorf("demo trader: the dev chain has no pool")
	}
	t := &Trader{d: d, key: key, from: crypto.PubkeyToAddress(key.PublicKey), pool: common.HexToAddress(d.info.Pool.Address),
		token: [2]common.Address{common.HexToAddress(d.info.Pool.Token0), common.HexToAddress(d.info.Pool.Token1)},
		rnd:   rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))}
	if len(d.info.Feeds) > 0 {
		t.feed = common.HexToAddress(d.info.Feeds[0].Address)
	}
	bal, err := d.client.BalanceAt(ctx, t.from, nil)
	if err != nil {
		return nil, fmt.Errorf("demo trader: %w", err)
	}
	if bal.Sign() > 0 {
		return t, nil // funded and approved at an earlier start
	}
	if err := d.Fund(ctx, t.from, Units(100), map[string]*big.Int{"dETH": Units(1_000_000), "dUSD": Units(2_500_000_000)}); err != nil {
		return nil, fmt.Errorf("demo trader: %w", err)
	}
	s, err := newSender(ctx, d.client, key)
	if err != nil {
		return nil, fmt.Errorf("demo trader: %w", err)
	}
	max := new(big.Int).Sub(new(big.Int).Lsh(big.NewInt(1), 256), big.NewInt(1))
	for _, tok := range t.token {
		if err := s.call(ctx, contracts.DemoToken, tok, 0, "approve", t.pool, max); err != nil {
			return nil, fmt.Errorf("demo trader: %w", err)
		}
	}
	if err := s.settle(ctx, d.Mine); err != nil {
		return nil, fmt.Errorf("demo trader: %w", err)
	}
	return t, nil
}

// Price reads the pool's price of dETH in dUSD at the newest block.
func (t *Trader) Price(ctx context.Context) (float64, error) {
	return PoolPrice(ctx, t.d.client, t.pool)
}

// PoolPrice reads a ConstantProductPool's price of token0 in token1.
func PoolPrice(ctx context.Context, c *Client, pool common.Address) (float64, error) {
	abi := contracts.MustGet(contracts.ConstantProductPool).ABI
	data, _ := abi.Pack("price")
	out, err := c.CallContract(ctx, ethereum.CallMsg{To: &pool, Data: data}, nil)
	if err != nil {
		return 0, err
	}
	p, _ := new(big.Float).Quo(new(big.Float).SetInt(new(big.Int).SetBytes(out)), new(big.Float).SetInt(Ether)).Float64()
	return p, nil
}

// Step sets the feed to price, the pool's price now, and sends one swap;
// both are mined with the next block.
func (t *Trader) Step(ctx context.Context, price float64) error {
	// A normal step in dETH, leaning toward selling above the starting
	// price and buying below it.
	lean := math.Log(price/demoPrice) * 10
	size := t.rnd.NormFloat64() + lean
	side := 0 // sell dETH: the price falls
	if size < 0 {
		side, size = 1, -size
	}
	amount := size * demoETHLiquidity / 1000 // about 0.1 % of the pool's dETH
	if side == 1 {
		amount *= price // the same value in dUSD
	}
	wei, _ := new(big.Float).Mul(big.NewFloat(amount), new(big.Float).SetInt(Ether)).Int(nil)
	s, err := newSender(ctx, t.d.client, t.key)
	if err != nil {
		return err
	}
	if t.feed != (common.Address{}) {
		if err := s.call(ctx, contracts.MockV3Aggregator, t.feed, 0, "updateAnswer", feedAnswer(price)); err != nil {
			return err
		}
	}
	if wei.Sign() == 0 {
		return nil
	}
	return s.call(ctx, contracts.ConstantProductPool, t.pool, 0, "swapExactIn", t.token[side], wei, big.NewInt(0), t.from)
}

// TokenBalance is account's balance of the ERC-20 token, in its smallest
// units.
func TokenBalance(ctx context.Context, c *Client, token, account common.Address) (*big.Int, error) {
	abi := contracts.MustGet(contracts.DemoToken).ABI
	data, _ := abi.Pack("balanceOf", account)
	out, err := c.CallContract(ctx, ethereum.CallMsg{To: &token, Data: data}, nil)
	if err != nil {
		return nil, err
	}
	if len(out) != 32 {
		return nil, fmt.Errorf("balanceOf answered %d bytes, not 32", len(out))
	}
	return new(big.Int).SetBytes(out), nil
}
