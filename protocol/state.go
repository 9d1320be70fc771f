package protocol

import "encoding/json"

// State is a vault's whole state as a dashboard sees it, at Version.
// Intents and Evaluations hold only the most recent entries (newest last).
type State struct {
	Vault       string        `json:"vault"`
	Owner       string        `json:"owner"`
	Version     uint64        `json:"version"`
	Account     *Account      `json:"account,omitempty"`
	Grants      []Grant       `json:"grants"`
	Triggers    []Trigger     `json:"triggers"`
	Intents     []Intent      `json:"intents"`
	Evaluations []Evaluation  `json:"evaluations"`
	Alerts      AlertSettings `json:"alerts"`
	AlertLog    []Alert       `json:"alertLog"` // the newest alerts, newest first
}

// Account is what a vault shows of its keys: the address of the session
// key it signs transactions with (never the key itself), and when that key
// was made. It is absent only while the vault's keys cannot be read.
type Account struct {
	SessionKey   string `json:"sessionKey"`
	KeyCreatedAt int64  `json:"keyCreatedAt"`
}

// Grant statuses.
const (
	GrantActive  = "active"
	GrantRevoked = "revoked" // by the owner, in the vault or on-chain (DisabledDelegation)
)

// Grant is a set of delegations the owner signed to the vault's session
// key (MetaMask Delegation Framework, ERC-7710), as the vault verified and
// stored them. Its ID is its first delegation's hash.
type Grant struct {
	ID          string            `json:"id"`
	Status      string            `json:"status"`
	SessionKey  string            `json:"sessionKey"` // the delegate every delegation names
	Delegations []GrantDelegation `json:"delegations"`
	CreatedAt   int64             `json:"createdAt"`
	RevokedAt   int64             `json:"revokedAt,omitempty"`
	// Trigger is the trigger a trigger's own grant serves (it is used for
	// that trigger's intents and nothing else); empty for a standing grant.
	Trigger string `json:"trigger,omitempty"`
}

// GrantDelegation is one delegation of a grant: its hash (its id
// on-chain) and the rules its caveats set, as the vault reads them.
type GrantDelegation struct {
	Hash  string          `json:"hash"`
	Rules json.RawMessage `json:"rules"`
	Used  *GrantUse       `json:"used,omitempty"` // what the vault used of it (absent: nothing yet)
}

// GrantUse is what the vault used of a delegation: its calls in all, and
// what it spent of the current period's allowance.
type GrantUse struct {
	Calls  uint64 `json:"calls"`
	Spent  string `json:"spent,omitempty"`  // smallest units, in period
	Period int64  `json:"period,omitempty"` // the allowance's current period, counted from its start
}

// GrantArgs are the arguments of grant.add: the signed delegations, each
// in the framework's JSON shape (delegate, delegator, authority, caveats
// of enforcer/terms/args, salt, signature).
// Or PermissionContext: a hex permission context (abi.encode of the
// delegations, leaf first), as an ERC-7715 wallet's grant carries it in its
// context; it holds one delegation from the owner to the session key.
type GrantArgs struct {
	Delegations       []json.RawMessage `json:"delegations,omitempty"`
	PermissionContext string            `json:"permissionContext,omitempty"`
}

// TriggerGrant is trigger.grant's answer: the delegation that would be
// the trigger's own grant, unsigned (its salt chosen by the node), the
// EIP-712 typed data to sign for it (eth_signTypedData_v4), and the rules
// its caveats set. Signed, it goes in TriggerSpec.Delegation.
type TriggerGrant struct {
	Delegation json.RawMessage `json:"delegation"`
	TypedData  json.RawMessage `json:"typedData"`
	Rules      json.RawMessage `json:"rules"`
}

// Trigger statuses.
const (
	StatusActive  = "active"  // evaluated on signals and alarms
	StatusPaused  = "paused"  // kept, not evaluated
	StatusExpired = "expired" // its ExpiresAt passed
	StatusDone    = "done"    // it fired MaxFires times
)

