package main

import (
	"context"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net/http"
	"strings"
	"time"

	"github.com/ethereum/go-ethereum"
	"github.com/ethereum/go-ethereum/accounts/abi"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/core/types"

	"github.com/spells-dev/spells/contracts"
	"github.com/spells-dev/spells/delegation"
)

// The transaction view (GET /v1/chain/tx/{hash}): what a block explorer
// shows of one transaction on the node's chain, read through the node's
// own connection and decoded with the contracts the node knows: its
// sender and target named, its call and, for a redemption, the calls it
// executes, its logs as events, its status and what it cost. Served where
// the chain relay is (the dev chain, or --chain-relay).

// txView is the view's JSON.
type txView struct {
	Hash     string    `json:"hash"`
	Status   string    `json:"status"` // success, reverted, pending
	Block    uint64    `json:"block,omitempty"`
	Time     int64     `json:"time,omitempty"` // the block's (unix s)
	From     string    `json:"from"`
	To       string    `json:"to"`
	ToName   string    `json:"toName,omitempty"`
	Value    string    `json:"value"` // wei
	Nonce    uint64    `json:"nonce"`
	Gas      uint64    `json:"gas"`
	GasUsed  uint64    `json:"gasUsed,omitempty"`
	GasPrice string    `json:"effectiveGasPrice,omitempty"`
	Fee      string    `json:"fee,omitempty"` // wei
	Call     *callView `json:"call,omitempty"`
	Logs     []logView `json:"logs"`
}

// callView is a decoded call; Calls are those a redemption executes.
type callView struct {
	To     string            `json:"to"`
	ToName string            `json:"toName,omitempty"`
	Value  string            `json:"value,omitempty"`
	Method string            `json:"method"` // "Contract.method", or the 4-byte selector when unknown
	Args   map[string]string `json:"args,omitempty"`
	Calls  []callView        `json:"calls,omitempty"`
}

// logView is a decoded log.
type logView struct {
	Address string            `json:"address"`
	Name    string            `json:"name,omitempty"`
	Event   string            `json:"event"` // "Contract.Event", or topic 0 when unknown
	Args    map[string]string `json:"args,omitempty"`
}

// knownABIs are the contracts whose calls and events the view decodes.
var knownABIs = []string{contracts.DelegationManager, contracts.DemoToken, contracts.DemoRouter, contracts.ConstantProductPool,
	contracts.MockV3Aggregator, contracts.EIP7702StatelessDeleGator, contracts.LimitedCallsEnforcer, contracts.ERC20PeriodTransferEnforcer,
	contracts.NativeTokenPeriodTransferEnforcer, contracts.ExactExecutionBatchEnforcer, contracts.FeedConditionEnforcer,
	contracts.TimestampEnforcer, contracts.AllowedTargetsEnforcer, contracts.AllowedMethodsEnforcer, contracts.ValueLteEnforcer}

// names are the chain's addresses as the view names them.
func (c *nodeChain) names() map[common.Address]string {
	out := map[common.Address]string{}
	for _, t := range c.info.Tokens {
		out[common.HexToAddress(t.Address)] = t.Symbol
	}
	if c.info.Pool != nil {
		out[common.HexToAddress(c.info.Pool.Address)] = "the pool"
	}
	if c.info.Router != "" {
		out[common.HexToAddress(c.info.Router)] = "the router"
	}
	if c.info.DelegationManager != "" {
		out[common.HexToAddress(c.info.DelegationManager)] = "DelegationManager"
	}
	for _, f := range c.info.Feeds {
		out[common.HexToAddress(f.Address)] = f.Signal + " feed"
	}
	return out
}

