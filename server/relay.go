package main

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"net/http"
	"time"

	"github.com/ethereum/go-ethereum/common/hexutil"
	"golang.org/x/time/rate"

	"github.com/spells-dev/spells/hub"
)

// The chain relay (POST /v1/chain/rpc): a narrow JSON-RPC door to the
// node's chain for the dashboard, which signs the owner's own transactions
// (the EIP-7702 setup, disabling a delegation) in the browser and needs a
// nonce, fees and a way to send them. It forwards one request at a time,
// of the methods below only, rate-limited per source address. On by
// default on the dev chain; a JSON-RPC chain's node is the operator's, so
// relaying to it needs -chain-relay.

var relayMethods = map[string]bool{
	"eth_chainId": true, "net_version": true, "eth_blockNumber": true, "eth_getBalance": true, "eth_getCode": true,
	"eth_getTransactionCount": true, "eth_call": true, "eth_estimateGas": true, "eth_gasPrice": true,
	"eth_maxPriorityFeePerGas": true, "eth_feeHistory": true, "eth_getBlockByNumber": true,
	"eth_getTransactionReceipt": true, "eth_getTransactionByHash": true, "eth_sendRawTransaction": true,
}

// The relay is priced: each source address has relayRate units a second
// (a burst of relayBurst); a method that runs the EVM (a simulation)
// costs relayEVMCost units, any other one. The whole node runs at most
// relayEVMRate simulations a second for the relay, and each is capped at
// relayGasCap gas, so no caller, nor many together, can hold the node's
// CPU.
const (
	relayMaxBody = 128 << 10
	relayRate    = 20
	relayBurst   = 60
	relayEVMCost = 5
	relayEVMRate = 50
	relayGasCap  = 3_000_000
)

var relayEVM = map[string]bool{"eth_call": true, "eth_estimateGas": true}

type relay struct {
	nc *nodeChain
	n  *daemon

	addrs *sourceLimiter
	evm   *rate.Limiter // the node's simulations for the relay
}

func newRelay(nc *nodeChain, n *daemon) *relay {
	return &relay{nc: nc, n: n, addrs: newSourceLimiter(relayRate, relayBurst, time.Minute), evm: rate.NewLimiter(relayEVMRate, 2*relayEVMRate)}
}

// allow charges cost units to remote's budget.
func (r *relay) allow(remote string, cost int) bool {
	return r.addrs.allow(hub.SourceKey(remote).String(), cost)
}

// capGas writes relayGasCap as the gas of a call object that names none or
// more.
func capGas(p json.RawMessage) (json.RawMessage, bool) {
	var call map[string]any
	if json.Unmarshal(p, &call) != nil || call == nil {
		return p, false
	}
	if g, ok := call["gas"].(string); ok {
		if v, err := hexutil.DecodeUint64(g); err == nil && v <= relayGasCap {
			return p, true
		}
	}
	call["gas"] = hexutil.EncodeUint64(relayGasCap)
	out, err := json.Marshal(call)
	return out, err == nil
}

type rpcRequest struct {
	JSONRPC string            `json:"jsonrpc"`
	ID      json.RawMessage   `json:"id"`
	Method  string            `json:"method"`
	Params  []json.RawMessage `json:"params"`
}

type rpcError struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
	Data    any    `json:"data,omitempty"`
}

func (r *relay) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if r.nc.client == nil {
		r.n.httpError(w, req, http.StatusNotFound, "no_chain", "this node runs without a chain (-chain-rpc none)")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, req.Body, relayMaxBody))
	if err != nil {
		r.n.httpError(w, req, http.StatusRequestEntityTooLarge, "too_large", "a chain request is at most 128 KiB")
		return
	}
	var rq rpcRequest
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&rq); err != nil || rq.Method == "" {
		r.answer(w, nil, nil, &rpcError{Code: -32700, Message: "the body is not one JSON-RPC request (batches are not relayed)"})
		return
	}
	if !relayMethods[rq.Method] {
		r.answer(w, rq.ID, nil, &rpcError{Code: -32601, Message: "the node does not relay " + rq.Method})
		return
	}
	cost := 1
	if relayEVM[rq.Method] {
		cost = relayEVMCost
	}
	if !r.allow(req.RemoteAddr, cost) {
		w.Header().Set("Retry-After", "1")
		r.n.httpError(w, req, http.StatusTooManyRequests, "rate_limited", "this address used its chain requests of this second (a simulation, eth_call or eth_estimateGas, counts as 5 of 20): retry in a second")
		return
	}
	if relayEVM[rq.Method] {
		if !r.evm.Allow() {
			w.Header().Set("Retry-After", "1")
			r.n.httpError(w, req, http.StatusTooManyRequests, "rate_limited", "the node runs its most simulations a second for the relay now: retry in a second")
			return
		}
		if len(rq.Params) == 0 {
			r.answer(w, rq.ID, nil, &rpcError{Code: -32602, Message: rq.Method + " needs a call object"})
			return
		}
		p, ok := capGas(rq.Params[0])
		if !ok {
			r.answer(w, rq.ID, nil, &rpcError{Code: -32602, Message: rq.Method + "'s first parameter is not a call object"})
			return
		}
		rq.Params[0] = p
	}
	ctx, cancel := context.WithTimeout(req.Context(), 15*time.Second)
	defer cancel()
	params := make([]any, len(rq.Params))
	for i, p := range rq.Params {
		params[i] = p
	}
	var result json.RawMessage
	if err := r.nc.client.Client.Client().CallContext(ctx, &result, rq.Method, params...); err != nil {
		e := &rpcError{Code: -32000, Message: err.Error()}
		if de, ok := err.(interface{ ErrorData() any }); ok {
			e.Data = de.ErrorData()
		}
		r.answer(w, rq.ID, nil, e)
		return
	}
	r.answer(w, rq.ID, result, nil)
}

func (r *relay) answer(w http.ResponseWriter, id json.RawMessage, result json.RawMessage, e *rpcError) {
	if id == nil {
		id = json.RawMessage("null")
	}
	out := map[string]any{"jsonrpc": "2.0", "id": id}
	if e != nil {
		out["error"] = e
	} else {
		out["result"] = result
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}