// TriggerSpec is what a client sends to create or replace a trigger. The
// server leaves out an entity's optional fields that hold their zero
// value (PROTOCOL.md lists which): every diff is written to the change log
// and to every dashboard, and the zeros cost the commands benchmark about
// 5 % (DECISIONS.md).
type TriggerSpec struct {
	Name       string    `json:"name"`
	Condition  Condition `json:"condition"`
	Action     Action    `json:"action"`
	CooldownMs int64     `json:"cooldownMs,omitempty"`
	MaxFires   int64     `json:"maxFires,omitempty"`  // 0: unlimited
	ExpiresAt  int64     `json:"expiresAt,omitempty"` // unix ms; 0: never
	Paused     bool      `json:"paused,omitempty"`
	// Delegation is the trigger's own grant: one delegation, signed by the
	// owner to the vault's session key, whose caveats pin exactly what
	// the trigger may do on-chain (trigger.grant returns it to sign). It
	// is taken on create and update and kept as a grant (Trigger.Grant);
	// a trigger as stored and shown never carries it.
	Delegation json.RawMessage `json:"delegation,omitempty"`
}

// Trigger is a stored trigger with its status and counters.
type Trigger struct {
	ID string `json:"id"`
	TriggerSpec
	Status      string `json:"status"`
	Fires       int64  `json:"fires"`
	LastFiredAt int64  `json:"lastFiredAt,omitempty"`
	NextDueAt   int64  `json:"nextDueAt,omitempty"`
	CreatedAt   int64  `json:"createdAt"`
	UpdatedAt   int64  `json:"updatedAt"`
	// Grant is the id of the trigger's own grant (its delegation's hash),
	// under which its intents execute; empty: they execute under the
	// vault's standing grants.
	Grant string `json:"grant,omitempty"`
}

// Threshold operators of a signal condition.
const (
	OpBelow = "below" // fires when the value crosses from >= threshold to < threshold
	OpAbove = "above" // fires when the value crosses from <= threshold to > threshold
)

// Condition is a tree. Exactly one of these forms is set:
//   - a signal threshold: Signal, Op and Threshold;
//   - a chain read threshold: Read, Op and Threshold (the vault names the
//     read's signal, read:<hash>, at creation);
//   - a move within a window: Signal, Move and Op (below: falls by Move.Pct
//     from the window's highest; above: rises by it from its lowest); the
//     vault names the move's signal, move:<hash>, and sets Threshold;
//   - an on-chain event: Event (the vault names its signal, event:<hash>,
//     at creation); it holds at the log it takes, and only then, once per
//     log;
//   - an interval schedule: EveryMs;
//   - a one-off time: AtMs (unix ms);
//   - a combination: All or Any, each a non-empty list of conditions.
type Condition struct {
	Signal    string   `json:"signal,omitempty"`
	Op        string   `json:"op,omitempty"`
	Threshold *float64 `json:"threshold,omitempty"`
	// From limits a signal leaf to verified values: SignalFeed (only the
	// chain's price feed for the signal) or a publisher's address (only
	// values it signed); empty: any value.
	From    string      `json:"from,omitempty"`
	Read    *Read       `json:"read,omitempty"`
	Move    *Move       `json:"move,omitempty"`
	Event   *ChainEvent `json:"event,omitempty"`
	EveryMs int64       `json:"everyMs,omitempty"`
	AtMs    int64       `json:"atMs,omitempty"`
	All     []Condition `json:"all,omitempty"`
	Any     []Condition `json:"any,omitempty"`
}

// Read is a number the chain answers, read by the node at every block: a
// balance of the owner's account (Balance: a token's symbol or address, or
// "native"), or what a view function returns (Contract, Function as
// "name(type,…)", Args, and Decimals: the places of the number it
// returns). The vault fills in the rest when it takes the trigger: the
// call's data (hex) and whether the number is signed.
type Read struct {
	Balance  string   `json:"balance,omitempty"`
	Contract string   `json:"contract,omitempty"`
	Function string   `json:"function,omitempty"`
	Args     []string `json:"args,omitempty"`
	Decimals uint8    `json:"decimals,omitempty"`
	Data     string   `json:"data,omitempty"`   // the call, as the vault resolved it (0x…); for a native balance, the account
	Signed   bool     `json:"signed,omitempty"` // the function returns a signed integer
}

// ReadPrefix starts the name of a read's signal.
const ReadPrefix = "read:"

