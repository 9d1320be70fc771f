package vault

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/rs/zerolog"

	"github.com/spells-dev/spells/internal/clock"
	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/vault/actor"
	"github.com/spells-dev/spells/vault/exec"
	"github.com/spells-dev/spells/vault/keys"
	"github.com/spells-dev/spells/vault/notify"
	"github.com/spells-dev/spells/vault/store"
)

// Config configures a Manager. Dir and Nonces are required; every other
// zero value gets a working default.
type Config struct {
	Dir     string                // data directory; vault files go under Dir/vaults
	Domains []string              // SIWE domains this node serves
	ChainID uint64                // SIWE chain id (default 1)
	Nonces  *protocol.NonceIssuer // the node's nonce key, shared with the hub
	KEK     *keys.KEK             // the node's key-encryption key: it wraps every vault's data key
	// Chain describes the chain intents execute on and its contracts;
	// nil: none (grants are refused with no_chain). Client is the
	// connection to it; nil: intents are recorded and never executed.
	Chain  *protocol.ChainInfo
	Client exec.Chain
	// Confirmations is the blocks an intent's transaction needs (its own
	// included) to be confirmed (default 2); PollEvery is how often the
	// watcher looks for a new block (default 1s).
	Confirmations int
	PollEvery     time.Duration
	// Finality is how deep an intent's block must be before the vault stops
	// following it (0: the chain's finalized block; see exec.ExecutorConfig).
	Finality int
	// Restore, if set, writes the vault's copy that RestoreArgs name (a
	// version, a time, or the newest) from the backup into the file at
	// path, and says where in the backup it read it; the owner's
	// vault.restore needs it (without it: no_backup).
	Restore func(ctx context.Context, vault string, a protocol.RestoreArgs, path string) (actor.RestorePoint, error)
	// AlertsAllowPrivate lets webhooks reach loopback and private
	// addresses (refused by default: no server-side request forgery).
	AlertsAllowPrivate bool
	// AlertSMTP and AlertTelegram are the node's mail server and chat bot
	// (unset: no mail or chat alerts).
	AlertSMTP     notify.SMTPConfig
	AlertTelegram notify.TelegramConfig
	AlertVAPID    *notify.VAPID // the node's Web Push identity (nil: no push)
	// AlertRetryBase is the first pause before an alert's delivery is
	// tried again (default 2s; doubled each time up to 5m).
	AlertRetryBase time.Duration
	// BumpAfter is how long a sent transaction may wait for a block before
	// it is replaced with higher fees (default 30s).
	BumpAfter time.Duration

	NonceTTL      time.Duration // lifetime of a sign-in nonce (default 5m)
	MaxSessionTTL time.Duration // longest session, whatever the SIWE expiry (default 24h)

	Clock   clock.Clock    // default clock.Real
	Logger  zerolog.Logger // default: discard
	Metrics *Metrics       // default: unregistered collectors

	// Latest returns the newest value of a signal, so a new trigger starts
	// from where the market is. Default: nothing known.
	Latest func(signal string) (float64, bool)

	// KeyMade, if set, is told of every new session key once it is
	// stored: at a vault's creation and at each rotation (the dev chain's
	// faucet funds it). It runs on the vault's goroutine and must not
	// block.
	KeyMade func(owner, sessionKey common.Address)

	// AllowCreate, if set, is asked before the first sign-in of an address
	// creates its vault on this node, with the client's source address; an
	// error (a *protocol.Error) refuses the sign-in and creates nothing.
	AllowCreate func(from string, owner common.Address) error

	// Backup, if set, takes every vault's committed changes
	// (backup.Shipper); nil: no backup.
	Backup actor.Backup

	// MailboxSize bounds a vault's queue (default 32). Every running vault
	// allocates it, dashboards' vaults included; a sender waits when it is
	// full. A small mailbox costs pipelined commands nothing (a group
	// commit keeps taking commands as they arrive, up to 128) and
	// saves memory in every running vault.
	MailboxSize     int
	ChangeLogKeep   int // versions kept for resume (default 1000)
	EvaluationsKeep int // evaluation rows kept per vault (default 1000; trimmed every 32 rows)
	SnapshotRecent  int // intents and evaluations in a snapshot (default 100)
	MaxTriggers     int // per vault (default 256)

	// Hibernation: a vault with no subscriber, idle for IdleAfter and with
	// nothing due within IdleAfter is closed (goroutine ended, file closed)
	// and reopened on demand. MaxOpen bounds the open vaults (each holds
	// FilesPerVault file descriptors); past it the least recently used vault
	// without subscribers is closed.
	IdleAfter time.Duration // default 2m
	MaxOpen   int           // default DefaultMaxOpen

	// Claim, when set, is asked before this node creates a vault's file
	// (after the sign-in that creates it was verified): in a cluster it
	// records this node as the vault's home in the directory. An error
	// refuses the sign-in, and nothing is written; a *protocol.Error is
	// passed on to the client as it is.
	Claim func(ctx context.Context, vault common.Address) error

	// InboxSize bounds the signal values and alarms waiting for one vault
	// (default 256); past it the oldest are shed and counted
	// (spells_signal_values_shed_total).
	InboxSize int

	// Hooks are for tests: they stop or bend the node at chosen steps. Nil
	// in production.
	Hooks *Hooks
}

// Hooks let a test stop or bend a node at chosen steps.
type Hooks struct {
	Exec  *exec.Hooks  // an intent's steps
	Actor *actor.Hooks // a vault's commits, creation and close
	// JanitorWait runs when the janitor finds every one of its slots
	// taken and waits for one.
	JanitorWait atomic.Pointer[func()]
}

func (c *Config) setDefaults() {
	def := func(p *int, v int) {
		if *p <= 0 {
			*p = v
		}
	}
	def(&c.MailboxSize, 32)
	def(&c.ChangeLogKeep, 1000)
	def(&c.EvaluationsKeep, 1000)
	def(&c.SnapshotRecent, 100)
	def(&c.MaxTriggers, 256)
	def(&c.MaxOpen, DefaultMaxOpen)
	def(&c.InboxSize, 256)
	def(&c.Confirmations, 2)
	if c.PollEvery <= 0 {
		c.PollEvery = time.Second
	}
	if c.BumpAfter <= 0 {
		c.BumpAfter = 30 * time.Second
	}
	if c.IdleAfter <= 0 {
		c.IdleAfter = 2 * time.Minute
	}
	if c.ChainID == 0 {
		c.ChainID = 1
	}
	if c.NonceTTL <= 0 {
		c.NonceTTL = 5 * time.Minute
	}
	if c.MaxSessionTTL <= 0 {
		c.MaxSessionTTL = 24 * time.Hour
	}
	if c.Clock == nil {
		c.Clock = clock.Real{}
	}
	if c.Metrics == nil {
		c.Metrics = NewMetrics(nil)
	}
	if c.Latest == nil {
		c.Latest = func(string) (float64, bool) { return 0, false }
	}
}

// FilesPerVault is how many file descriptors an open vault holds.
const FilesPerVault = store.FilesPerVault

// DefaultMaxOpen is how many vault files a node keeps open by default
// (DECISIONS.md has the figures it was chosen by).
const DefaultMaxOpen = 1000
