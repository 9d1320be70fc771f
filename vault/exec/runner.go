package exec

import (
	"errors"
	"fmt"
	"sync/atomic"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/rs/zerolog"

	"github.com/spells-dev/spells/internal/clock"
	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/vault/store"
)

// Config is what every vault's intents share on a node.
type Config struct {
	// Chain describes the chain intents execute on and its contracts; nil:
	// none (grants are refused, actions not checked).
	Chain *protocol.ChainInfo
	// Executor makes the chain calls; nil: intents are recorded and never
	// executed.
	Executor *Executor
	// Confirmations is the blocks an intent's transaction needs (its own
	// included) to be confirmed; BumpAfter how long a sent transaction may
	// wait for a block before it is replaced with higher fees.
	Confirmations int
	BumpAfter     time.Duration
	Clock         clock.Clock
	Metrics       *Metrics
	Hooks         *Hooks // nil in production
}

// Hooks let a test stop or bend an intent's life at chosen steps. They are
// atomic: a test sets them while vaults run.
type Hooks struct {
	// AfterSign runs once an intent's signed transaction is stored, before
	// it is sent; true stops the intent there, as a crash would.
	AfterSign atomic.Pointer[func() bool]
	// SkipPolicy makes the vault pick a delegation without checking its
	// rules, so a test sees the chain refuse what the vault would have.
	SkipPolicy atomic.Bool
	// Price changes the fees a first transaction is signed with.
	Price atomic.Pointer[func(p *Prepared)]
}

// Runner carries the intents of one vault through their lives, on the
// vault's goroutine: every step is one vault transaction and a pushed
// diff, every chain call runs on the node's Executor and comes back as a
// Result. The vault owns its session key's nonce, and a signed transaction
// is stored before it is sent, so a crash between the two sends the same
// bytes again, never a second transaction.
type Runner struct {
	node    *Config
	v       Vault
	vaultID string
	log     zerolog.Logger
	tries   map[string]int // intent → chain calls retried, for the backoff
}

// NewRunner returns the runner of vault id's intents.
func NewRunner(cfg *Config, v Vault, id string, log zerolog.Logger) *Runner {
	return &Runner{node: cfg, v: v, vaultID: id, log: log}
}

// executes reports whether this node executes intents.
func (r *Runner) executes() bool { return r.node.Executor != nil && r.node.Chain != nil }

func (r *Runner) now() time.Time { return r.node.Clock.Now() }

// errIllegal refuses a step the table does not allow; set has logged and
// counted it.
var errIllegal = errors.New("an intent step its table does not allow")

// set is the one place an intent's status changes: step moves in by the
// table (an illegal step is refused, logged and counted, and nothing is
// written), and the intent is written, with what else the caller changed
// in it, inside t.
func (r *Runner) set(t *store.Tx, in *protocol.Intent, step Step) error {
	from, ok := ParseStatus(in.Status)
	to, allowed := Move(from, step)
	if !ok || !allowed {
		r.node.Metrics.IllegalMoves.Inc()
		r.log.Error().Str("intent", in.ID).Str("status", in.Status).Stringer("step", step).Msg("intent step not allowed by its table; refused")
		return errIllegal
	}
	in.Status, in.UpdatedAt = to.String(), t.Now.UnixMilli()
	if err := store.UpdateIntent(r.v.Conn(), *in); err != nil {
		return err
	}
	t.Then(r.node.Metrics.Moves.WithLabelValues(in.Status).Inc)
	if to == Refused || to == Failed || to == Reverted {
		a := protocol.Alert{Event: "failed-" + in.ID, Kind: protocol.AlertIntentFailed, TriggerID: in.TriggerID, IntentID: in.ID,
			Title: "A " + in.Action.Kind + " " + in.Status, Detail: in.Detail, At: t.Now.UnixMilli()}
		if err := r.v.Raise(t, a); err != nil {
			return err
		}
	}
	return t.Put(protocol.KindIntent, in.ID, *in)
}

// write runs fn in one vault transaction; a failure is the vault's fault
// to report (an illegal step was reported by set). It reports whether fn
// committed.
func (r *Runner) write(what string, fn func(t *store.Tx) error) bool {
	if _, err := r.v.Write(fn); err != nil {
		if !errors.Is(err, errIllegal) {
			r.v.Fault(what, err)
		}
		return false
	}
	return true
}

// settle takes the intent one step with detail (why it ended).
func (r *Runner) settle(in protocol.Intent, step Step, detail string) {
	in.Detail = detail
	if !r.write("record intent "+in.ID, func(t *store.Tx) error { return r.set(t, &in, step) }) {
		return
	}
	r.log.Info().Str("intent", in.ID).Str("status", in.Status).Str("detail", detail).Msg("intent " + in.Status)
}

// retryBase is the first pause before a chain call is tried again; it
// doubles up to retryMax.
const (
	retryBase = time.Second
	retryMax  = 30 * time.Second
)

// later makes the intent's current step due again after d.
func (r *Runner) later(id string, d time.Duration) { r.node.Executor.retry(r.vaultID, id, d) }

// backoff is how long an intent waits before trying a chain call again,
// counting its tries.
func (r *Runner) backoff(id string) time.Duration {
	if r.tries == nil {
		r.tries = map[string]int{}
	}
	r.tries[id]++
	return min(retryBase<<min(r.tries[id], 5), retryMax)
}

func hashesOf(in protocol.Intent) []common.Hash {
	if in.Tx == nil {
		return nil
	}
	out := make([]common.Hash, len(in.Tx.Hashes))
	for i, h := range in.Tx.Hashes {
		out[i] = common.HexToHash(h)
	}
	return out
}

// signedTx reads one of the intent's signed transactions as stored; a
// fault (reported) if it cannot.
func (r *Runner) signedTx(in protocol.Intent, hash string) (*types.Transaction, bool) {
	raw, err := store.SignedTx(r.v.Conn(), hash)
	if err != nil || raw == nil {
		r.v.Fault("read the signed transaction of intent "+in.ID, fmt.Errorf("%v (found %d bytes)", err, len(raw)))
		return nil, false
	}
	tx := new(types.Transaction)
	if err := tx.UnmarshalBinary(raw); err != nil {
		r.v.Fault("decode the signed transaction of intent "+in.ID, err)
		return nil, false
	}
	return tx, true
}

func messageOf(err error) string {
	if pe := protocol.AsError(err); pe != nil {
		return pe.Message
	}
	return err.Error()
}
