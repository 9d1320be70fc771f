// Package delegation speaks the MetaMask Delegation Framework (ERC-7710):
// a delegation, its EIP-712 hash and signature, the terms of the caveat
// enforcers a Spells grant uses, and the permission context a redemption
// passes to the DelegationManager. It holds no state.
//
// Files, from the ground up:
//   - delegation.go: a delegation, its EIP-712 digest and signature, and
//     permission contexts.
//   - batch.go: a batch of executions, its encoding (ERC-7579) and the mode
//     a batch is redeemed in.
//   - caveats.go: the enforcers a grant uses, their terms, and the Rules they
//     add up to.
//   - grant.go: signing the delegations of a grant.
//   - upgrade.go: the owner's EIP-7702 upgrade to the DeleGator.
package delegation
