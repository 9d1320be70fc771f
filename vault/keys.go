package vault

import (
	"crypto/ecdsa"
	"errors"

	"github.com/ethereum/go-ethereum/common"
	"zombiezen.com/go/sqlite"
	"zombiezen.com/go/sqlite/sqlitex"

	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/vault/keys"
)

// The vault's side of its keys (package keys seals them): reading them
// from its file, making them, rotating the session key, and signing.

// errKeyUnavailable answers a request that needs the session key when the
// node cannot unseal it.
var errKeyUnavailable = keys.ErrUnavailable

// publishKey makes the session key's address readable off the vault's
// goroutine.
func (v *Vault) publishKey() {
	if v.ring.HasKey() {
		a := v.ring.Address
		v.keyAddr.Store(&a)
	}
}

// keyMade tells the node of the vault's new session key.
func (v *Vault) keyMade() {
	if v.m.cfg.KeyMade != nil && v.ring.HasKey() {
		v.m.cfg.KeyMade(v.owner, v.ring.Address)
	}
}

// account is what the vault shows of its keys.
func (v *Vault) account() *protocol.Account { return v.ring.Account() }

// createKeys writes a new vault's data key and first session key (inside
// the transaction that creates its file).
func (v *Vault) createKeys(conn *sqlite.Conn) error {
	wrapped, first, err := keys.NewVault(v.m.cfg.KEK, v.id)
	if err != nil {
		return err
	}
	if err := exec(conn, `UPDATE vault SET data_key = ?, kek_id = ? WHERE id = 1;`, wrapped, v.m.cfg.KEK.ID()); err != nil {
		return err
	}
	return exec(conn, `INSERT INTO session_keys (address, sealed, created_at) VALUES (?, ?, ?);`,
		first.Address.Hex(), first.Sealed, v.m.now().UnixMilli())
}

// loadKeys reads the vault's key state.
func (v *Vault) loadKeys() error {
	defer v.publishKey()
	v.ring = keys.Ring{}
	err := sqlitex.ExecuteTransient(v.conn, `SELECT data_key, kek_id FROM vault WHERE id = 1;`, &sqlitex.ExecOptions{
		ResultFunc: func(s *sqlite.Stmt) error {
			if s.ColumnType(0) != sqlite.TypeNull {
				v.ring.DataKey = columnBytes(s, 0)
				v.ring.KEKID = s.ColumnText(1)
			}
			return nil
		},
	})
	if err != nil {
		return err
	}
	return sqlitex.ExecuteTransient(v.conn, `SELECT id, address, sealed, created_at FROM session_keys WHERE retired_at = 0 ORDER BY id DESC LIMIT 1;`,
		&sqlitex.ExecOptions{ResultFunc: func(s *sqlite.Stmt) error {
			v.ring.KeyID = s.ColumnInt64(0)
			v.ring.Address = common.HexToAddress(s.ColumnText(1))
			v.ring.Sealed = columnBytes(s, 2)
			v.ring.Created = s.ColumnInt64(3)
			return nil
		}})
}

func columnBytes(s *sqlite.Stmt, col int) []byte {
	b := make([]byte, s.ColumnLen(col))
	s.ColumnBytes(col, b)
	return b
}

// ensureKeys gives a vault made before vaults held keys its data key and
// session key, as one change (kind "account").
func (v *Vault) ensureKeys() error {
	if v.ring.HasKey() {
		return nil
	}
	_, err := v.write(func(t *tx) error {
		if v.ring.DataKey == nil {
			if err := v.createKeys(v.conn); err != nil {
				return err
			}
		} else if err := v.insertKey(t); err != nil {
			return err
		}
		if err := v.loadKeys(); err != nil {
			return err
		}
		t.then(v.keyMade)
		return t.put(protocol.KindAccount, protocol.KindAccount, v.account())
	})
	if err != nil {
		v.ring = keys.Ring{}
		if lerr := v.loadKeys(); lerr != nil {
			return errors.Join(err, lerr)
		}
	}
	return err
}

// insertKey retires the current session key and seals a new one.
func (v *Vault) insertKey(t *tx) error {
	k, err := v.ring.NewSessionKey(v.m.cfg.KEK, v.id)
	if err != nil {
		return err
	}
	if err := exec(v.conn, `UPDATE session_keys SET retired_at = ? WHERE retired_at = 0;`, t.now.UnixMilli()); err != nil {
		return err
	}
	return exec(v.conn, `INSERT INTO session_keys (address, sealed, created_at) VALUES (?, ?, ?);`,
		k.Address.Hex(), k.Sealed, t.now.UnixMilli())
}

// rotateKey is key.rotate: the owner replaces the vault's session key. The
// old key is kept sealed and retired (transactions it signed can still be
// followed), and grants made to it no longer serve: the owner grants the
// new key.
func (v *Vault) rotateKey(t *tx) (any, error) {
	old := v.ring
	if err := v.insertKey(t); err != nil {
		return nil, err
	}
	if err := v.loadKeys(); err != nil {
		v.ring = old
		return nil, err
	}
	next := v.ring
	v.ring = old // memory changes only after commit
	t.then(func() {
		v.ring = next
		v.publishKey()
		v.keyMade()
	})
	if err := t.put(protocol.KindAccount, protocol.KindAccount, next.Account()); err != nil {
		return nil, err
	}
	v.log.Info().Str("old_key", old.Address.Hex()).Str("new_key", next.Address.Hex()).Msg("session key rotated")
	return map[string]string{"sessionKey": next.Address.Hex()}, nil
}

// withSessionKey unseals the current session key for fn and wipes it
// after.
func (v *Vault) withSessionKey(fn func(key *ecdsa.PrivateKey) error) error {
	return v.ring.WithSessionKey(v.m.cfg.KEK, v.id, fn)
}
