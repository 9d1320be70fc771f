package vault

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdsa"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"
	"zombiezen.com/go/sqlite"
	"zombiezen.com/go/sqlite/sqlitex"

	"github.com/spells-dev/spells/internal/atomicfile"
	"github.com/spells-dev/spells/protocol"
)

// Where keys live (ARCHITECTURE.md, "Keys"). Each vault holds one session
// key (secp256k1) that signs its transactions. The key is sealed in the
// vault's file with the vault's own data key (AES-256-GCM, bound to the
// vault and the key's address); the data key is stored beside it wrapped
// by the node's key-encryption key (KEK, AES-256-GCM, bound to the vault).
// A vault file copied elsewhere is useless without the KEK; a KEK without
// the files holds no key. The private key is unsealed only for the moment
// it signs, on the vault's goroutine, and never reaches a frame, a log
// line or a snapshot: those show the key's address.

// KEK is a node's key-encryption key.
type KEK struct {
	aead cipher.AEAD
	id   string
}

// KEKSize is the length of a key-encryption key in bytes.
const KEKSize = 32

// NewKEK makes a key-encryption key from 32 secret bytes.
func NewKEK(raw []byte) (*KEK, error) {
	if len(raw) != KEKSize {
		return nil, fmt.Errorf("a key-encryption key is %d bytes, not %d", KEKSize, len(raw))
	}
	aead, err := newGCM(raw)
	if err != nil {
		return nil, err
	}
	sum := sha256.Sum256(append([]byte("spells kek id\x00"), raw...))
	return &KEK{aead: aead, id: hex.EncodeToString(sum[:8])}, nil
}

// ParseKEK reads a key-encryption key written as 64 hex characters
// (an optional 0x and surrounding white space are allowed).
func ParseKEK(text string) (*KEK, error) {
	s := strings.TrimPrefix(strings.TrimSpace(text), "0x")
	raw, err := hex.DecodeString(s)
	if err != nil || len(raw) != KEKSize {
		return nil, fmt.Errorf("a key-encryption key is written as %d hex characters", 2*KEKSize)
	}
	return NewKEK(raw)
}

// GenerateKEK makes a random key-encryption key and returns it with its
// hex text (for a file).
func GenerateKEK() (*KEK, string, error) {
	raw := make([]byte, KEKSize)
	if _, err := rand.Read(raw); err != nil {
		return nil, "", err
	}
	k, err := NewKEK(raw)
	return k, hex.EncodeToString(raw), err
}

// ID names the key without revealing it: the first 8 bytes of a hash of
// it, in hex. The data directory records the ID of the key that sealed its
// vaults (kekIDFile), so a node started with another key is refused.
func (k *KEK) ID() string { return k.id }

func newGCM(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// seal encrypts plain under aead with a random nonce, bound to ad; the
// nonce leads the result.
func seal(aead cipher.AEAD, plain, ad []byte) ([]byte, error) {
	out := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plain)+aead.Overhead())
	if _, err := rand.Read(out); err != nil {
		return nil, err
	}
	return aead.Seal(out, out, plain, ad), nil
}

func unseal(aead cipher.AEAD, sealed, ad []byte) ([]byte, error) {
	if len(sealed) < aead.NonceSize()+aead.Overhead() {
		return nil, errors.New("sealed value too short")
	}
	n := aead.NonceSize()
	return aead.Open(nil, sealed[:n], sealed[n:], ad)
}

func dataKeyAD(vaultID string) []byte { return []byte("spells data key\x00" + vaultID) }

func sessionKeyAD(vaultID string, addr common.Address) []byte {
	return []byte("spells session key\x00" + vaultID + "\x00" + strings.ToLower(addr.Hex()))
}

// kekIDFile in the data directory holds the ID of the KEK that seals its
// vaults' data keys.
const kekIDFile = "kek.id"

// ErrKEKMismatch is returned by NewManager when the data directory's vault
// keys were sealed by another key-encryption key than the one given.
var ErrKEKMismatch = errors.New("the key-encryption key does not match the one that sealed this data directory's vault keys")

