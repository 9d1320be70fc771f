package exec

import (
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	"zombiezen.com/go/sqlite"

	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/vault/store"
)

// Vault is what an intent's life needs of the vault it runs in. Every
// method is called on the vault's goroutine.
type Vault interface {
	Conn() *sqlite.Conn
	// Write runs fn in one durable transaction and pushes its changes to
	// the vault's dashboards.
	Write(fn func(t *store.Tx) error) (uint64, error)
	// Fault reports an error of the vault's file (quarantine, a full disk,
	// or an internal error logged) and says what a caller is told.
	Fault(what string, err error) error
	Owner() common.Address
	// SessionKey is the vault's session key's address; ok is false when
	// it has none this node can use.
	SessionKey() (addr common.Address, ok bool)
	// Sign signs a transaction with the session key.
	Sign(unsigned *types.Transaction) (*types.Transaction, error)
	// Raise writes an alert in t, if the vault's settings ask for one of
	// its kind, and delivers it once t commits.
	Raise(t *store.Tx, a protocol.Alert) error
}
