// Package rendezvous places keys on members by rendezvous (highest random
// weight) hashing: each member scores hash(key, member), and the highest
// wins. The spread is even, every node computes the same answer from the
// same members whatever their order, and a member leaving moves only the
// keys it held. The cluster places vaults on nodes with it; the bench
// predicts those places.
//
// Files, from the ground up:
//   - rendezvous.go: Pick and Score.
package rendezvous