// checkKEK refuses a KEK other than the one the data directory records,
// and records k in a directory that has none yet. Nothing is changed when
// it refuses.
func checkKEK(dir string, k *KEK) error {
	p := filepath.Join(dir, kekIDFile)
	b, err := os.ReadFile(p)
	switch {
	case err == nil:
		if got := strings.TrimSpace(string(b)); got != k.ID() {
			return fmt.Errorf("%w (%s names key %s; the key given is %s)", ErrKEKMismatch, p, got, k.ID())
		}
		return nil
	case !errors.Is(err, fs.ErrNotExist):
		return fmt.Errorf("read %s: %w", p, err)
	}
	return atomicfile.Write(p, []byte(k.ID()+"\n"))
}

// SealedByKEK reports whether the data directory at dir records a
// key-encryption key (so one must be given to use it).
func SealedByKEK(dir string) bool {
	_, err := os.Stat(filepath.Join(dir, kekIDFile))
	return err == nil
}

// keyring is a vault's key state as its goroutine holds it: the wrapped
// data key and the current session key, sealed. Nothing here is secret
// without the node's KEK.
type keyring struct {
	dataKey    []byte // the vault's data key, wrapped by the KEK
	kekID      string // the KEK that wrapped it
	keyID      int64  // the current session key's row
	sealed     []byte // the current session key, sealed by the data key
	address    common.Address
	keyCreated int64 // unix ms
}

// errKeyUnavailable answers a request that needs the session key when the
// node cannot unseal it.
var errKeyUnavailable = protocol.Errorf(protocol.CodeKeyUnavailable, "this node cannot unseal the vault's session key (its key-encryption key is not the one that sealed it)")

// publishKey makes the session key's address readable off the vault's
// goroutine.
func (v *Vault) publishKey() {
	if v.ring.sealed != nil {
		a := v.ring.address
		v.keyAddr.Store(&a)
	}
}

// keyMade tells the node of the vault's new session key.
func (v *Vault) keyMade() {
	if v.m.cfg.KeyMade != nil && v.ring.sealed != nil {
		v.m.cfg.KeyMade(v.owner, v.ring.address)
	}
}

// account is what the vault shows of its keys.
func (v *Vault) account() *protocol.Account {
	if v.ring.sealed == nil {
		return nil
	}
	return &protocol.Account{SessionKey: v.ring.address.Hex(), KeyCreatedAt: v.ring.keyCreated}
}

// newDataKey makes a vault's data key and returns it plain and wrapped.
func (m *Manager) newDataKey(vaultID string) (plain, wrapped []byte, err error) {
	plain = make([]byte, 32)
	if _, err := rand.Read(plain); err != nil {
		return nil, nil, err
	}
	wrapped, err = seal(m.cfg.KEK.aead, plain, dataKeyAD(vaultID))
	return plain, wrapped, err
}

// dataKey unwraps the vault's data key.
func (v *Vault) dataKey() (cipher.AEAD, error) {
	if v.ring.kekID != v.m.cfg.KEK.ID() {
		return nil, errKeyUnavailable
	}
	plain, err := unseal(v.m.cfg.KEK.aead, v.ring.dataKey, dataKeyAD(v.id))
	if err != nil {
		return nil, errKeyUnavailable
	}
	defer clear(plain)
	return newGCM(plain)
}

// sealNewKey makes a session key and seals it with the data key dk.
func sealNewKey(vaultID string, dk cipher.AEAD) (common.Address, []byte, error) {
	key, err := crypto.GenerateKey()
	if err != nil {
		return common.Address{}, nil, err
	}
	addr := crypto.PubkeyToAddress(key.PublicKey)
	raw := crypto.FromECDSA(key)
	defer clear(raw)
	key.D.SetInt64(0)
	sealed, err := seal(dk, raw, sessionKeyAD(vaultID, addr))
	return addr, sealed, err
}

