package vault

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/rs/zerolog"
	"zombiezen.com/go/sqlite"
	"zombiezen.com/go/sqlite/sqlitex"

	"github.com/spells-dev/spells/protocol"
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
	triggers map[string]*trigger
	sessions map[string]*session
	subs     map[Subscriber]struct{}
	forget   bool   // end the goroutine after this letter (hibernation, a fault)
	next     int64  // next alarm (unix ms), as last reported
	batch    *batch // open group commit (see receive), else nil
	// usedNonces are resume nonces used since the nonces table was last
	// written: nonce → unix ms of use (see Vault.resume, flushNonces).
	usedNonces map[string]int64
	resending  bool
	// evaluated is the last value of each signal the vault evaluated: the
	// index offering it again (afterChange) would change nothing, or fail
	// the same way again.
	evaluated map[string]float64

	life       life         // under Manager.mu (life.go)
	lastActive atomic.Int64 // unix ms of the last real work posted
	subCount   atomic.Int32
	pins       atomic.Int32 // callers between acquire and their pinned letter
	keys       sync.Map     // session id → *ecdsa.PublicKey, for preverify
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
		triggers: map[string]*trigger{},
		sessions: map[string]*session{},
		subs:     map[Subscriber]struct{}{},
	}
	v.touch()
	return v
}

// touch marks the vault as used now (for hibernation and LRU).
func (v *Vault) touch() { v.lastActive.Store(v.m.now().UnixMilli()) }

func (v *Vault) addSub(s Subscriber) {
	v.subs[s] = struct{}{}
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
	if err := v.openFile(); err != nil {
		v.failure = v.fault("open vault", err)
		v.forget = true
		v.m.abandon(v)
		return false
	}
	v.m.opened(v)
	v.afterChange()
	return true
}

