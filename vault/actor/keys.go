package actor

import (
	"crypto/ecdsa"
	"errors"

	"zombiezen.com/go/sqlite"

	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/vault/keys"
	"github.com/spells-dev/spells/vault/store"
)

// The vault's side of its keys (package keys seals them): reading them
// from its file, making them, rotating the session key, and signing.

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
	if v.cfg.KeyMade != nil && v.ring.HasKey() {
		v.cfg.KeyMade(v.owner, v.ring.Address)
	}
}

// account is what the vault shows of its keys.
func (v *Vault) account() *protocol.Account { return v.ring.Account() }

// createKeys writes a new vault's data key and first session key (inside
// the transaction that creates its file).
func (v *Vault) createKeys(conn *sqlite.Conn) error {
	wrapped, first, err := keys.NewVault(v.cfg.KEK, v.id)
	if err != nil {
		return err
	}
	if err := store.WriteDataKey(conn, wrapped, v.cfg.KEK.ID()); err != nil {
		return err
	}
	return store.AddSessionKey(conn, first, v.now().UnixMilli())
}

// loadKeys reads the vault's key state.
func (v *Vault) loadKeys() error {
	defer v.publishKey()
	var err error
	v.ring, err = store.ReadRing(v.conn)
	return err
}

// ensureKeys gives a vault made before vaults held keys its data key and
// session key, as one change (kind "account").
func (v *Vault) ensureKeys() error {
	if v.ring.HasKey() {
		return nil
	}
	_, err := v.write(func(t *store.Tx) error {
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
		t.Then(v.keyMade)
		return t.Put(protocol.KindAccount, protocol.KindAccount, v.account())
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
func (v *Vault) insertKey(t *store.Tx) error {
	k, err := v.ring.NewSessionKey(v.cfg.KEK, v.id)
	if err != nil {
		return err
	}
	return store.AddSessionKey(v.conn, k, t.Now.UnixMilli())
}

// rotateKey is key.rotate: the owner replaces the vault's session key. The
// old key is kept sealed and retired (transactions it signed can still be
// followed), and grants made to it no longer serve: the owner grants the
// new key.
func (v *Vault) rotateKey(t *store.Tx) (any, error) {
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
	t.Then(func() {
		v.ring = next
		v.publishKey()
		v.keyMade()
	})
	if err := t.Put(protocol.KindAccount, protocol.KindAccount, next.Account()); err != nil {
		return nil, err
	}
	v.log.Info().Str("old_key", old.Address.Hex()).Str("new_key", next.Address.Hex()).Msg("session key rotated")
	return map[string]string{"sessionKey": next.Address.Hex()}, nil
}

// withSessionKey unseals the current session key for fn and wipes it
// after.
func (v *Vault) withSessionKey(fn func(key *ecdsa.PrivateKey) error) error {
	return v.ring.WithSessionKey(v.cfg.KEK, v.id, fn)
}
