package store

import (
	"encoding/json"
	"fmt"
	"math/big"

	"zombiezen.com/go/sqlite"

	"github.com/spells-dev/spells/protocol"
)

// Grants: the owner's signed delegations as they were sent (to redeem
// them), each delegation's hash and rules, and what the vault has used of
// each.

// InsertGrant stores a grant, its delegations as the owner sent them
// (delegations, a JSON list) and each one's hash and rules.
func InsertGrant(conn *sqlite.Conn, g protocol.Grant, delegations []byte) error {
	if err := exec(conn, `INSERT INTO grants (id, status, session_key, delegations, created_at, trigger_id) VALUES (?, ?, ?, ?, ?, ?);`,
		g.ID, g.Status, g.SessionKey, string(delegations), g.CreatedAt, g.Trigger); err != nil {
		return err
	}
	for _, d := range g.Delegations {
		if err := exec(conn, `INSERT INTO grant_delegations (hash, grant_id, rules) VALUES (?, ?, ?);`, d.Hash, g.ID, string(d.Rules)); err != nil {
			return err
		}
	}
	return nil
}

// DelegationGranted reports whether a delegation with this hash was ever
// granted to the vault.
func DelegationGranted(conn *sqlite.Conn, hash string) (bool, error) {
	return exists(conn, `SELECT 1 FROM grant_delegations WHERE hash = ?;`, hash)
}

// GrantOfDelegation returns the id of the grant that holds the delegation
// hash (ok false: none).
func GrantOfDelegation(conn *sqlite.Conn, hash string) (id string, ok bool, err error) {
	err = each(conn, `SELECT grant_id FROM grant_delegations WHERE hash = ? COLLATE NOCASE;`, func(s *sqlite.Stmt) error {
		id, ok = s.ColumnText(0), true
		return nil
	}, hash)
	return
}

// RevokeGrant records g's revocation (its status and time).
func RevokeGrant(conn *sqlite.Conn, g protocol.Grant) error {
	return exec(conn, `UPDATE grants SET status = ?, revoked_at = ? WHERE id = ?;`, g.Status, g.RevokedAt, g.ID)
}

// LoadGrants reads the vault's grants (one, if id is set), oldest first.
func LoadGrants(conn *sqlite.Conn, id string) ([]protocol.Grant, error) {
	out := []protocol.Grant{}
	byID := map[string]int{}
	q := `SELECT g.id, g.status, g.session_key, g.created_at, g.revoked_at, d.hash, d.rules, g.trigger_id
		FROM grants g JOIN grant_delegations d ON d.grant_id = g.id`
	args := []any{}
	if id != "" {
		q += ` WHERE g.id = ?`
		args = append(args, id)
	}
	q += ` ORDER BY g.created_at, g.id, d.rowid;`
	err := each(conn, q, func(s *sqlite.Stmt) error {
		gid := s.ColumnText(0)
		i, ok := byID[gid]
		if !ok {
			i = len(out)
			byID[gid] = i
			out = append(out, protocol.Grant{ID: gid, Status: s.ColumnText(1), SessionKey: s.ColumnText(2),
				CreatedAt: s.ColumnInt64(3), RevokedAt: s.ColumnInt64(4), Delegations: []protocol.GrantDelegation{}, Trigger: s.ColumnText(7)})
		}
		out[i].Delegations = append(out[i].Delegations, protocol.GrantDelegation{Hash: s.ColumnText(5), Rules: json.RawMessage(s.ColumnText(6))})
		return nil
	}, args...)
	if err != nil {
		return nil, fmt.Errorf("read grants: %w", err)
	}
	return out, nil
}

// ActiveDelegations returns, for each active standing grant (one that
// serves no single trigger) to the session key, its delegations as the
// owner sent them (a JSON list), oldest grant first.
func ActiveDelegations(conn *sqlite.Conn, sessionKey string) ([][]byte, error) {
	var out [][]byte
	err := each(conn, `SELECT delegations FROM grants WHERE status = ? AND session_key = ? AND trigger_id = '' ORDER BY created_at, id;`,
		func(s *sqlite.Stmt) error { out = append(out, []byte(s.ColumnText(0))); return nil },
		protocol.GrantActive, sessionKey)
	return out, err
}

// TriggerGrant reads a trigger's own grant id: its delegations as the
// owner sent them (a JSON list), its status, and the session key it
// names; ok is false when there is no such grant.
func TriggerGrant(conn *sqlite.Conn, id string) (delegations []byte, status, sessionKey, trigger string, ok bool, err error) {
	err = each(conn, `SELECT delegations, status, session_key, trigger_id FROM grants WHERE id = ? AND trigger_id != '';`, func(s *sqlite.Stmt) error {
		delegations, status, sessionKey, trigger, ok = []byte(s.ColumnText(0)), s.ColumnText(1), s.ColumnText(2), s.ColumnText(3), true
		return nil
	}, id)
	return
}

// Usage is what the vault has used of a delegation: its redemptions in
// all, and its spend in one period.
type Usage struct {
	Calls uint64
	Spent *big.Int
}

// UsageOf reads what the vault used of the delegation hash, spending in
// period.
func UsageOf(conn *sqlite.Conn, hash string, period int64) (Usage, error) {
	u := Usage{Spent: new(big.Int)}
	err := each(conn, `SELECT calls FROM grant_calls WHERE hash = ?;`, func(s *sqlite.Stmt) error { u.Calls = uint64(s.ColumnInt64(0)); return nil }, hash)
	if err != nil {
		return u, err
	}
	err = each(conn, `SELECT spent FROM grant_spend WHERE hash = ? AND period = ?;`,
		func(s *sqlite.Stmt) error { u.Spent.SetString(s.ColumnText(0), 10); return nil }, hash, period)
	return u, err
}

// AddCall counts one redemption of the delegation hash.
func AddCall(conn *sqlite.Conn, hash string) error {
	return exec(conn, `INSERT INTO grant_calls (hash, calls) VALUES (?, 1) ON CONFLICT (hash) DO UPDATE SET calls = calls + 1;`, hash)
}

// SetSpent records the delegation hash's spend in period.
func SetSpent(conn *sqlite.Conn, hash string, period int64, spent *big.Int) error {
	return exec(conn, `INSERT INTO grant_spend (hash, period, spent) VALUES (?, ?, ?) ON CONFLICT (hash, period) DO UPDATE SET spent = excluded.spent;`,
		hash, period, spent.String())
}
