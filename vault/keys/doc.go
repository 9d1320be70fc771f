// Package keys seals a vault's keys (ARCHITECTURE.md §7, "Keys and grants"). Each vault
// holds one session key (secp256k1) that signs its transactions, sealed in
// the vault's file with the vault's own data key (AES-256-GCM, bound to
// the vault and the key's address); the data key is stored beside it
// wrapped by the node's key-encryption key (KEK, AES-256-GCM, bound to the
// vault). A vault file copied elsewhere is useless without the KEK; a KEK
// without the files holds no key. The private key is unsealed only for
// the moment it signs (Ring.WithSessionKey) and never leaves this package
// but into the function that signs.
//
// Files, from the ground up:
//   - seal.go: AES-256-GCM sealing and what each sealed value is bound to.
//   - kek.go: the node's key-encryption key and the data directory's record
//     of which one sealed its vaults.
//   - ring.go: a vault's keys as its file holds them; making, rotating and
//     unsealing them.
package keys
