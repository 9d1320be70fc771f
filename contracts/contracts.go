package contracts

import (
	"embed"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"

	"github.com/ethereum/go-ethereum/accounts/abi"
	"github.com/ethereum/go-ethereum/common"
)

//go:embed artifacts/*.json
var artifacts embed.FS

// Names of the contracts in artifacts/.
const (
	DemoToken                         = "DemoToken"
	ConstantProductPool               = "ConstantProductPool"
	DemoRouter                        = "DemoRouter"
	DelegationManager                 = "DelegationManager"
	EntryPoint                        = "EntryPoint"
	EIP7702StatelessDeleGator         = "EIP7702StatelessDeleGator"
	AllowedTargetsEnforcer            = "AllowedTargetsEnforcer"
	AllowedMethodsEnforcer            = "AllowedMethodsEnforcer"
	ValueLteEnforcer                  = "ValueLteEnforcer"
	LimitedCallsEnforcer              = "LimitedCallsEnforcer"
	TimestampEnforcer                 = "TimestampEnforcer"
	ERC20PeriodTransferEnforcer       = "ERC20PeriodTransferEnforcer"
	NativeTokenPeriodTransferEnforcer = "NativeTokenPeriodTransferEnforcer"
	ExactExecutionBatchEnforcer       = "ExactExecutionBatchEnforcer"
	FeedConditionEnforcer             = "FeedConditionEnforcer"
	MockV3Aggregator                  = "MockV3Aggregator"
	DemoAccount                       = "DemoAccount"
	DemoAccountFactory                = "DemoAccountFactory"
	SignatureCheck                    = "SignatureCheck"
)

// Enforcers lists the caveat enforcers a dev chain deploys.
var Enforcers = []string{AllowedTargetsEnforcer, AllowedMethodsEnforcer, ValueLteEnforcer, LimitedCallsEnforcer,
	TimestampEnforcer, ERC20PeriodTransferEnforcer, NativeTokenPeriodTransferEnforcer, ExactExecutionBatchEnforcer, FeedConditionEnforcer}

// Contract is one artifact.
type Contract struct {
	Name     string
	Source   string // where it came from: a file of ours or a package and version
	License  string
	ABI      abi.ABI
	Bytecode []byte // creation code, without constructor arguments
}

var (
	loadOnce sync.Once
	loaded   map[string]*Contract
	loadErr  error
)

// Get returns the named contract. The artifacts are part of the binary, so
// an error here is a build defect; MustGet panics on it.
func Get(name string) (*Contract, error) {
	loadOnce.Do(load)
	if loadErr != nil {
		return nil, loadErr
	}
	c, ok := loaded[name]
	if !ok {
		return nil, fmt.Errorf("contracts: no artifact %q", name)
	}
	return c, nil
}

// MustGet is Get for names known at build time.
func MustGet(name string) *Contract {
	c, err := Get(name)
	if err != nil {
		panic(err)
	}
	return c
}

func load() {
	loaded = map[string]*Contract{}
	entries, err := artifacts.ReadDir("artifacts")
	if err != nil {
		loadErr = err
		return
	}
	for _, e := range entries {
		b, err := artifacts.ReadFile("artifacts/" + e.Name())
		if err != nil {
			loadErr = err
			return
		}
		var raw struct {
			ContractName string          `json:"contractName"`
			Source       string          `json:"source"`
			License      string          `json:"license"`
			ABI          json.RawMessage `json:"abi"`
			Bytecode     string          `json:"bytecode"`
		}
		if err := json.Unmarshal(b, &raw); err != nil {
			loadErr = fmt.Errorf("contracts: %s: %w", e.Name(), err)
			return
		}
		parsed, err := abi.JSON(strings.NewReader(string(raw.ABI)))
		if err != nil {
			loadErr = fmt.Errorf("contracts: %s ABI: %w", e.Name(), err)
			return
		}
		loaded[raw.ContractName] = &Contract{Name: raw.ContractName, Source: raw.Source, License: raw.License,
			ABI: parsed, Bytecode: common.FromHex(raw.Bytecode)}
	}
}

// ErrorName names a custom error from revert data (its 4-byte selector),
// as "Contract.Error(args)", searching every contract here; "" if none
// matches or data is a plain Error(string) revert.
func ErrorName(data []byte) string {
	if len(data) < 4 {
		return ""
	}
	loadOnce.Do(load)
	names := make([]string, 0, len(loaded))
	for n := range loaded {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		for _, e := range loaded[n].ABI.Errors {
			if string(e.ID[:4]) != string(data[:4]) {
				continue
			}
			args, err := e.Inputs.Unpack(data[4:])
			if err != nil || len(args) == 0 {
				return n + "." + e.Name + "()"
			}
			return fmt.Sprintf("%s.%s%v", n, e.Name, args)
		}
	}
	return ""
}
