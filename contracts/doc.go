// Package contracts holds the contracts the Spells dev chain deploys and
// the vault calls: their ABIs and creation bytecode, built by build.mjs
// into artifacts/ (committed, so no compiler is needed to build Spells).
//
// Our own (MIT, src/): DemoToken (an OpenZeppelin ERC-20 its owner mints),
// ConstantProductPool (x·y = k with a 0.3 % fee, paid in advance),
// DemoRouter (the Uniswap V2 router's swapExactTokensForTokens and
// getAmountsOut over those pools: input pulled, output paid to a named
// recipient, a minimum and a deadline),
// SignatureCheck (checks a contract account's ERC-1271 signature, ERC-6492
// for one not deployed yet, from a deployless eth_call), and DemoAccount
// with its CREATE2 factory (a contract account for the dev chain).
// From the MetaMask Delegation Framework as published in
// @metamask/delegation-abis 2.0.0 (MIT-0 or Apache-2.0): the
// DelegationManager, the EntryPoint its accounts need, the
// EIP7702StatelessDeleGator account, and the caveat enforcers.
//
// Files, from the ground up:
//   - contracts.go: the embedded artifacts, their parsed ABIs and creation
//     code.
package contracts
