// Package redisbus is the signal bus of a cluster: a hub.Bus over Redis
// pub/sub, with each signal's latest value kept in Redis so a node that
// reconnects misses no crossing.
//
// Files, from the ground up:
//   - redisbus.go: the Bus: publish, the subscription, each signal's latest
//     value, and catching up after a reconnect.
package redisbus