func (n *daemon) txViewHandler(w http.ResponseWriter, r *http.Request) {
	raw := r.PathValue("hash")
	if b, err := hex.DecodeString(strings.TrimPrefix(raw, "0x")); err != nil || len(b) != 32 {
		n.httpError(w, r, http.StatusBadRequest, "bad_hash", "a transaction hash is 0x and 64 hex digits")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
	defer cancel()
	v, err := n.chain.view(ctx, common.HexToHash(raw))
	switch {
	case errors.Is(err, ethereum.NotFound):
		n.httpError(w, r, http.StatusNotFound, "not_found", "the chain knows no transaction "+raw)
		return
	case err != nil:
		n.httpError(w, r, http.StatusBadGateway, "chain_unreachable", "the chain did not answer: "+err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(v)
}

// view reads and decodes one transaction.
func (c *nodeChain) view(ctx context.Context, hash common.Hash) (*txView, error) {
	tx, pending, err := c.client.TransactionByHash(ctx, hash)
	if err != nil {
		return nil, err
	}
	names := c.names()
	from, _ := types.Sender(types.LatestSignerForChainID(tx.ChainId()), tx)
	v := &txView{Hash: hash.Hex(), Status: "pending", From: from.Hex(), Value: tx.Value().String(), Nonce: tx.Nonce(), Gas: tx.Gas(), Logs: []logView{}}
	if to := tx.To(); to != nil {
		v.To, v.ToName = to.Hex(), names[*to]
		v.Call = decodeCall(*to, tx.Value(), tx.Data(), names)
	}
	if pending {
		return v, nil
	}
	rc, err := c.client.TransactionReceipt(ctx, hash)
	if err != nil {
		return nil, err
	}
	v.Status, v.Block, v.GasUsed = "success", rc.BlockNumber.Uint64(), rc.GasUsed
	if rc.Status != types.ReceiptStatusSuccessful {
		v.Status = "reverted"
	}
	if rc.EffectiveGasPrice != nil {
		v.GasPrice = rc.EffectiveGasPrice.String()
		v.Fee = new(big.Int).Mul(rc.EffectiveGasPrice, new(big.Int).SetUint64(rc.GasUsed)).String()
	}
	if h, err := c.client.HeaderByNumber(ctx, rc.BlockNumber); err == nil {
		v.Time = int64(h.Time)
	}
	for _, l := range rc.Logs {
		v.Logs = append(v.Logs, decodeLog(l, names))
	}
	return v, nil
}

// decodeCall decodes data sent to to; a redemption's executions too.
func decodeCall(to common.Address, value *big.Int, data []byte, names map[common.Address]string) *callView {
	cv := &callView{To: to.Hex(), ToName: names[to]}
	if value != nil && value.Sign() > 0 {
		cv.Value = value.String()
	}
	if len(data) < 4 {
		cv.Method = "(a plain transfer)"
		return cv
	}
	cv.Method = hexutil.Encode(data[:4])
	for _, name := range knownABIs {
		a := contracts.MustGet(name).ABI
		m, err := a.MethodById(data[:4])
		if err != nil {
			continue
		}
		args := map[string]any{}
		if err := m.Inputs.UnpackIntoMap(args, data[4:]); err != nil {
			continue
		}
		cv.Method = name + "." + m.Name
		if m.Name == "redeemDelegations" {
			cv.Calls = redeemed(args, names)
			cv.Args = map[string]string{"delegations": fmt.Sprint(len(asBytesList(args["_permissionContexts"])))}
			return cv
		}
		cv.Args = formatArgs(args)
		return cv
	}
	return cv
}

// redeemed decodes the executions of a redeemDelegations call: each
// mode's call data, one execution (single) or a batch.
func redeemed(args map[string]any, names map[common.Address]string) []callView {
	modes, _ := args["_modes"].([][32]byte)
	datas := asBytesList(args["_executionCallDatas"])
	var out []callView
	for i, d := range datas {
		batch := i < len(modes) && modes[i][0] == 0x01
		if batch {
			xs, err := delegation.DecodeBatch(d)
			if err != nil {
				continue
			}
			for _, x := range xs {
				out = append(out, *decodeCall(x.Target, x.Value, x.Data, names))
			}
			continue
		}
		if len(d) < 52 {
			continue
		}
		out = append(out, *decodeCall(common.BytesToAddress(d[:20]), new(big.Int).SetBytes(d[20:52]), d[52:], names))
	}
	return out
}

func asBytesList(v any) [][]byte {
	b, _ := v.([][]byte)
	return b
}

// decodeLog decodes a log with the known contracts' events.
func decodeLog(l *types.Log, names map[common.Address]string) logView {
	lv := logView{Address: l.Address.Hex(), Name: names[l.Address]}
	if len(l.Topics) == 0 {
		lv.Event = "(anonymous)"
		return lv
	}
	lv.Event = l.Topics[0].Hex()
	for _, name := range knownABIs {
		a := contracts.MustGet(name).ABI
		e, err := a.EventByID(l.Topics[0])
		if err != nil {
			continue
		}
		args := map[string]any{}
		if len(l.Data) > 0 {
			if err := a.UnpackIntoMap(args, e.Name, l.Data); err != nil {
				continue
			}
		}
		var indexed abi.Arguments
		for _, in := range e.Inputs {
			if in.Indexed {
				indexed = append(indexed, in)
			}
		}
		if err := abi.ParseTopicsIntoMap(args, indexed, l.Topics[1:]); err != nil {
			continue
		}
		lv.Event, lv.Args = name+"."+e.Name, formatArgs(args)
		for k, v := range lv.Args {
			if n := names[common.HexToAddress(v)]; n != "" && common.IsHexAddress(v) {
				lv.Args[k] = v + " (" + n + ")"
			}
		}
		return lv
	}
	return lv
}

// formatArgs writes decoded arguments as strings: numbers in decimal,
// addresses and bytes in hex.
func formatArgs(args map[string]any) map[string]string {
	out := make(map[string]string, len(args))
	for k, v := range args {
		switch x := v.(type) {
		case *big.Int:
			out[k] = x.String()
		case common.Address:
			out[k] = x.Hex()
		case []byte:
			out[k] = hexutil.Encode(x)
		case [32]byte:
			out[k] = hexutil.Encode(x[:])
		case []common.Address:
			parts := make([]string, len(x))
			for i, a := range x {
				parts[i] = a.Hex()
			}
			out[k] = strings.Join(parts, ", ")
		default:
			out[k] = fmt.Sprint(v)
		}
	}
	return out
}
