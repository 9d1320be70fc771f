package vault

import (
	"context"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/ethereum/go-ethereum/common"
	"github.com/rs/zerolog"
	"zombiezen.com/go/sqlite"

	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/vault/exec"
	"github.com/spells-dev/spells/vault/keys"
	"github.com/spells-dev/spells/vault/rules"
	"github.com/spells-dev/spells/vault/store"
)

// Subscriber receives a vault's frames (ready, snapshot, diffs) for one
// connection. Send must not block: it queues the frame and returns false if
// the queue is full, in which case the vault drops the subscriber and the
// connection is expected to close and later resume from its last version.
type Subscriber interface {
	Send(frame []byte) bool
}

// roomer is implemented by subscribers that can tell how many frames they
// can take right now; a catch-up larger than that is sent as a snapshot.
type roomer interface {
	Room() int
}

// errClosed is returned for requests to a vault that is shutting down.
var errClosed = protocol.Errorf(protocol.CodeUnavailable, "vault is closing; retry")

// errUnavailable is returned when a vault's file could not be opened for
// a reason that may pass (the node logged it).
var errUnavailable = protocol.Errorf(protocol.CodeUnavailable, "the vault could not be opened just now; retry")

// Vault is one user's actor: one instance of it on this node (life.go).
// Its exported methods may be called from any goroutine: each posts a
// closure to the mailbox and waits for the vault's goroutine to run it.
// Every field from conn to evaluated is owned by that goroutine alone.
type Vault struct {
	id      string // lowercase 0x address: file name and map key
	addr    common.Address
	m       *Manager
	log     zerolog.Logger
	mailbox chan letter
	in      inbox         // signal values and alarms, pushed under Manager.mu (inbox.go)
	inWake  chan struct{} // a push happened
	quit    chan struct{}
	done    chan struct{}
	// failure is why the goroutine ended on its own, for callers that
	// were waiting on it; written before done is closed.
	failure error

	conn     *sqlite.Conn // nil while unborn or dozing
	born     bool         // the vault's file exists and its state is loaded
	owner    common.Address
	version  uint64
	epoch    uint64         // rises at every move to another node (the directory's home names it)
	move     store.MoveMark // a move out of this node begun (or done: a tombstone); the vault refuses writes
	ring     keys.Ring      // the vault's keys, sealed (keys.go)
	triggers map[string]*rules.Trigger
	sessions map[string]*store.Session
	subs     map[Subscriber]string // → the session it is bound to
	forget   bool                  // end the goroutine after this letter (hibernation, a fault)
	next     int64                 // next alarm (unix ms), as last reported
	batch    *batch                // open group commit (see receive), else nil
	// usedNonces are resume nonces used since the nonces table was last
	// written: nonce → unix ms of use (see Vault.resume, flushNonces).
	usedNonces map[string]int64
	resending  bool
	fresh      []protocol.Intent // recorded by the evaluation that just ran; started after it (exec.go)
	intents    *exec.Runner      // its intents' lives
	// evaluated is the last value of each signal the vault evaluated: the
	// index offering it again (afterChange) would change nothing, or fail
	// the same way again.
	evaluated map[string]float64

	life       life         // under Manager.mu (life.go)
	lastActive atomic.Int64 // unix ms of the last real work posted
	subCount   atomic.Int32
	pins       atomic.Int32                   // callers between acquire and their pinned letter
	keys       sync.Map                       // session id → *ecdsa.PublicKey, for preverify
	keyAddr    atomic.Pointer[common.Address] // the session key's address, for the watcher (executor.go)
	portfolio  []byte                         // the last portfolio frame pushed (the goroutine's)
}

// Address returns the vault's account address.
func (v *Vault) Address() common.Address { return v.addr }

func newVault(m *Manager, addr common.Address) *Vault {
	id := idOf(addr)
	v := &Vault{
		id: id, addr: addr, m: m,
		log:      m.cfg.Logger.With().Str("vault", addr.Hex()).Logger(),
		mailbox:  make(chan letter, m.cfg.MailboxSize),
		inWake:   make(chan struct{}, 1),
		quit:     make(chan struct{}),
		done:     make(chan struct{}),
		triggers: map[string]*rules.Trigger{},
		sessions: map[string]*store.Session{},
		subs:     map[Subscriber]string{},
	}
	v.intents = exec.NewRunner(m.intents, execVault{v}, id, v.log)
	v.touch()
	return v
}

// touch marks the vault as used now (for hibernation and LRU).
func (v *Vault) touch() { v.lastActive.Store(v.m.now().UnixMilli()) }

func (v *Vault) addSub(s Subscriber, session string) {
	v.subs[s] = session
	v.subCount.Store(int32(len(v.subs)))
}

func (v *Vault) dropSub(s Subscriber) {
	if _, ok := v.subs[s]; !ok {
		return
	}
	delete(v.subs, s)
	v.subCount.Store(int32(len(v.subs)))
	if len(v.subs) == 0 {
		v.m.evictable() // it may hibernate now
	}
}

// busyLocked reports whether something is on its way to v: a pinned
// caller, a letter or an event. Manager.mu is held (events are pushed
// under it).
func (v *Vault) busyLocked() bool {
	return v.pins.Load() > 0 || len(v.mailbox) > 0 || v.in.len() > 0
}