func (v *Vault) shutdown() {
	if closeHook != nil {
		closeHook(v)
	}
	v.closeFile()
	v.m.ended(v)
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

// tx collects the changes of one state transition: the rows are written
// inside the SQL transaction, the in-memory updates run after commit.
type tx struct {
	now      time.Time
	changes  []protocol.Change
	onCommit []func()
}

func (t *tx) put(kind, id string, data any) error {
	b, err := json.Marshal(data)
	if err != nil {
		return fmt.Errorf("encode %s %s: %w", kind, id, err)
	}
	t.changes = append(t.changes, protocol.Change{Kind: kind, Op: protocol.ChangePut, ID: id, Data: b})
	return nil
}

func (t *tx) del(kind, id string) {
	t.changes = append(t.changes, protocol.Change{Kind: kind, Op: protocol.ChangeDelete, ID: id})
}

func (t *tx) then(fn func()) { t.onCommit = append(t.onCommit, fn) }

// isolate runs fn in a savepoint of the open transaction. If fn fails, what
// it wrote is rolled back alone and the changes and commit effects it
// recorded on t are dropped, so the rest of the transaction still commits.
func (t *tx) isolate(conn *sqlite.Conn, fn func() error) (err error) {
	changes, effects := len(t.changes), len(t.onCommit)
	release := sqlitex.Save(conn)
	defer func() {
		if err != nil {
			t.changes, t.onCommit = t.changes[:changes], t.onCommit[:effects]
		}
		release(&err)
	}()
	return fn()
}

// write runs fn in one immediate transaction. If fn recorded changes, the
// version is bumped and the change log appended in the same transaction.
// After commit the in-memory updates run and the diff is pushed to every
// subscriber. It returns the version the transaction produced (the
// vault's version if it changed nothing), before anything that runs after
// it (afterChange may evaluate a signal and commit the next). On error
// nothing is written and memory is untouched.
func (v *Vault) write(fn func(t *tx) error) (uint64, error) {
	if v.conn == nil {
		return 0, errors.New("vault has no file")
	}
	t := &tx{now: v.m.now()}
	if err := v.inTx(func() error {
		if err := fn(t); err != nil {
			return err
		}
		return v.appendLog(t)
	}); err != nil {
		return 0, err
	}
	for _, f := range t.onCommit {
		f()
	}
	if len(t.changes) > 0 {
		v.version++
		frame := v.diffFrame(v.version, t.now.UnixMilli(), t.changes)
		v.afterCommit(func(failed error) {
			if failed == nil {
				v.broadcast(frame)
			}
		})
		v.m.metrics.Versions.Inc()
	}
	version := v.version
	v.afterChange()
	return version, nil
}

// writeVolatile runs fn in a transaction whose commit does not wait for
// the disk, for records whose loss with the machine (power, kernel) does
// no harm: the used resume nonces (see checkNonce). A durable commit is two
// fsyncs (the WAL header's, as the first commit after the WAL was emptied,
// and the commit's). The next durable commit, or the checkpoint that
// closes the file, syncs it with the rest. No checkpoint may run while
// syncing is off (it would copy into the database pages of a WAL not yet
// on disk), so the automatic one is off for that transaction too. Not for
// use inside a group commit (v.batch).
func (v *Vault) writeVolatile(fn func() error) error {
	if err := setDurable(v.conn, false); err != nil {
		return v.restoreDurable(err)
	}
	err := v.inTx(fn)
	if rerr := v.restoreDurable(nil); rerr != nil {
		return errors.Join(err, rerr)
	}
	return err
}

// restoreDurable turns syncing back on after writeVolatile. If that fails,
// the connection's durability is unknown: the vault ends (its subscribers
// reconnect), and its next use opens the file afresh.
func (v *Vault) restoreDurable(cause error) error {
	if err := setDurable(v.conn, true); err != nil {
		v.log.Error().Err(err).Msg("turn syncing back on; closing the vault")
		v.end(errUnavailable)
		return errors.Join(cause, err)
	}
	return cause
}

func (v *Vault) inTx(fn func() error) (err error) {
	if v.batch != nil {
		// Inside a group commit: a savepoint, so that a failing command
		// rolls back alone and the others still commit.
		release := sqlitex.Save(v.conn)
		defer release(&err)
		return fn()
	}
	end, err := sqlitex.ImmediateTransaction(v.conn)
	if err != nil {
		return fmt.Errorf("begin: %w", err)
	}
	defer end(&err)
	return fn()
}

const trimEvery = 32

func (v *Vault) appendLog(t *tx) error {
	if len(t.changes) == 0 {
		return nil
	}
	next := v.version + 1
	b, err := json.Marshal(t.changes)
	if err != nil {
		return fmt.Errorf("encode changes: %w", err)
	}
	if err := sqlitex.Execute(v.conn, "INSERT INTO changes (version, at, changes) VALUES (?, ?, ?);",
		&sqlitex.ExecOptions{Args: []any{int64(next), t.now.UnixMilli(), string(b)}}); err != nil {
		return fmt.Errorf("append change log: %w", err)
	}
	if err := sqlitex.Execute(v.conn, "UPDATE vault SET version = ? WHERE id = 1;", &sqlitex.ExecOptions{Args: []any{int64(next)}}); err != nil {
		return fmt.Errorf("bump version: %w", err)
	}
	// Trimmed every trimEvery versions, not at each: the log holds between
	// ChangeLogKeep and ChangeLogKeep+trimEvery-1 versions.
	if next%trimEvery != 0 {
		return nil
	}
	keep := int64(v.m.cfg.ChangeLogKeep)
	if err := sqlitex.Execute(v.conn, "DELETE FROM changes WHERE version <= ?;", &sqlitex.ExecOptions{Args: []any{int64(next) - keep}}); err != nil {
		return fmt.Errorf("trim change log: %w", err)
	}
	return nil
}

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
			v.m.metrics.SlowSubscribers.Inc()
			v.log.Warn().Msg("subscriber queue full; dropped (it resumes from its version)")
		}
	}
}

// afterChange tells the manager when to wake the vault next and which
// signal thresholds it reacts to. If the index knows a newer value than
// one of the thresholds has seen, the vault evaluates it now.
func (v *Vault) afterChange() {
	resend := v.report()
	if v.resending {
		return
	}
	v.resending = true
	for name, value := range resend {
		if last, ok := v.evaluated[name]; !ok || last != value {
			v.signal(name, value)
		}
	}
	v.resending = false
}

