package delegation

import (
	"fmt"
	"math/big"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
)

// Execution is one call a delegator's account makes: the ERC-7579
// Execution (target, value, callData).
type Execution struct {
	Target common.Address `json:"target"`
	Value  *big.Int       `json:"value"`
	Data   []byte         `json:"data"`
}

// BatchMode is the ERC-7579 execution mode of a batch (call type 0x01,
// default exec type), as redeemDelegations takes it.
var BatchMode = [32]byte{0x01}

var executions = mustArgs(`[{"type":"tuple[]","components":[
	{"name":"target","type":"address"},{"name":"value","type":"uint256"},{"name":"callData","type":"bytes"}]}]`)

type abiExecution struct {
	Target   common.Address
	Value    *big.Int
	CallData []byte
}

// EncodeBatch is the execution calldata of a batch, abi.encode(Execution[])
// (ERC-7579's encodeBatch), and the terms of ExactExecutionBatchEnforcer.
func EncodeBatch(xs []Execution) []byte {
	in := make([]abiExecution, len(xs))
	for i, x := range xs {
		v := x.Value
		if v == nil {
			v = new(big.Int)
		}
		in[i] = abiExecution{Target: x.Target, Value: v, CallData: x.Data}
	}
	out, err := executions.Pack(in)
	if err != nil {
		panic(err) // every field has its type: a defect
	}
	return out
}

// DecodeBatch reads abi.encode(Execution[]), refusing bytes that are not
// exactly an encoding EncodeBatch would write.
func DecodeBatch(b []byte) ([]Execution, error) {
	vals, err := executions.Unpack(b)
	if err != nil {
		return nil, fmt.Errorf("not an encoded list of executions: %w", err)
	}
	var raw []abiExecution
	if err := executions.Copy(&raw, vals); err != nil {
		return nil, fmt.Errorf("not an encoded list of executions: %w", err)
	}
	out := make([]Execution, len(raw))
	for i, x := range raw {
		out[i] = Execution{Target: x.Target, Value: x.Value, Data: x.CallData}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("an empty list of executions")
	}
	if string(EncodeBatch(out)) != string(b) {
		return nil, fmt.Errorf("executions not in their canonical encoding")
	}
	return out, nil
}

// ExecutionView is an Execution as a client reads it.
type ExecutionView struct {
	Target common.Address `json:"target"`
	Value  string         `json:"value"`
	Data   hexutil.Bytes  `json:"data"`
}
