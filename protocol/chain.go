package protocol

// ChainInfo describes the chain a node executes on and the contracts it
// uses there: what a dashboard needs to set up a smart account and sign a
// grant. GET /v1/chain serves it.
type ChainInfo struct {
	ChainID uint64 `json:"chainId"`
	// Dev is true for the embedded dev chain, whose faucet funds new
	// accounts; RPC is then its loopback JSON-RPC address, for wallets
	// and tools on the same machine.
	Dev bool   `json:"dev"`
	RPC string `json:"rpc,omitempty"`

	DelegationManager string            `json:"delegationManager"`
	EntryPoint        string            `json:"entryPoint"`
	DeleGator         string            `json:"deleGator"` // the EIP7702StatelessDeleGator an owner's account delegates to
	Enforcers         map[string]string `json:"enforcers"` // caveat enforcer name → address
	Tokens            []Token           `json:"tokens"`
	Pool              *Pool             `json:"pool,omitempty"`
	// Router is a router with the Uniswap V2 router's swap calls over the
	// chain's pools (swapExactTokensForTokens, getAmountsOut).
	Router string `json:"router,omitempty"`
	// Feeds are price feeds with Chainlink's AggregatorV3Interface that the
	// node reads at each block and publishes as signals.
	Feeds []Feed `json:"feeds,omitempty"`
}

// Feed is an on-chain price feed (Chainlink's AggregatorV3Interface:
// latestRoundData, decimals), published as the signal Signal. An answer
// older than MaxAge seconds is stale: nothing fires on it, on the node or
// on-chain.
type Feed struct {
	Signal   string `json:"signal"`
	Address  string `json:"address"`
	Decimals uint8  `json:"decimals"`
	MaxAge   uint64 `json:"maxAge"`
}

// Token is an ERC-20 the node knows by symbol.
type Token struct {
	Symbol   string `json:"symbol"`
	Name     string `json:"name"`
	Address  string `json:"address"`
	Decimals uint8  `json:"decimals"`
}

// Pool is a constant-product market between two tokens (by address).
type Pool struct {
	Address string `json:"address"`
	Token0  string `json:"token0"`
	Token1  string `json:"token1"`
	// Signal is the name under which the node publishes the pool's
	// price of token0 in token1, if it does.
	Signal string `json:"signal,omitempty"`
}
