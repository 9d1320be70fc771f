// Package cluster is what the nodes of a cluster share through one Redis:
// the directory of vault homes and live nodes, the node links that carry
// the sessions one node forwards to another, and the handoff that moves a
// vault's file from a node that drains to another. Redis is never in a
// vault's write path: a node keeps serving the vaults it holds while Redis
// is down. The signal bus over Redis is package cluster/redisbus;
// cluster/redistest runs redis-server for tests.
//
// It reaches the node's vaults only through Vaults, and its sessions only
// through the hub's interfaces; the server wires it.
//
// Files, from the ground up:
//   - wire.go: the node link's records, timings and payloads.
//   - redis.go: the Redis client, for a single server, Sentinel or a
//     Redis Cluster.
//   - peers.go: the nodes seen before, kept on disk.
//   - directory.go: the directory's keys, homes, members and errors.
//   - homes.go: vault homes written, looked up, claimed, placed and
//     switched.
//   - proof.go: who may be a member: the cluster's proof of its secret
//     and key-encryption key, and each member's tag.
//   - membership.go: the lease renewed, the members read, a lost
//     directory noticed and rebuilt.
//   - links.go: the links' state, a link's and a stream's.
//   - handshake.go: the HMAC challenge-response of a link.
//   - link.go: one link's records, streams, pings and end.
//   - handoff.go: what a handoff needs of the vaults, and its state.
//   - faucet.go: the dev faucet asked over a link.
//   - receive.go: a move's calls and replies, and the receiving side.
//   - read.go: a link's read loop.
//   - dial.go: routing a client's vault, reaching its node, the links'
//     end.
//   - drain.go: draining this node, and settling moves a stop
//     interrupted.
package cluster
