package store

import (
	"github.com/ethereum/go-ethereum/common"
	"zombiezen.com/go/sqlite"
	"zombiezen.com/go/sqlite/sqlitex"
)

// Head is a vault's own row: whose it is, its version, its epoch, and a
// move out of this node if one began.
type Head struct {
	Owner   common.Address
	Version uint64
	Epoch   uint64 // rises at every move to another node
	Move    MoveMark
}

// MoveMark is a vault's move out of its node, as its file records it. A
// vault with a mark refuses every write.
type MoveMark struct {
	To    string // the node it goes to; "" when none
	Epoch uint64 // its epoch there
	Done  bool   // the directory names that node: this file is a tombstone
}

// ReadHead reads the vault's row; a file without one is damaged.
func ReadHead(conn *sqlite.Conn) (Head, error) {
	var h Head
	found := false
	err := sqlitex.ExecuteTransient(conn, "SELECT owner, version, epoch, move_to, move_epoch, moved FROM vault WHERE id = 1;", &sqlitex.ExecOptions{
		ResultFunc: func(s *sqlite.Stmt) error {
			found = true
			h.Owner = common.HexToAddress(s.ColumnText(0))
			h.Version = uint64(s.ColumnInt64(1))
			h.Epoch = uint64(s.ColumnInt64(2))
			h.Move = MoveMark{To: s.ColumnText(3), Epoch: uint64(s.ColumnInt64(4)), Done: s.ColumnInt64(5) != 0}
			return nil
		},
	})
	if err == nil && !found {
		err = Damaged("the file has no vault row")
	}
	return h, err
}

// InsertHead writes a new vault's row: addr owns it, at version 0.
func InsertHead(conn *sqlite.Conn, addr common.Address, nowMs int64) error {
	return exec(conn, "INSERT INTO vault (id, address, owner, version, created_at) VALUES (1, ?, ?, 0, ?);",
		addr.Hex(), addr.Hex(), nowMs)
}

// SetMoveMark records a move out of this node to node to, at epoch there.
func SetMoveMark(conn *sqlite.Conn, to string, epoch uint64) error {
	return exec(conn, `UPDATE vault SET move_to = ?, move_epoch = ?, moved = 0 WHERE id = 1;`, to, int64(epoch))
}

// ClearMoveMark ends a move the directory did not follow.
func ClearMoveMark(conn *sqlite.Conn) error {
	return exec(conn, `UPDATE vault SET move_to = '', move_epoch = 0, moved = 0 WHERE id = 1;`)
}

// SetMoved makes the file a tombstone: the directory names the node it
// moved to.
func SetMoved(conn *sqlite.Conn) error { return exec(conn, `UPDATE vault SET moved = 1 WHERE id = 1;`) }

// SetArrived records a received vault at its new epoch, without a mark.
func SetArrived(conn *sqlite.Conn, epoch uint64) error {
	return exec(conn, `UPDATE vault SET epoch = ?, move_to = '', move_epoch = 0, moved = 0 WHERE id = 1;`, int64(epoch))
}

// JournalSeq is the number of the last record of the node's firing
// journal the vault applied (0: none).
func JournalSeq(conn *sqlite.Conn) (uint64, error) {
	return counter(conn, `SELECT journal_seq FROM vault WHERE id = 1;`)
}

// SetJournalSeq records that the vault applied the firing journal's
// record seq.
func SetJournalSeq(conn *sqlite.Conn, seq uint64) error {
	return exec(conn, `UPDATE vault SET journal_seq = ? WHERE id = 1;`, int64(seq))
}

// NextNonce is the session key's next transaction nonce as the vault
// counts it.
func NextNonce(conn *sqlite.Conn) (uint64, error) {
	return counter(conn, `SELECT next_nonce FROM vault WHERE id = 1;`)
}

// counter reads one of the vault row's counters with query.
func counter(conn *sqlite.Conn, query string) (uint64, error) {
	var n uint64
	err := each(conn, query, func(s *sqlite.Stmt) error { n = uint64(s.ColumnInt64(0)); return nil })
	return n, err
}

// SetNextNonce records the session key's next transaction nonce.
func SetNextNonce(conn *sqlite.Conn, n uint64) error {
	return exec(conn, `UPDATE vault SET next_nonce = ? WHERE id = 1;`, int64(n))
}
