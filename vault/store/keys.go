package store

import (
	"github.com/ethereum/go-ethereum/common"
	"zombiezen.com/go/sqlite"
	"zombiezen.com/go/sqlite/sqlitex"

	"github.com/spells-dev/spells/vault/keys"
)

// ReadRing reads the vault's keys, sealed as stored (the zero Ring for a
// vault from before vaults held keys).
func ReadRing(conn *sqlite.Conn) (keys.Ring, error) {
	var r keys.Ring
	err := sqlitex.ExecuteTransient(conn, `SELECT data_key, kek_id FROM vault WHERE id = 1;`, &sqlitex.ExecOptions{
		ResultFunc: func(s *sqlite.Stmt) error {
			if s.ColumnType(0) != sqlite.TypeNull {
				r.DataKey = columnBytes(s, 0)
				r.KEKID = s.ColumnText(1)
			}
			return nil
		},
	})
	if err != nil {
		return keys.Ring{}, err
	}
	err = sqlitex.ExecuteTransient(conn, `SELECT id, address, sealed, created_at FROM session_keys WHERE retired_at = 0 ORDER BY id DESC LIMIT 1;`,
		&sqlitex.ExecOptions{ResultFunc: func(s *sqlite.Stmt) error {
			r.KeyID = s.ColumnInt64(0)
			r.Address = common.HexToAddress(s.ColumnText(1))
			r.Sealed = columnBytes(s, 2)
			r.Created = s.ColumnInt64(3)
			return nil
		}})
	return r, err
}

// WriteDataKey stores the vault's data key, wrapped by the KEK kekID.
func WriteDataKey(conn *sqlite.Conn, wrapped []byte, kekID string) error {
	return exec(conn, `UPDATE vault SET data_key = ?, kek_id = ? WHERE id = 1;`, wrapped, kekID)
}

// AddSessionKey retires the current session key, if any, and stores k as
// the current one, both at unix ms at.
func AddSessionKey(conn *sqlite.Conn, k keys.SessionKey, at int64) error {
	if err := exec(conn, `UPDATE session_keys SET retired_at = ? WHERE retired_at = 0;`, at); err != nil {
		return err
	}
	return exec(conn, `INSERT INTO session_keys (address, sealed, created_at) VALUES (?, ?, ?);`, k.Address.Hex(), k.Sealed, at)
}
