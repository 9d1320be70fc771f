package delegation

import (
	"fmt"
	"math/big"
	"strings"

	"github.com/ethereum/go-ethereum/common"

	"github.com/spells-dev/spells/contracts"
)

// Enforcers maps a caveat enforcer's contract name to its address on the
// chain (protocol.ChainInfo.Enforcers).
type Enforcers map[string]common.Address

// ParseEnforcers reads the enforcers a chain's deployment names.
func ParseEnforcers(m map[string]string) Enforcers {
	e := Enforcers{}
	for n, a := range m {
		e[n] = common.HexToAddress(a)
	}
	return e
}

func (e Enforcers) name(a common.Address) string {
	for n, x := range e {
		if x == a {
			return n
		}
	}
	return ""
}

// Period is an allowance that starts again every Duration seconds from
// Start (unix seconds): at most Amount in each period.
type Period struct {
	Amount   *big.Int `json:"amount"`
	Duration uint64   `json:"duration"`
	Start    uint64   `json:"start"`
}

// TokenPeriod is a Period for one ERC-20 token.
type TokenPeriod struct {
	Token common.Address `json:"token"`
	Period
}

// Rules are the caveats of one delegation as Spells reads them. A zero
// field is a caveat that is absent. A delegation with Token (or Native) can
// only move that token (or the native currency): those enforcers allow
// nothing else.
type Rules struct {
	Targets   []common.Address `json:"targets,omitempty"`   // AllowedTargetsEnforcer
	Methods   []string         `json:"methods,omitempty"`   // AllowedMethodsEnforcer: 0x-prefixed 4-byte selectors
	MaxValue  *big.Int         `json:"maxValue,omitempty"`  // ValueLteEnforcer: native value per call
	MaxCalls  uint64           `json:"maxCalls,omitempty"`  // LimitedCallsEnforcer: redemptions in all
	NotBefore uint64           `json:"notBefore,omitempty"` // TimestampEnforcer: valid after (unix seconds)
	NotAfter  uint64           `json:"notAfter,omitempty"`  // TimestampEnforcer: valid before (unix seconds)
	Token     *TokenPeriod     `json:"token,omitempty"`     // ERC20PeriodTransferEnforcer
	Native    *Period          `json:"native,omitempty"`    // NativeTokenPeriodTransferEnforcer
	// Batch is the one batch of calls the delegation allows, exactly
	// (ExactExecutionBatchEnforcer; redeemed in BatchMode).
	Batch []Execution `json:"batch,omitempty"`
	// Feed is a price condition the chain checks at each redemption
	// (FeedConditionEnforcer).
	Feed *FeedCondition `json:"feed,omitempty"`
}

// FeedCondition lets a delegation be redeemed only while a price feed's
// latest answer is below (or, with Above, above) Threshold, in the feed's
// decimals, positive, and no older than MaxAge seconds.
type FeedCondition struct {
	Feed      common.Address `json:"feed"`
	Above     bool           `json:"above"`
	Threshold *big.Int       `json:"threshold"`
	MaxAge    uint64         `json:"maxAge"`
}

// feedTerms is FeedConditionEnforcer's terms: abi.encode(address feed, bool
// above, int256 threshold, uint256 maxAge).
var feedTerms = mustArgs(`[{"type":"address"},{"type":"bool"},{"type":"int256"},{"type":"uint256"}]`)

func word(n *big.Int) []byte { return common.LeftPadBytes(n.Bytes(), 32) }

func wordU(n uint64) []byte { return word(new(big.Int).SetUint64(n)) }

