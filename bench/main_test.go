package main

import (
	"context"
	"fmt"
	"os"
	"testing"

	"go.uber.org/goleak"
)

// TestMain fails the package's tests if one of them leaves a goroutine
// running.
//
// Run as "peer-clients" (the peer scenario starts its dashboards' processes
// from its own executable, here the test binary), it is that process.
func TestMain(m *testing.M) {
	if len(os.Args) > 1 && os.Args[1] == "peer-clients" {
		if err := runPeerClients(context.Background(), os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "peer-clients:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	goleak.VerifyTestMain(m,
		// go-ethereum starts the first once per process, with the first
		// chain; the second (its in-memory node database's) outlives a
		// closed dev chain.
		goleak.IgnoreTopFunction("github.com/ethereum/go-ethereum/core.(*txSenderCacher).cache"),
		goleak.IgnoreTopFunction("github.com/syndtr/goleveldb/leveldb.(*DB).mpoolDrain"))
}
