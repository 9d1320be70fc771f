package actor

import (
	"crypto/ecdsa"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	"zombiezen.com/go/sqlite"

	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/vault/store"
)

// execVault is what the vault lends its intents' runner (exec.Vault): its
// file, its transactions, its faults and its key, on its own goroutine.
type execVault struct{ v *Vault }

func (e execVault) Conn() *sqlite.Conn { return e.v.conn }

func (e execVault) Write(fn func(t *store.Tx) error) (uint64, error) { return e.v.write(fn) }

func (e execVault) Fault(what string, err error) error { return e.v.fault(what, err) }

func (e execVault) Owner() common.Address { return e.v.owner }

func (e execVault) Raise(t *store.Tx, a protocol.Alert) error { return e.v.raise(t, a) }

func (e execVault) SessionKey() (common.Address, bool) { return e.v.ring.Address, e.v.ring.HasKey() }

func (e execVault) Sign(unsigned *types.Transaction) (*types.Transaction, error) {
	var signed *types.Transaction
	err := e.v.withSessionKey(func(k *ecdsa.PrivateKey) error {
		var err error
		signed, err = types.SignTx(unsigned, types.LatestSignerForChainID(unsigned.ChainId()), k)
		return err
	})
	return signed, err
}