// Caveats encodes r as caveats for the enforcers in e.
func (r Rules) Caveats(e Enforcers) ([]Caveat, error) {
	var out []Caveat
	add := func(name string, terms []byte) error {
		a, ok := e[name]
		if !ok {
			return fmt.Errorf("the chain has no %s", name)
		}
		out = append(out, Caveat{Enforcer: a, Terms: terms})
		return nil
	}
	if len(r.Targets) > 0 {
		var t []byte
		for _, a := range r.Targets {
			t = append(t, a.Bytes()...)
		}
		if err := add(contracts.AllowedTargetsEnforcer, t); err != nil {
			return nil, err
		}
	}
	if len(r.Methods) > 0 {
		var t []byte
		for _, m := range r.Methods {
			b := common.FromHex(m)
			if len(b) != 4 || !strings.HasPrefix(m, "0x") {
				return nil, fmt.Errorf("method %q is not a 4-byte selector written 0x…", m)
			}
			t = append(t, b...)
		}
		if err := add(contracts.AllowedMethodsEnforcer, t); err != nil {
			return nil, err
		}
	}
	if r.MaxValue != nil {
		if err := add(contracts.ValueLteEnforcer, word(r.MaxValue)); err != nil {
			return nil, err
		}
	}
	if r.MaxCalls > 0 {
		if err := add(contracts.LimitedCallsEnforcer, wordU(r.MaxCalls)); err != nil {
			return nil, err
		}
	}
	if r.NotBefore > 0 || r.NotAfter > 0 {
		t := append(common.LeftPadBytes(new(big.Int).SetUint64(r.NotBefore).Bytes(), 16),
			common.LeftPadBytes(new(big.Int).SetUint64(r.NotAfter).Bytes(), 16)...)
		if err := add(contracts.TimestampEnforcer, t); err != nil {
			return nil, err
		}
	}
	if p := r.Token; p != nil {
		t := append(append(append(p.Token.Bytes(), word(p.Amount)...), wordU(p.Duration)...), wordU(p.Start)...)
		if err := add(contracts.ERC20PeriodTransferEnforcer, t); err != nil {
			return nil, err
		}
	}
	if p := r.Native; p != nil {
		t := append(append(word(p.Amount), wordU(p.Duration)...), wordU(p.Start)...)
		if err := add(contracts.NativeTokenPeriodTransferEnforcer, t); err != nil {
			return nil, err
		}
	}
	if len(r.Batch) > 0 {
		if err := add(contracts.ExactExecutionBatchEnforcer, EncodeBatch(r.Batch)); err != nil {
			return nil, err
		}
	}
	if f := r.Feed; f != nil {
		t, err := feedTerms.Pack(f.Feed, f.Above, f.Threshold, new(big.Int).SetUint64(f.MaxAge))
		if err != nil {
			return nil, fmt.Errorf("feed condition: %w", err)
		}
		if err := add(contracts.FeedConditionEnforcer, t); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// ReadRules decodes caveats made for the enforcers in e. It refuses an
// enforcer it does not know (so could not check before signing), terms of
// the wrong length, and a kind of caveat given twice.
func ReadRules(cs []Caveat, e Enforcers) (Rules, error) {
	var r Rules
	seen := map[string]bool{}
	u64 := func(b []byte, what string) (uint64, error) {
		n := new(big.Int).SetBytes(b)
		if !n.IsUint64() {
			return 0, fmt.Errorf("%s %s is out of range", what, n)
		}
		return n.Uint64(), nil
	}
	for i, c := range cs {
		name := e.name(c.Enforcer)
		if name == "" {
			return Rules{}, fmt.Errorf("caveat %d: enforcer %s is not one this node knows, so it cannot check it", i, c.Enforcer.Hex())
		}
		if seen[name] {
			return Rules{}, fmt.Errorf("caveat %d: a second %s", i, name)
		}
		seen[name] = true
		t := c.Terms
		bad := func(want string) error {
			return fmt.Errorf("caveat %d (%s): terms are %d bytes, want %s", i, name, len(t), want)
		}
		var err error
		switch name {
		case contracts.AllowedTargetsEnforcer:
			if len(t) == 0 || len(t)%20 != 0 {
				return Rules{}, bad("a multiple of 20")
			}
			for j := 0; j < len(t); j += 20 {
				r.Targets = append(r.Targets, common.BytesToAddress(t[j:j+20]))
			}
		case contracts.AllowedMethodsEnforcer:
			if len(t) == 0 || len(t)%4 != 0 {
				return Rules{}, bad("a multiple of 4")
			}
			for j := 0; j < len(t); j += 4 {
				r.Methods = append(r.Methods, fmt.Sprintf("0x%x", []byte(t[j:j+4])))
			}
		case contracts.ValueLteEnforcer:
			if len(t) != 32 {
				return Rules{}, bad("32")
			}
			r.MaxValue = new(big.Int).SetBytes(t)
		case contracts.LimitedCallsEnforcer:
			if len(t) != 32 {
				return Rules{}, bad("32")
			}
			if r.MaxCalls, err = u64(t, "the call limit"); err != nil {
				return Rules{}, err
			}
		case contracts.TimestampEnforcer:
			if len(t) != 32 {
				return Rules{}, bad("32")
			}
			if r.NotBefore, err = u64(t[:16], "the start"); err != nil {
				return Rules{}, err
			}
			if r.NotAfter, err = u64(t[16:], "the end"); err != nil {
				return Rules{}, err
			}
		case contracts.ERC20PeriodTransferEnforcer:
			if len(t) != 116 {
				return Rules{}, bad("116")
			}
			p := &TokenPeriod{Token: common.BytesToAddress(t[:20]), Period: Period{Amount: new(big.Int).SetBytes(t[20:52])}}
			if p.Duration, err = u64(t[52:84], "the period"); err != nil {
				return Rules{}, err
			}
			if p.Start, err = u64(t[84:116], "the start"); err != nil {
				return Rules{}, err
			}
			r.Token = p
		case contracts.NativeTokenPeriodTransferEnforcer:
			if len(t) != 96 {
				return Rules{}, bad("96")
			}
			p := &Period{Amount: new(big.Int).SetBytes(t[:32])}
			if p.Duration, err = u64(t[32:64], "the period"); err != nil {
				return Rules{}, err
			}
			if p.Start, err = u64(t[64:96], "the start"); err != nil {
				return Rules{}, err
			}
			r.Native = p
		case contracts.ExactExecutionBatchEnforcer:
			if r.Batch, err = DecodeBatch(t); err != nil {
				return Rules{}, fmt.Errorf("caveat %d (%s): %v", i, name, err)
			}
		case contracts.FeedConditionEnforcer:
			if len(t) != 128 {
				return Rules{}, bad("128")
			}
			vals, err := feedTerms.Unpack(t)
			if err != nil {
				return Rules{}, fmt.Errorf("caveat %d (%s): %v", i, name, err)
			}
			f := &FeedCondition{Feed: vals[0].(common.Address), Above: vals[1].(bool), Threshold: vals[2].(*big.Int)}
			if f.MaxAge, err = u64(vals[3].(*big.Int).Bytes(), "the most age"); err != nil {
				return Rules{}, err
			}
			if b, _ := feedTerms.Pack(f.Feed, f.Above, f.Threshold, new(big.Int).SetUint64(f.MaxAge)); string(b) != string(t) {
				return Rules{}, fmt.Errorf("caveat %d (%s): terms not in their canonical encoding", i, name)
			}
			r.Feed = f
		default:
			return Rules{}, fmt.Errorf("caveat %d: %s is not an enforcer Spells reads", i, name)
		}
	}
	return r, nil
}

// RulesView is Rules as a client reads them: amounts as decimal strings
// (a JSON number loses precision above 2^53).
type RulesView struct {
	Targets   []common.Address `json:"targets,omitempty"`
	Methods   []string         `json:"methods,omitempty"`
	MaxValue  string           `json:"maxValue,omitempty"`
	MaxCalls  uint64           `json:"maxCalls,omitempty"`
	NotBefore uint64           `json:"notBefore,omitempty"`
	NotAfter  uint64           `json:"notAfter,omitempty"`
	Token     *PeriodView      `json:"token,omitempty"`
	Native    *PeriodView      `json:"native,omitempty"`
	Batch     []ExecutionView  `json:"batch,omitempty"`
	Feed      *FeedView        `json:"feed,omitempty"`
}

// FeedView is a FeedCondition as a client reads it: the threshold as a
// decimal string in the feed's decimals.
type FeedView struct {
	Feed      common.Address `json:"feed"`
	Above     bool           `json:"above"`
	Threshold string         `json:"threshold"`
	MaxAge    uint64         `json:"maxAge"`
}

// PeriodView is a Period (of a token, if Token is set) as a client reads
// it.
type PeriodView struct {
	Token    *common.Address `json:"token,omitempty"`
	Amount   string          `json:"amount"`
	Duration uint64          `json:"duration"`
	Start    uint64          `json:"start"`
}

// View returns r as clients are shown it.
func (r Rules) View() RulesView {
	v := RulesView{Targets: r.Targets, Methods: r.Methods, MaxCalls: r.MaxCalls, NotBefore: r.NotBefore, NotAfter: r.NotAfter}
	if r.MaxValue != nil {
		v.MaxValue = r.MaxValue.String()
	}
	if p := r.Token; p != nil {
		tok := p.Token
		v.Token = &PeriodView{Token: &tok, Amount: p.Amount.String(), Duration: p.Duration, Start: p.Start}
	}
	if p := r.Native; p != nil {
		v.Native = &PeriodView{Amount: p.Amount.String(), Duration: p.Duration, Start: p.Start}
	}
	for _, x := range r.Batch {
		v.Batch = append(v.Batch, ExecutionView{Target: x.Target, Value: x.Value.String(), Data: x.Data})
	}
	if f := r.Feed; f != nil {
		v.Feed = &FeedView{Feed: f.Feed, Above: f.Above, Threshold: f.Threshold.String(), MaxAge: f.MaxAge}
	}
	return v
}

// CallsPerPeriod spreads a limit of calls per period over delegations the
// published enforcers can bound: one delegation per period, valid only
// within it (TimestampEnforcer) and allowing that many calls
// (LimitedCallsEnforcer), for count periods from start (unix seconds). Each
// carries r's other rules. (There is no enforcer of calls per period; this
// is how the chain still bounds them.)
func CallsPerPeriod(r Rules, calls, period, start uint64, count int) []Rules {
	out := make([]Rules, 0, count)
	for i := 0; i < count; i++ {
		x := r
		from := start + uint64(i)*period
		// TimestampEnforcer's bounds are exclusive: valid after from-1
		// and before from+period.
		x.NotBefore, x.NotAfter, x.MaxCalls = max(from, 1)-1, from+period, calls
		out = append(out, x)
	}
	return out
}
