package vault

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/vault/store"
)

// BenchmarkReopenVaultFile measures what waking a hibernated vault costs
// inside this package, run on the vault's own goroutine: opening its file
// (pragmas, schema check, loading its trigger and sessions) and closing it
// again (checkpoint, WAL truncation). The node-level figure is bench cold.
func BenchmarkReopenVaultFile(b *testing.B) { benchmarkReopen(b, nil) }

// BenchmarkReopenVaultFileAndCommit adds one durable transaction after the
// wake-up, recording a nonce, as a resume did before writeVolatile.
func BenchmarkReopenVaultFileAndCommit(b *testing.B) {
	benchmarkReopen(b, func(v *Vault, fn func(*store.Tx) error) error { _, err := v.write(fn); return err })
}

// BenchmarkReopenVaultFileAndResume adds what a resume writes: its nonce,
// committed without waiting for the disk (flushNonces, when the file
// closes; the resume itself writes nothing).
func BenchmarkReopenVaultFileAndResume(b *testing.B) {
	benchmarkReopen(b, func(v *Vault, fn func(*store.Tx) error) error {
		return v.writeVolatile(func() error { return fn(nil) })
	})
}

func benchmarkReopen(b *testing.B, write func(v *Vault, fn func(*store.Tx) error) error) {
	e := newEnv(b)
	e.latest["ETH/USD"] = 2600
	u := e.newUser()
	u.create(b, protocol.TriggerSpec{Name: "dip", Condition: below("ETH/USD", 2500), Action: swap})
	ctx := context.Background()
	n := 0
	err := u.v.do(ctx, func() error {
		u.v.closeFile()
		for b.Loop() {
			if err := u.v.openFile(); err != nil {
				return err
			}
			if write != nil {
				n++
				if err := write(u.v, func(*store.Tx) error {
					return store.RecordNonce(u.v.conn, fmt.Sprint("bench-", n), e.clock.Now(), time.Hour)
				}); err != nil {
					return err
				}
			}
			u.v.closeFile()
		}
		return u.v.openFile()
	})
	if err != nil {
		b.Fatal(err)
	}
}