// Move is a move of a signal by Pct percent within WindowMs: a fall from
// the highest value of the window, or a rise from its lowest. Of tells,
// once the vault took the condition, which signal moves.
type Move struct {
	Pct      float64 `json:"pct"`
	WindowMs int64   `json:"windowMs"`
	Of       string  `json:"of,omitempty"`
}

// ChainEvent is a log a contract emits: Contract, Signature as
// "Name(type [indexed] [name],…)" and Topics, one filter per indexed
// parameter in order ("" or absent: any value; a value of the parameter's
// type, or a topic's 0x and 64 hex digits). FromBlock is the first block
// whose logs it takes: given, at most MaxEventBackfill blocks back, or set
// by the vault to the chain's next block when it takes the trigger.
type ChainEvent struct {
	Contract  string   `json:"contract"`
	Signature string   `json:"signature"`
	Topics    []string `json:"topics,omitempty"`
	FromBlock uint64   `json:"fromBlock,omitempty"`
	Key       string   `json:"key,omitempty"` // the filter, as the vault resolved it
}

// EventPrefix starts the name of an event condition's signal. The node
// never publishes it: it hands each matching log to the vaults that wait
// on it, in chain order.
const EventPrefix = "event:"

// MaxEventBackfill is how far back, in blocks, an event condition's
// fromBlock may start.
const MaxEventBackfill = 100_000

// MovePrefix starts the name of a move's signal: its value is the percent
// the signal stands from the window's extreme (negative for a fall).
const MovePrefix = "move:"

// Action kinds an intent can carry: swap, transfer and call execute on
// the chain under a grant; notify only records the intent.
var ActionKinds = []string{"swap", "transfer", "call", "notify"}

// SwapParams are a swap's: sell Amount of Sell for Buy through the
// chain's router, the output paid to the owner's account, receiving at
// least MinOut (whole units of Buy) or, without it, the router's quote
// less SlippageBps (basis points, default 100) when the intent is signed.
// A trigger's own grant pins MinOut on-chain, so it needs one. Tokens are
// named by symbol (GET /v1/chain) or address; amounts are in whole units
// ("1.5").
type SwapParams struct {
	Sell        string `json:"sell"`
	Buy         string `json:"buy"`
	Amount      string `json:"amount"`
	MinOut      string `json:"minOut,omitempty"`
	SlippageBps int    `json:"slippageBps,omitempty"`
}

// TransferParams are a transfer's: Amount (whole units) of Token (a symbol,
// an address, or "native") to To.
type TransferParams struct {
	Token  string `json:"token"`
	To     string `json:"to"`
	Amount string `json:"amount"`
}

// CallParams are a call's: Data (hex calldata) to Target with Value (wei,
// decimal; default 0).
type CallParams struct {
	Target string `json:"target"`
	Data   string `json:"data,omitempty"`
	Value  string `json:"value,omitempty"`
}

// Intent statuses (PROTOCOL.md has the life of an intent).
const (
	IntentPending   = "pending"   // recorded by a firing; not signed yet
	IntentSigned    = "signed"    // its transaction is signed and stored; being sent
	IntentSubmitted = "submitted" // the chain's node took the transaction
	IntentIncluded  = "included"  // in a block, waiting for confirmations
	IntentConfirmed = "confirmed" // enough blocks on top; still followed until final
	IntentFinal     = "final"     // its block is final: no reorg can take it back
	IntentReverted  = "reverted"  // included, and it reverted (Detail: the reason)
	IntentRefused   = "refused"   // the vault's policy refused it before signing (Detail: the rule)
	IntentFailed    = "failed"    // it could not be sent (Detail: why)
	IntentDone      = "done"      // nothing to execute (notify)
)

// IntentTx is the transaction an intent executes with.
type IntentTx struct {
	From     string   `json:"from"` // the session key
	To       string   `json:"to"`   // the DelegationManager
	Nonce    uint64   `json:"nonce"`
	Hash     string   `json:"hash"`   // the newest one sent
	Hashes   []string `json:"hashes"` // every hash tried, oldest first (a fee bump makes a new one)
	Gas      uint64   `json:"gas"`
	FeeCap   string   `json:"maxFeePerGas"`
	Tip      string   `json:"maxPriorityFeePerGas"`
	Block    uint64   `json:"block,omitempty"`
	GasUsed  uint64   `json:"gasUsed,omitempty"`
	Confirms uint64   `json:"confirmations,omitempty"`
	// From its receipt: the price per gas paid, the fee (gasUsed × that,
	// wei), and the tokens the transaction moved to or from the owner.
	GasPrice string      `json:"effectiveGasPrice,omitempty"`
	Fee      string      `json:"fee,omitempty"`
	Moved    []TokenMove `json:"moved,omitempty"`
}