// run is the vault's goroutine. An instance of a vault that has a file
// opens it first; an unborn one waits for the sign-in that creates it.
// Events (signals, alarms) queued before a letter are handled before it.
func (v *Vault) run(hasFile bool) {
	defer close(v.done)
	defer v.shutdown()
	if hasFile && !v.openExisting() {
		return
	}
	for !v.forget {
		select {
		case l := <-v.mailbox:
			v.drainInbox()
			v.receive(l)
		case <-v.inWake:
			v.drainInbox()
		case <-v.quit:
			v.drainInbox()
			for {
				select {
				case l := <-v.mailbox:
					v.receive(l)
				default:
					return
				}
			}
		}
		if !v.born && !v.forget {
			v.forget = v.m.retireUnborn(v)
		}
	}
}

// openExisting opens the file of a vault that has one, for a new instance.
// A file that cannot be read is quarantined; any other failure ends the
// instance, and its next use tries again.
func (v *Vault) openExisting() bool {
	err := v.openFile()
	if err == nil && v.move.To != "" {
		// A copy that moved (or is moving) to another node: it serves
		// nothing here (move.go).
		v.conn.Close()
		v.conn = nil
		v.failure = errMoving
		v.forget = true
		v.m.abandon(v)
		return false
	}
	if err == nil {
		err = v.ensureKeys()
	}
	if err != nil {
		v.failure = v.fault("open vault", err)
		v.forget = true
		v.m.abandon(v)
		return false
	}
	v.m.opened(v)
	v.afterChange()
	v.startFresh()
	v.intents.Resume()
	return true
}

func (v *Vault) shutdown() {
	if closeHook != nil {
		closeHook(v)
	}
	v.closeFile()
	// Its alarm and its index entries stay: a hibernated vault is still
	// woken on time and by the signals it reacts to.
	v.m.setLife(v, gone)
}

// closeHook, when set by a test, runs on a vault's goroutine as it ends,
// before its file is closed.
var closeHook func(v *Vault)

// closeFile closes the vault's SQLite file if it is open, first writing
// the resume nonces used since the last write.
func (v *Vault) closeFile() {
	if v.conn == nil {
		return
	}
	v.flushNonces()
	if err := v.conn.Close(); err != nil {
		v.log.Error().Err(err).Msg("close vault file")
	}
	v.conn = nil
}

// ended reports whether the goroutine has stopped.
func (v *Vault) ended() bool {
	select {
	case <-v.done:
		return true
	default:
		return false
	}
}

// do runs fn on the vault's goroutine and returns its error. The letter
// is queued whatever happens to ctx (a vault's work is not its caller's
// to cancel); ctx bounds only the wait for the answer.
func (v *Vault) do(ctx context.Context, fn func() error) error { return v.doLetter(ctx, false, fn) }

// doPinned is do for the letter of a caller that pinned the vault
// (Manager.acquire with pin): taking the letter unpins it.
func (v *Vault) doPinned(ctx context.Context, fn func() error) error {
	return v.doLetter(ctx, true, fn)
}

func (v *Vault) doLetter(ctx context.Context, pinned bool, fn func() error) error {
	res := make(chan error, 1)
	if err := v.queue(context.Background(), letter{pinned: pinned, fn: v.replyAfterCommit(fn, func(err error) { res <- err })}); err != nil {
		return err
	}
	select {
	case err := <-res:
		return err
	case <-v.done:
		// fn may have been the last thing the goroutine ran.
		select {
		case err := <-res:
			return err
		default:
			return v.endedErr()
		}
	case <-ctx.Done():
		return ctx.Err()
	}
}

// endedErr is what a caller of an instance that has ended is told.
func (v *Vault) endedErr() error {
	if v.failure != nil {
		return v.failure
	}
	return errClosed
}

// replyAfterCommit wraps fn so that reply gets its error once what fn
// wrote is durable (at the end of a group commit, if fn ran in one).
func (v *Vault) replyAfterCommit(fn func() error, reply func(error)) func() {
	return func() {
		err := fn()
		v.afterCommit(func(failed error) {
			if failed != nil {
				err = failed
			}
			reply(err)
		})
	}
}

// enqueue queues a command's fn (waiting only while the mailbox is full,
// or until ctx ends: a command not yet queued is not applied) and calls
// reply with its error on the vault's goroutine once what fn wrote is
// durable. reply must not block. If enqueue returns an error, fn was not
// queued and reply is never called.
func (v *Vault) enqueue(ctx context.Context, batch bool, fn func() error, reply func(error)) error {
	return v.queue(ctx, letter{batch: batch, fn: v.replyAfterCommit(fn, reply)})
}

// queue puts l in the mailbox, waiting while it is full; it fails if the
// goroutine has ended or, for a letter that is not pinned, if ctx ends
// first. A pinned letter is always queued: the instance waits for it.
func (v *Vault) queue(ctx context.Context, l letter) error {
	v.touch()
	if l.pinned {
		ctx = context.Background()
	}
	select {
	case v.mailbox <- l:
		return nil
	case <-v.done:
		if l.pinned {
			v.pins.Add(-1)
		}
		return v.endedErr()
	case <-ctx.Done():
		return ctx.Err()
	}
}

// postNoFile queues fn, a letter that does not need the file (it does not
// wake a dozing vault), without waiting for it to run. It gives up when
// ctx ends or the vault has ended.
func (v *Vault) postNoFile(ctx context.Context, fn func()) bool {
	select {
	case v.mailbox <- letter{fn: fn, noFile: true}:
		return true
	case <-v.done:
	case <-ctx.Done():
	}
	return false
}

// close asks the goroutine to finish the queued work, close the file and
// end. It does not wait (Manager.Close waits on done).
func (v *Vault) close() {
	select {
	case <-v.quit:
	default:
		close(v.quit)
	}
}

func (v *Vault) path() string { return pathFor(v.m.cfg.Dir, v.id) }

func pathFor(dir, id string) string {
	return filepath.Join(dir, "vaults", id[2:4], id+".db")
}
