// Package gethtest starts a real go-ethereum node (geth --dev) for tests
// of the JSON-RPC path. The geth binary is found as $SPELLS_GETH or geth on
// the PATH (.ci/run builds it from the go-ethereum module in go.mod). Tests
// skip without it, unless SPELLS_REQUIRE_GETH=1 makes that a failure.
//
// Files, from the ground up:
//   - gethtest.go: finding the geth binary, and starting geth --dev on a
//     free port.
package gethtest
