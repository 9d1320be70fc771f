package exec

import (
	"cmp"
	"encoding/json"
	"fmt"
	"math/big"
	"strings"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"zombiezen.com/go/sqlite"

	"github.com/spells-dev/spells/delegation"
	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/vault/store"
)

// What the owner is told of a grant as the vault uses it: a period's
// allowance 90 % spent, its calls used up, its end within three days. Each
// is raised once (per period, for an allowance), in the transaction that
// reserved the use, and only if the vault's settings ask (on.grants).

const (
	usedShare   = 90 // percent of a period's allowance that raises the alert
	expiringIn  = 3 * 24 * time.Hour
	alertUsed   = protocol.AlertGrantUsed
	alertEnding = protocol.AlertGrantEnding
)

// grantAlerts are the alerts the use of delegation hash (with rules) just
// recorded at nowMs calls for.
func grantAlerts(conn *sqlite.Conn, c *protocol.ChainInfo, hash common.Hash, r delegation.Rules, nowMs int64) ([]protocol.Alert, error) {
	now := nowMs / 1000
	short := hash.Hex()[:18]
	var out []protocol.Alert
	p := periodRule(r)
	period := periodOf(p, now)
	u, err := store.UsageOf(conn, hash.Hex(), period)
	if err != nil {
		return nil, err
	}
	if p != nil && p.Amount != nil && p.Amount.Sign() > 0 && u.Spent != nil {
		share := new(big.Int).Div(new(big.Int).Mul(u.Spent, big.NewInt(100)), p.Amount)
		if share.Cmp(big.NewInt(usedShare)) >= 0 {
			symbol, decimals := "ETH", uint8(18)
			if r.Token != nil {
				symbol, decimals = tokenName(c, r.Token.Token)
			}
			out = append(out, protocol.Alert{Event: fmt.Sprintf("used-%s-%d", short, period), Kind: alertUsed,
				Title:  fmt.Sprintf("A grant is %s%% used this period", share),
				Detail: fmt.Sprintf("%s of %s %s per %s; the vault refuses what would pass it", wholeUnits(u.Spent, decimals), wholeUnits(p.Amount, decimals), symbol, span(p.Duration))})
		}
	}
	if r.MaxCalls > 0 && u.Calls >= r.MaxCalls {
		out = append(out, protocol.Alert{Event: "calls-" + short, Kind: alertUsed, Title: "A grant's calls are used up",
			Detail: fmt.Sprintf("%d of %d; grant a new one for more", u.Calls, r.MaxCalls)})
	}
	if r.NotAfter > 0 && time.Unix(int64(r.NotAfter), 0).Sub(time.Unix(now, 0)) < expiringIn {
		out = append(out, protocol.Alert{Event: "ending-" + short, Kind: alertEnding, Title: "A grant ends within three days",
			Detail: "on " + time.Unix(int64(r.NotAfter), 0).UTC().Format("2006-01-02 15:04 UTC") + "; grant a new one to keep its triggers executing"})
	}
	for i := range out {
		out[i].At = nowMs
	}
	return out, nil
}

// tokenName is a token's symbol and decimals on the chain (its address
// and 18 when the chain does not list it).
func tokenName(c *protocol.ChainInfo, addr common.Address) (string, uint8) {
	if c != nil {
		if t, err := token(c, addr.Hex()); err == nil {
			return t.Symbol, t.Decimals
		}
	}
	return addr.Hex(), 18
}

// wholeUnits writes an amount of smallest units in whole units, at most 6
// decimals, with thousands separated: 9000500000 at 6 → "9,000.5".
func wholeUnits(v *big.Int, decimals uint8) string {
	r := new(big.Rat).SetFrac(v, new(big.Int).Exp(big.NewInt(10), big.NewInt(int64(decimals)), nil))
	s := strings.TrimRight(strings.TrimRight(r.FloatString(6), "0"), ".")
	whole, frac, _ := strings.Cut(s, ".")
	var b strings.Builder
	for i, d := range whole {
		if i > 0 && (len(whole)-i)%3 == 0 && d != '-' && whole[i-1] != '-' {
			b.WriteByte(',')
		}
		b.WriteRune(d)
	}
	if frac != "" {
		b.WriteString("." + frac)
	}
	return b.String()
}

