package actor

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/rs/zerolog"
	"zombiezen.com/go/sqlite"

	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/vault/exec"
	"github.com/spells-dev/spells/vault/keys"
	"github.com/spells-dev/spells/vault/rules"
	"github.com/spells-dev/spells/vault/store"
)

// Vault is one user's actor: one instance of it on this node. Its
// exported methods may be called from any goroutine: each posts a letter
// to the mailbox (or an event to the inbox) and, if it has an answer,
// waits for the vault's goroutine to run it. Every field from conn to
// deferred is owned by that goroutine alone; no lock guards them.
type Vault struct {
	id      string // lowercase 0x address: file name and map key
	addr    common.Address
	cfg     *Config
	host    Host
	log     zerolog.Logger
	mailbox chan letter
	in      Inbox         // signal values, chain results and alarms
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
	ring     keys.Ring      // the vault's keys, sealed
	triggers map[string]*rules.Trigger
	// codeMisses counts wrong mail confirmation codes since the last one
	// was made (alerts.go): past codeTries the code serves no more.
	codeMisses int
	sessions   map[string]*store.Session
	subs       map[Subscriber]string // → the session it is bound to
	forget     bool                  // end the goroutine after this letter (hibernation, a fault)
	retired    bool                  // it ends because it hibernated (the host retired it)
	// journaled are the firing journal's records the host handed it to
	// apply as its file opens (asleep.go).
	journaled []*Fired
	next      int64  // next alarm (unix ms), as last reported
	batch     *batch // open group commit (see receive), else nil
	// usedNonces are resume nonces used since the nonces table was last
	// written: nonce → unix ms of use (see resume, flushNonces).
	usedNonces map[string]int64
	rec        *store.Recorder   // the file's changes for the backup, while it is open (Config.Backup)
	unshipped  bool              // rec holds committed changes not given to the backup yet
	backupDue  int64             // when they are given (unix ms; 0: none waiting)
	fresh      []protocol.Intent // recorded by the evaluation that just ran; started after it
	intents    *exec.Runner      // the intents' lives (set by Run)
	// evaluated is the last value of each signal the vault evaluated: the
	// index offering it again (settle) would change nothing, or fail the
	// same way again.
	evaluated map[string]float64
	// eventsAsked holds when the vault asked the node for an event
	// signal's logs, until they come.
	eventsAsked map[string]time.Time
	// eventsSeen are the event signals asked for since the file loaded
	// (askNewEvents).
	eventsSeen map[string]bool
	portfolio  []byte    // the last portfolio frame pushed
	restoring  time.Time // when a restore the owner asked for started being read from the backup (zero: none)
	deferred   []func()  // work the vault gave itself, run after the current letter
	dirty      bool      // a transaction committed since the host last heard (settle)

	lastActive atomic.Int64 // unix ms of the last real work posted
	subCount   atomic.Int32
	pins       atomic.Int32                   // callers between the host's acquire and their pinned letter
	keys       sync.Map                       // session id → *ecdsa.PublicKey, for preverify
	keyAddr    atomic.Pointer[common.Address] // the session key's address, for the chain watcher
}

// letter is one message in a vault's mailbox.
type letter struct {
	fn func()
	// batch marks a command: it may share one commit (one fsync) with the
	// commands queued right behind it.
	batch bool
	// noFile marks a letter that does not touch the file, so it does not
	// wake a dozing vault (hibernate, doze, detach).
	noFile bool
	// pinned marks the letter of a caller that pinned the vault (Pin);
	// taking it unpins the vault.
	pinned bool
}

// batch is an open group commit: the effects that must wait until the
// commit is durable (replies to callers, diffs to subscribers), in order.
type batch struct {
	commands int
	effects  []func(failed error)
}

// New returns an instance of the vault at addr, not yet running: the host
// registers it, then runs Run on a goroutine of its own.
func New(cfg *Config, addr common.Address, host Host) *Vault {
	id := ID(addr)
	v := &Vault{
		id: id, addr: addr, cfg: cfg, host: host,
		log:      cfg.Logger.With().Str("vault", addr.Hex()).Logger(),
		mailbox:  make(chan letter, cfg.MailboxSize),
		inWake:   make(chan struct{}, 1),
		quit:     make(chan struct{}),
		done:     make(chan struct{}),
		triggers: map[string]*rules.Trigger{},
		sessions: map[string]*store.Session{},
		subs:     map[Subscriber]string{},
	}
	v.touch()
	return v
}