// createKeys writes a new vault's data key and first session key (inside
// the transaction that creates its file).
func (v *Vault) createKeys(conn *sqlite.Conn) error {
	plain, wrapped, err := v.m.newDataKey(v.id)
	if err != nil {
		return err
	}
	defer clear(plain)
	dk, err := newGCM(plain)
	if err != nil {
		return err
	}
	if err := exec(conn, `UPDATE vault SET data_key = ?, kek_id = ? WHERE id = 1;`, wrapped, v.m.cfg.KEK.ID()); err != nil {
		return err
	}
	addr, sealed, err := sealNewKey(v.id, dk)
	if err != nil {
		return err
	}
	return exec(conn, `INSERT INTO session_keys (address, sealed, created_at) VALUES (?, ?, ?);`,
		addr.Hex(), sealed, v.m.now().UnixMilli())
}

// loadKeys reads the vault's key state.
func (v *Vault) loadKeys() error {
	defer v.publishKey()
	v.ring = keyring{}
	err := sqlitex.ExecuteTransient(v.conn, `SELECT data_key, kek_id FROM vault WHERE id = 1;`, &sqlitex.ExecOptions{
		ResultFunc: func(s *sqlite.Stmt) error {
			if s.ColumnType(0) != sqlite.TypeNull {
				v.ring.dataKey = columnBytes(s, 0)
				v.ring.kekID = s.ColumnText(1)
			}
			return nil
		},
	})
	if err != nil {
		return err
	}
	return sqlitex.ExecuteTransient(v.conn, `SELECT id, address, sealed, created_at FROM session_keys WHERE retired_at = 0 ORDER BY id DESC LIMIT 1;`,
		&sqlitex.ExecOptions{ResultFunc: func(s *sqlite.Stmt) error {
			v.ring.keyID = s.ColumnInt64(0)
			v.ring.address = common.HexToAddress(s.ColumnText(1))
			v.ring.sealed = columnBytes(s, 2)
			v.ring.keyCreated = s.ColumnInt64(3)
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
	if v.ring.sealed != nil {
		return nil
	}
	_, err := v.write(func(t *tx) error {
		if v.ring.dataKey == nil {
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
		v.ring = keyring{}
		if lerr := v.loadKeys(); lerr != nil {
			return errors.Join(err, lerr)
		}
	}
	return err
}

// insertKey retires the current session key and seals a new one.
func (v *Vault) insertKey(t *tx) error {
	dk, err := v.dataKey()
	if err != nil {
		return err
	}
	addr, sealed, err := sealNewKey(v.id, dk)
	if err != nil {
		return err
	}
	if err := exec(v.conn, `UPDATE session_keys SET retired_at = ? WHERE retired_at = 0;`, t.now.UnixMilli()); err != nil {
		return err
	}
	return exec(v.conn, `INSERT INTO session_keys (address, sealed, created_at) VALUES (?, ?, ?);`,
		addr.Hex(), sealed, t.now.UnixMilli())
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
	acct := &protocol.Account{SessionKey: next.address.Hex(), KeyCreatedAt: next.keyCreated}
	if err := t.put(protocol.KindAccount, protocol.KindAccount, acct); err != nil {
		return nil, err
	}
	v.log.Info().Str("old_key", old.address.Hex()).Str("new_key", next.address.Hex()).Msg("session key rotated")
	return map[string]string{"sessionKey": next.address.Hex()}, nil
}

// withSessionKey unseals the current session key for fn and wipes it
// after (as far as Go lets one wipe memory: the big integers the signing
// code makes are not under our control).
func (v *Vault) withSessionKey(fn func(key *ecdsa.PrivateKey) error) error {
	if v.ring.sealed == nil {
		return errKeyUnavailable
	}
	dk, err := v.dataKey()
	if err != nil {
		return err
	}
	raw, err := unseal(dk, v.ring.sealed, sessionKeyAD(v.id, v.ring.address))
	if err != nil {
		return errKeyUnavailable
	}
	defer clear(raw)
	key, err := crypto.ToECDSA(raw)
	if err != nil {
		return errKeyUnavailable
	}
	defer key.D.SetInt64(0)
	return fn(key)
}