// span is a period's length in words.
func span(seconds uint64) string {
	switch {
	case seconds == 86400:
		return "day"
	case seconds == 7*86400:
		return "week"
	case seconds%86400 == 0:
		return fmt.Sprintf("%d days", seconds/86400)
	case seconds%3600 == 0:
		return fmt.Sprintf("%d hours", seconds/3600)
	}
	return fmt.Sprintf("%d seconds", seconds)
}

// grantsUsed shows, in t, the grants an intent just used with their use,
// and raises the alerts they call for.
func (r *Runner) grantsUsed(t *store.Tx, act *action, bound *grantDelegation) error {
	type used struct {
		hash  common.Hash
		rules delegation.Rules
	}
	var ds []used
	seen := map[common.Hash]bool{}
	if bound != nil {
		ds = append(ds, used{bound.hash, bound.rules})
	} else {
		for _, st := range act.calls {
			if !seen[st.hash] {
				seen[st.hash] = true
				ds = append(ds, used{st.hash, st.rules})
			}
		}
	}
	hashes := make([]common.Hash, 0, len(ds))
	for _, d := range ds {
		hashes = append(hashes, d.hash)
	}
	if err := r.putUsed(t, hashes); err != nil {
		return err
	}
	for _, d := range ds {
		as, err := grantAlerts(r.v.Conn(), r.node.Chain, d.hash, d.rules, t.Now.UnixMilli())
		if err != nil {
			return err
		}
		for _, a := range as {
			if err := r.v.Raise(t, a); err != nil {
				return err
			}
		}
	}
	return nil
}

// WithUsage fills in what the vault used of each delegation of grants at
// nowMs: its calls, and its spending in the allowance's current period.
func WithUsage(conn *sqlite.Conn, grants []protocol.Grant, nowMs int64) error {
	for i := range grants {
		for j := range grants[i].Delegations {
			d := &grants[i].Delegations[j]
			// The rules as shown: only the allowance's period is read.
			var r struct {
				Token, Native *struct{ Duration, Start uint64 }
			}
			if err := json.Unmarshal(d.Rules, &r); err != nil {
				return fmt.Errorf("grant %s rules: %w", grants[i].ID, err)
			}
			var p *delegation.Period
			if w := cmp.Or(r.Token, r.Native); w != nil {
				p = &delegation.Period{Duration: w.Duration, Start: w.Start}
			}
			period := periodOf(p, nowMs/1000)
			u, err := store.UsageOf(conn, d.Hash, period)
			if err != nil {
				return err
			}
			if u.Calls == 0 && (u.Spent == nil || u.Spent.Sign() == 0) {
				d.Used = nil
				continue
			}
			d.Used = &protocol.GrantUse{Calls: u.Calls, Period: period}
			if u.Spent != nil && u.Spent.Sign() > 0 {
				d.Used.Spent = u.Spent.String()
			}
		}
	}
	return nil
}

// putUsed writes to t's diff the grants whose delegations an intent just
// used, with their use.
func (r *Runner) putUsed(t *store.Tx, hashes []common.Hash) error {
	seen := map[string]bool{}
	for _, h := range hashes {
		id, ok, err := store.GrantOfDelegation(r.v.Conn(), h.Hex())
		if err != nil || !ok || seen[id] {
			if err != nil {
				return err
			}
			continue
		}
		seen[id] = true
		gs, err := store.LoadGrants(r.v.Conn(), id)
		if err != nil {
			return err
		}
		if err := WithUsage(r.v.Conn(), gs, t.Now.UnixMilli()); err != nil {
			return err
		}
		for _, g := range gs {
			if err := t.Put(protocol.KindGrant, g.ID, g); err != nil {
				return err
			}
		}
	}
	return nil
}
