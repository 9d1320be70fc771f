package actor

import (
	"context"
	"sync/atomic"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/rs/zerolog"

	"github.com/spells-dev/spells/internal/clock"
	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/vault/exec"
	"github.com/spells-dev/spells/vault/keys"
	"github.com/spells-dev/spells/vault/notify"
	"github.com/spells-dev/spells/vault/rules"
)

// Config is what every vault of a node shares. The host fills it in whole
// (its zero values are not defaults) and never changes it after.
type Config struct {
	Dir     string // data directory: a vault's file is Dir/vaults/<2 hex>/<id>.db
	KEK     *keys.KEK
	Chain   *protocol.ChainInfo // nil: none (grants refused with no_chain)
	Intents *exec.Config        // what every vault's intents share
	Clock   clock.Clock
	Logger  zerolog.Logger
	Metrics *Metrics
	Latest  rules.Latest // the newest value of a signal, for a new trigger

	// KeyMade, if set, is told of every new session key once it is
	// stored. It runs on the vault's goroutine and must not block.
	KeyMade func(owner, sessionKey common.Address)
	// Claim, if set, is asked before a vault's file is created here; an
	// error refuses the sign-in that would create it.
	Claim func(ctx context.Context, vault common.Address) error
	// Backup, if set, ships every committed change of the vault's file.
	Backup Backup
	// Notifier delivers the vault's alerts; nil: alerts are kept in the
	// outbox, undelivered (tests of other parts).
	Notifier *notify.Notifier
	// Restore, if set, starts reading vault's copy as RestoreArgs name it
	// from the backup, off the vault's goroutine, and hands it to the
	// vault's RestoreFrom (or RestoreFailed). It must not block.
	Restore func(vault common.Address, a protocol.RestoreArgs)
	// Stop is closed when the node stops waiting for its vaults (its
	// shutdown ran out of time): every SQLite statement a vault runs is
	// interrupted (a transaction interrupted rolls back whole).
	Stop <-chan struct{}

	NonceTTL        time.Duration // lifetime of a sign-in nonce
	MaxSessionTTL   time.Duration // longest session, whatever the SIWE expiry
	IdleAfter       time.Duration // idle time before a vault sleeps
	MailboxSize     int
	InboxSize       int // events waiting for a vault; past it the oldest are shed
	ChangeLogKeep   int
	EvaluationsKeep int
	SnapshotRecent  int
	MaxTriggers     int

	Hooks *Hooks // nil in production
}

// Hooks let a test stop or bend a vault at chosen steps. They are atomic:
// a test sets them while vaults run.
type Hooks struct {
	// CommitFault, when set, makes group commits fail with its error.
	CommitFault atomic.Pointer[func() error]
	// CreateFault runs between a new vault file's completion and its
	// rename; an error fails the creation there.
	CreateFault atomic.Pointer[func(tmp string) error]
	// Closing runs on a vault's goroutine as it ends, before its file (if
	// open) is closed.
	Closing atomic.Pointer[func(vault common.Address, hasFile bool)]
}

// Host is what a vault instance (one run of its goroutine) needs of the
// node that runs it. The host gives each instance its own Host. Every
// method is called on the vault's goroutine.
type Host interface {
	// Opened records that the vault's file, at epoch, is open (opened,
	// created or reopened): the node holds the vault.
	Opened(epoch uint64)
	// Retire takes the instance out of routing if nothing can reach it
	// any more (no pin, no letter, no event, no subscriber): it ends, and
	// the host starts a new one for the next request.
	Retire() bool
	// RetireUnborn ends an instance whose letters created no file, unless
	// a caller pinned it meanwhile.
	RetireUnborn() bool
	// Abandon takes the instance out of routing because it ends for a
	// reason of its own (a failed commit, a damaged file, a move);
	// hasFile says whether its file is still open.
	Abandon(hasFile bool)
	// MayDoze lets the instance close its file and keep its goroutine,
	// unless something is on its way to it; Dozed records it closed.
	MayDoze() bool
	Dozed()
	// WakeSlot takes a file slot to reopen a dozing vault's file, waiting
	// while the node holds its most, until quit is closed.
	WakeSlot(quit <-chan struct{}) error
	// EvictionEnded records that an eviction did not close the file.
	EvictionEnded()
	// Evictable tells the host the vault lost its last subscriber, so it
	// may be evicted now.
	Evictable()
	// Ended records that the goroutine has stopped; a vault that
	// hibernated cleanly gives what a signal can fire of it while it
	// sleeps (nil: nothing, or it did not end cleanly).
	Ended(asleep *Asleep)
	// Applied records that the vault applied the node's firing journal's
	// record seq to its file (or had applied it before).
	Applied(seq uint64)
	// Report gives the host the vault's next alarm (0: none) and its
	// threshold leaves, and returns the signal values the node knows that
	// a leaf has not seen.
	Report(next int64, leaves []rules.Leaf) (resend map[string]rules.Offer)
	// ChainHead is the chain's latest block the node has seen (0: none
	// yet): a new event condition starts after it.
	ChainHead() uint64
	// FetchEvents asks the node for the logs of event signal name (its
	// filter's key) after place after; they come back as an Event with
	// Logs, later. False: the ask was not taken (the node's watcher is not
	// running yet, or is full); the node tells the vault again.
	FetchEvents(name, key string, after uint64) bool
	// Quarantine sets the vault's damaged file aside, for cause.
	Quarantine(cause error)
	// DiskFull records that a write found the disk full.
	DiskFull(what string, err error)
	// Shed counts events dropped before the vault evaluated them.
	Shed(n int)
}

// Subscriber receives a vault's frames (ready, snapshot, diffs) for one
// connection. Send must not block: it queues the frame and returns false if
// the queue is full, in which case the vault drops the subscriber and the
// connection is expected to close and later resume from its last version.
type Subscriber interface {
	Send(frame []byte) bool
}

// What a subscriber may also be told. Each is optional.
type (
	// roomer tells how many frames it can take right now; a catch-up
	// larger than that is sent as a snapshot.
	roomer interface{ Room() int }
	// goner is told its vault ended under it (a failed commit or reopen),
	// so it reconnects and resumes.
	goner interface{ Gone() }
	// ender is closed because its session ended, after the frames already
	// queued.
	ender interface{ Ended(reason string) }
	// moveWaiter is told its vault moved to another node, so it
	// reconnects (to any node) and resumes.
	moveWaiter interface{ Moved() }
)

// Backup takes a vault's committed changes (backup.Shipper).
type Backup interface {
	// Changed takes the changes since the last call (a SQLite changeset)
	// that leave the vault at version, committed by at (unix ms); true
	// asks for the whole file instead (Base).
	Changed(vault string, version uint64, at int64, changeset []byte) (wantBase bool)
	// Base takes the vault's whole file at version.
	Base(vault string, version uint64, at int64, file []byte)
	// Forget is told when the vault's file was replaced (moved in from
	// another node): its next change ships the whole file.
	Forget(vault string)
	// Every is the longest a committed change may wait to be given:
	// changes are given at most this often, not at every transaction.
	Every() time.Duration
}