// report gives the manager the vault's next alarm and its threshold
// leaves, and returns the signal values the index says it has not seen.
func (v *Vault) report() map[string]float64 {
	var next int64
	var leaves []leaf
	for _, t := range v.triggers {
		if due := t.wakeAt(); due > 0 && (next == 0 || due < next) {
			next = due
		}
		if t.Status != protocol.StatusActive {
			continue
		}
		i := 0
		walkLeaves(&t.Condition, func(c *protocol.Condition) {
			if c.Signal != "" {
				ls := t.state.Leaves[i]
				leaves = append(leaves, leaf{vault: v.id, trigger: t.ID, n: i, signal: c.Signal, op: c.Op,
					thr: *c.Threshold, known: ls.Known, met: ls.Met})
			}
			i++
		})
	}
	v.next = next
	v.m.setAlarm(v, next)
	return v.m.index.set(v.id, leaves)
}

// signal evaluates the vault's triggers on a signal value.
func (v *Vault) signal(name string, value float64) {
	if v.evaluated == nil {
		v.evaluated = map[string]float64{}
	}
	v.evaluated[name] = value
	if err := v.handle(event{cause: "signal:" + name, signal: name, value: value, hasValue: true, now: v.m.now()}); err != nil {
		v.fault("signal evaluation ("+name+")", err)
	}
}

// snapshot builds the whole state at the current version.
func (v *Vault) snapshot() (protocol.State, error) {
	st := protocol.State{Vault: v.addr.Hex(), Owner: v.owner.Hex(), Version: v.version,
		Triggers: v.sortedTriggers(), Intents: []protocol.Intent{}, Evaluations: []protocol.Evaluation{}}
	var err error
	if st.Intents, err = recentIntents(v.conn, v.m.cfg.SnapshotRecent); err != nil {
		return st, err
	}
	st.Evaluations, err = recentEvaluations(v.conn, v.m.cfg.SnapshotRecent)
	return st, err
}

func (v *Vault) sortedTriggers() []protocol.Trigger {
	out := make([]protocol.Trigger, 0, len(v.triggers))
	for _, t := range v.triggers {
		out = append(out, t.Trigger)
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].CreatedAt != out[j].CreatedAt {
			return out[i].CreatedAt < out[j].CreatedAt
		}
		return out[i].ID < out[j].ID
	})
	return out
}

// catchUp returns the frames that make a new subscriber current: the
// diffs after since, or a snapshot when since is absent, older than the
// change log, or more diffs than sub can queue next to the ready frame.
// Running on the goroutine makes what follows them gap-free.
func (v *Vault) catchUp(sub Subscriber, since *uint64) ([][]byte, error) {
	if since != nil && *since <= v.version {
		frames, ok, err := v.diffsSince(*since)
		if err != nil {
			return nil, err
		}
		if r, bounded := sub.(roomer); ok && bounded && len(frames) > r.Room()-1 {
			ok = false // too many to queue at once: one snapshot instead
		}
		if ok {
			return frames, nil
		}
	}
	st, err := v.snapshot()
	if err != nil {
		return nil, err
	}
	return [][]byte{mustJSON(protocol.Snapshot{Type: protocol.TypeSnapshot, State: st})}, nil
}

// Detach stops sending frames to sub. It is safe to call more than once.
func (v *Vault) Detach(sub Subscriber) {
	select {
	case v.mailbox <- letter{fn: func() { v.dropSub(sub) }, noFile: true}:
	case <-v.done:
	}
}

// State returns a snapshot of the vault (for tests and tools).
func (v *Vault) State(ctx context.Context) (protocol.State, error) {
	var st protocol.State
	err := v.do(ctx, func() error {
		if v.conn == nil {
			return protocol.Errorf(protocol.CodeNotFound, "vault has no file yet")
		}
		var err error
		st, err = v.snapshot()
		return err
	})
	return st, err
}