// Address returns the vault's account address.
func (v *Vault) Address() common.Address { return v.addr }

// ID returns the vault's id (its lowercase address).
func (v *Vault) ID() string { return v.id }

// Path is the vault file's place in the data directory dir.
func Path(dir, id string) string { return filepath.Join(dir, "vaults", id[2:4], id+".db") }

func (v *Vault) path() string { return Path(v.cfg.Dir, v.id) }

func (v *Vault) now() time.Time { return v.cfg.Clock.Now() }

// touch marks the vault as used now (for hibernation and LRU).
func (v *Vault) touch() { v.lastActive.Store(v.now().UnixMilli()) }

// LastActive is when the vault was last given work (unix ms).
func (v *Vault) LastActive() int64 { return v.lastActive.Load() }

// Subscribers is how many connections the vault sends frames to.
func (v *Vault) Subscribers() int { return int(v.subCount.Load()) }

// SessionKey is the session key's address, or nil before the vault's
// keys are read.
func (v *Vault) SessionKey() *common.Address { return v.keyAddr.Load() }

// Pin marks a caller on its way to the vault with a letter of its own (a
// pinned one): the vault does not retire until it has taken it.
func (v *Vault) Pin() { v.pins.Add(1) }

// Busy reports whether something is on its way to the vault: a pinned
// caller, a letter or an event. The host asks under the lock it pushes
// events under.
func (v *Vault) Busy() bool {
	return v.pins.Load() > 0 || len(v.mailbox) > 0 || v.in.Len() > 0
}

// Post puts ev in the vault's inbox and wakes it; it never waits. It
// returns how many older events it shed to keep within the bound.
func (v *Vault) Post(ev Event) (shed int) {
	shed = v.in.Push(ev, v.cfg.InboxSize)
	select {
	case v.inWake <- struct{}{}:
	default:
	}
	return shed
}

// Done is closed when the goroutine has stopped.
func (v *Vault) Done() <-chan struct{} { return v.done }

// Ended reports whether the goroutine has stopped.
func (v *Vault) Ended() bool {
	select {
	case <-v.done:
		return true
	default:
		return false
	}
}

// Close asks the goroutine to finish the queued work, close the file and
// end. It does not wait (Done is closed then).
func (v *Vault) Close() {
	select {
	case <-v.quit:
	default:
		close(v.quit)
	}
}

// HasFile reports whether the vault's file is open; for the host, on the
// vault's goroutine (a Host method's caller).
func (v *Vault) HasFile() bool { return v.conn != nil }

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
		v.host.Evictable() // it may hibernate now
	}
}

// diffFrame is version's diff as its subscribers get it.
func (v *Vault) diffFrame(version uint64, at int64, changes []protocol.Change) []byte {
	return mustJSON(protocol.Diff{Type: protocol.TypeDiff, Vault: v.addr.Hex(), Version: version, At: at, Changes: changes})
}

func mustJSON(x any) []byte {
	b, err := json.Marshal(x)
	if err != nil {
		panic(fmt.Sprintf("encode frame: %v", err)) // frames are plain structs; this cannot fail
	}
	return b
}

// broadcast sends frame to every subscriber, dropping those that cannot
// keep up.
func (v *Vault) broadcast(frame []byte) {
	for s := range v.subs {
		if !s.Send(frame) {
			v.dropSub(s)
			v.cfg.Metrics.SlowSubscribers.Inc()
			v.log.Warn().Msg("subscriber queue full; dropped (it resumes from its version)")
		}
	}
}

// later runs fn on the vault's goroutine after the current letter (and
// its commit): work the vault gives itself, which must not wait on its
// own mailbox.
func (v *Vault) later(fn func()) { v.deferred = append(v.deferred, fn) }

// Queued is how many letters wait in the vault's mailbox.
func (v *Vault) Queued() int { return len(v.mailbox) }
