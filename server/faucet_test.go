package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/ethereum/go-ethereum/common"
	"github.com/rs/zerolog"
)

// TestFaucetJournalCompacts: a long journal, once nothing is queued, is
// written again with only the requests that failed this run; what it
// keeps reads back as undone.
func TestFaucetJournalCompacts(t *testing.T) {
	path := filepath.Join(t.TempDir(), "faucet.journal")
	j, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	f := &faucet{log: zerolog.Nop(), q: make(chan [2]common.Address, faucetQueue), ctx: ctx, journal: j, path: path}
	defer f.journal.Close()
	failed := [2]common.Address{common.HexToAddress("0x01"), common.HexToAddress("0x02")}
	for i := 0; i < faucetCompactAfter; i++ {
		k := common.BigToAddress(common.Big1).Hex()
		f.note(fmt.Sprintf("fund %s %s\ndone %s\n", k, k, k))
	}
	f.note(fmt.Sprintf("fund %s %s\n", failed[0].Hex(), failed[1].Hex()))
	f.failed = append(f.failed, failed)
	f.q <- failed // something queued: not yet
	f.compact()
	if fi, _ := os.Stat(path); fi.Size() < 1000 {
		t.Fatal("the journal was compacted while a request was queued")
	}
	<-f.q
	f.compact()
	pending, err := readFaucetJournal(path)
	if err != nil || len(pending) != 1 || pending[0] != failed {
		t.Fatalf("after compaction: %v, %v; want only the failed request", pending, err)
	}
	if fi, _ := os.Stat(path); fi.Size() > 200 {
		t.Fatalf("the compacted journal holds %d bytes", fi.Size())
	}
	f.note("fund x y\n") // it still takes lines
}