// TokenMove is an ERC-20 transfer a transaction made to or from the
// owner's account: the token (its symbol, or its address when the chain
// does not list it), the amount in whole units, and its direction.
type TokenMove struct {
	Token  string `json:"token"`
	Amount string `json:"amount"`
	In     bool   `json:"in,omitempty"` // to the owner; else from
}

// Action is what a firing trigger wants done.
type Action struct {
	Kind   string          `json:"kind"`
	Params json.RawMessage `json:"params,omitempty"`
}

// Intent is an action recorded by a firing, in the same transaction.
// IdempotencyKey is unique per vault: the trigger's id and the number of
// the firing over the trigger's whole life (an update does not start it
// again).
type Intent struct {
	ID             string `json:"id"`
	TriggerID      string `json:"triggerId"`
	IdempotencyKey string `json:"idempotencyKey"`
	Action         Action `json:"action"`
	// Grant is the trigger's own grant the intent executes under (its
	// delegation's hash), as it was when the trigger fired; empty: the
	// vault's standing grants.
	Grant  string    `json:"grant,omitempty"`
	Status string    `json:"status"`
	Detail string    `json:"detail,omitempty"` // why it was refused, failed or reverted
	Tx     *IntentTx `json:"tx,omitempty"`
	// FiredValue is the signal's value the firing saw (absent for an
	// alarm), against which a swap's executed price is read.
	FiredValue *float64 `json:"firedValue,omitempty"`
	CreatedAt  int64    `json:"createdAt"`
	UpdatedAt  int64    `json:"updatedAt,omitempty"`
}

// Evaluation outcomes.
const (
	OutcomeFired    = "fired"    // the condition became true; an intent was recorded
	OutcomeUpdated  = "updated"  // the condition's inputs changed; nothing fired
	OutcomeCooldown = "cooldown" // it would have fired, but the cooldown holds it
	OutcomeExpired  = "expired"  // the trigger reached its expiry
	OutcomeFailed   = "failed"   // its outcome could not be recorded (the node logged why); the trigger kept its state
	OutcomeSkipped  = "skipped"  // logs past a block's bound for an event condition were not evaluated

	// Outcomes of the commands that change a trigger (cause "command"; the
	// detail holds the trigger's name).
	OutcomeCreated = "created"
	OutcomeEdited  = "edited"
	OutcomePaused  = "paused"
	OutcomeResumed = "resumed"
	OutcomeDeleted = "deleted"
	// A restore from the backup set the vault's triggers (Detail says to
	// which version, and what it changed).
	OutcomeRestored = "restored"
)

// Evaluation records one evaluation of a trigger that changed something.
type Evaluation struct {
	ID        int64    `json:"id"`
	TriggerID string   `json:"triggerId"`
	At        int64    `json:"at"`
	Cause     string   `json:"cause"` // "signal:ETH/USD", "alarm", "command"
	Value     *float64 `json:"value,omitempty"`
	Outcome   string   `json:"outcome"`
	Detail    string   `json:"detail,omitempty"`
}

// Change kinds and operations inside a Diff.
const (
	KindTrigger    = "trigger"
	KindIntent     = "intent"
	KindEvaluation = "evaluation"
	KindAccount    = "account" // id "account"; data: Account
	KindGrant      = "grant"
	KindAlerts     = "alerts" // id "alerts"; data: AlertSettings
	KindAlert      = "alert"  // an alert in the outbox; data: Alert
	ChangePut      = "put"
	ChangeDelete   = "delete"
)

// Change is one entity written or deleted by a version. Data is the full
// entity for a put (a Trigger, Intent or Evaluation) and absent for delete.
type Change struct {
	Kind string          `json:"kind"`
	Op   string          `json:"op"`
	ID   string          `json:"id"`
	Data json.RawMessage `json:"data,omitempty"`
}
