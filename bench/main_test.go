package main

import (
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if one of them leaves a goroutine
// running.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		// go-ethereum starts the first once per process, with the first
		// chain; the second (its in-memory node database's) outlives a
		// closed dev chain.
		goleak.IgnoreTopFunction("github.com/ethereum/go-ethereum/core.(*txSenderCacher).cache"),
		goleak.IgnoreTopFunction("github.com/syndtr/goleveldb/leveldb.(*DB).mpoolDrain"))
}
