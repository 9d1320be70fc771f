// Package s3test runs a real S3 server for tests: SeaweedFS's weed mini
// (Apache-2.0), on loopback ports of its own, with a data directory of its
// own. The weed binary is found as $SPELLS_WEED or weed on the PATH
// (.ci/run builds it from its Go module); tests skip without it, unless
// SPELLS_REQUIRE_S3=1 makes that a failure.
//
// Files:
//   - s3test.go: finding weed, starting, stopping and restarting it.
//   - faulty.go: a store in front of it that fails or crawls when told.
package s3test
