// Package redistest runs real redis-server processes for tests, on free
// loopback ports, and stops and restarts them for fault tests. Tests skip
// without redis-server, unless SPELLS_REQUIRE_REDIS=1 makes that a
// failure (.ci/run installs it).
//
// Files, from the ground up:
//   - redistest.go: a redis-server, or a Redis Cluster of shards, on free
//     ports; stopped and restarted at will.
package redistest
