package main

import (
	"context"
	"errors"
	"math/big"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/ethereum/go-ethereum"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/spells-dev/spells/vault/exec"
	"github.com/spells-dev/spells/vault/rules"
)

// logWatcher reads the logs of the event filters the node's vaults wait
// on. At every poll it reads each filter's new blocks, up to the newest
// with -confirmations, into a cache of recent logs, and tells the vaults
// whose cursor is behind a new log (vault.Manager.NudgeEvents). A vault
// asks for the logs after its cursor (Fetch); an ask the cache covers is
// answered from it, an older one from the chain, in spans of blocks that
// vaults asking from nearby share, so a vault stopped for any number of
// blocks takes every log it missed, and each once (its cursor is in its
// file). At most maxLogsPerBlock logs of one filter are taken a block: the
// rest are counted, logged and told to the owner.
type logWatcher struct {
	c       logChain
	vaults  logVaults
	confirm uint64
	every   time.Duration
	m       *prometheus.CounterVec
	log     zerolog.Logger

	head  atomic.Uint64 // the newest block seen
	turn  int           // where the next poll starts among many filters (poll's own)
	swept time.Time     // when the vaults behind were last told again (poll's own)
	asks  chan logAsk
	// backfills are the asks older than the cache, for the backfill
	// readers.
	backfills chan logAsk

	mu      sync.Mutex
	live    map[string]*logCache   // by event signal: its recent logs
	spans   map[spanKey]*logSpan   // older spans read for asks, the newest few
	parsed  map[string]*exec.Event // by key: the event, to describe its logs
	reading map[string]*sync.Mutex // by event signal: held while a span of it is read for an ask

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// Bounds of the log watcher.
const (
	maxLogsPerBlock   = 100              // logs of one filter taken a block
	maxBatch          = 256              // logs handed to a vault at once
	maxCachedLogs     = 10_000           // recent logs kept for one filter
	maxAllCachedLogs  = 50_000           // recent logs kept for all filters: many filters keep fewer each
	maxSpanLogs       = 2_048            // logs kept of one read: a denser span is cut at a block
	spanBlocks        = 2_000            // blocks read in one eth_getLogs
	maxSpansKept      = 32               // older spans kept for other vaults' asks (each at most maxSpanLogs)
	spansPerPoll      = 8                // spans a filter catches up by in one poll
	maxFiltersPerPoll = 200              // filters read in one poll, in turn
	maxAsks           = 4096             // asks waiting; past it an ask is dropped (the vault asks again)
	backfillReaders   = 4                // asks older than the cache read at once (one per filter)
	resweep           = 30 * time.Second // how often the vaults still behind are told again
)

// logChain is what the watcher reads from the chain.
type logChain interface {
	HeaderByNumber(ctx context.Context, number *big.Int) (*types.Header, error)
	FilterLogs(ctx context.Context, q ethereum.FilterQuery) ([]types.Log, error)
}

// logVaults is the vault manager, as the watcher uses it.
type logVaults interface {
	Events() map[string]string
	EventsFrom(name string) (cursor uint64, ok bool)
	NudgeEvents(name string, pos uint64) int
	PostLogs(id, name string, b *rules.LogBatch)
}

type logAsk struct {
	id, name, key string
	after         uint64
}

// logCache is one filter's recent logs: every log of blocks lo..hi (none
// while hi < lo), at most maxLogsPerBlock a block.
type logCache struct {
	key    string
	lo, hi uint64
	newest uint64 // the newest log's place read (the catch-up's too, once done)
	// Catching up, once the filter is first seen: the blocks
	// catchFrom..catchTo (its vaults' least cursor to the cache) are read,
	// and caught is the newest log found there (newest once done).
	catching           bool
	catchFrom, catchTo uint64
	caught             uint64
	logs               []rules.Log
	skipped            []rules.Skipped
}

type spanKey struct {
	name  string
	start uint64
}

// logSpan is an older span of blocks read for an ask: every log of blocks
// start..end.
type logSpan struct {
	end     uint64
	logs    []rules.Log
	skipped []rules.Skipped
	used    time.Time
}

func logMetrics(reg prometheus.Registerer) *prometheus.CounterVec {
	m := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "spells_event_logs_total",
		Help: "Logs and asks of the vaults' event conditions, by result: read (logs a filter matched), skipped (past a block's bound), served (asks the cache answered), backfilled (asks read from the chain), failed (reads that failed), dropped (asks past the queue's bound)."}, []string{"result"})
	if reg != nil {
		reg.MustRegister(m)
	}
	return m
}

// newLogWatcher makes a log watcher that is not running yet.
func newLogWatcher(c logChain, vaults logVaults, confirmations int, every time.Duration, m *prometheus.CounterVec, log zerolog.Logger) *logWatcher {
	return &logWatcher{c: c, vaults: vaults, confirm: uint64(max(confirmations, 1)), every: every, m: m, log: log,
		asks: make(chan logAsk, maxAsks), backfills: make(chan logAsk, maxAsks), live: map[string]*logCache{}, spans: map[spanKey]*logSpan{},
		parsed: map[string]*exec.Event{}, reading: map[string]*sync.Mutex{}}
}

// startLogs starts a log watcher: its poller, its answerer and its
// backfill readers, until stop.
func startLogs(c logChain, vaults logVaults, confirmations int, every time.Duration, m *prometheus.CounterVec, log zerolog.Logger) *logWatcher {
	w := newLogWatcher(c, vaults, confirmations, every, m, log)
	ctx, cancel := context.WithCancel(context.Background())
	w.cancel = cancel
	w.wg.Add(2 + backfillReaders)
	go w.poll(ctx)
	go w.answer(ctx)
	for range backfillReaders {
		go w.backfill(ctx)
	}
	return w
}

func (w *logWatcher) stop() {
	w.cancel()
	w.wg.Wait()
}

// Head is the newest block the watcher has seen.
func (w *logWatcher) Head() uint64 { return w.head.Load() }

// Fetch queues vault id's ask for event signal name's logs after place
// after, and reports whether it did (not past maxAsks); it never waits.
func (w *logWatcher) Fetch(id, name, key string, after uint64) bool {
	select {
	case w.asks <- logAsk{id: id, name: name, key: key, after: after}:
		return true
	default:
		w.m.WithLabelValues("dropped").Inc()
		return false
	}
}

// poll reads each watched filter's new blocks at every tick.
func (w *logWatcher) poll(ctx context.Context) {
	defer w.wg.Done()
	t := time.NewTicker(w.every)
	defer t.Stop()
	for {
		if head, err := w.c.HeaderByNumber(ctx, nil); err == nil {
			w.head.Store(head.Number.Uint64())
			w.extend(ctx, head.Number.Uint64())
		} else if ctx.Err() == nil {
			w.log.Debug().Err(err).Msg("event logs: no head; the blocks are read when the chain answers")
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// safe is the newest block whose logs are taken: the one with
// -confirmations blocks, its own included.
func (w *logWatcher) safe(head uint64) uint64 {
	if head+1 < w.confirm {
		return 0
	}
	return head + 1 - w.confirm
}

// extend reads every watched filter's blocks up to the safe head, and
// tells the vaults behind a new log.
func (w *logWatcher) extend(ctx context.Context, head uint64) {
	safe := w.safe(head)
	want := w.vaults.Events()
	names := make([]string, 0, len(want))
	w.mu.Lock()
	for name := range w.live {
		if _, ok := want[name]; !ok {
			delete(w.live, name) // no leaf waits on it any more
			delete(w.reading, name)
		}
	}
	var fresh []string
	for name, key := range want {
		names = append(names, name)
		if w.live[name] == nil {
			w.live[name] = &logCache{key: key, lo: safe + 1, hi: safe}
			fresh = append(fresh, name)
		}
	}
	w.mu.Unlock()
	for _, name := range fresh {
		// Seen first (a new filter, or the node started): the blocks from
		// its vaults' least cursor are read first, and only the vaults
		// behind a log found there are told (a sleeping vault whose filter
		// matched nothing while the node was down stays asleep).
		if c, ok := w.vaults.EventsFrom(name); ok && rules.PosBlock(c+1) <= safe {
			w.mu.Lock()
			if lc := w.live[name]; lc != nil {
				lc.catchFrom, lc.catchTo, lc.catching = rules.PosBlock(c+1), safe, true
			}
			w.mu.Unlock()
		}
	}
	if now := time.Now(); now.Sub(w.swept) >= resweep {
		// A vault still behind (its ask failed, or its batch was shed
		// from a full inbox) is told again.
		w.swept = now
		w.mu.Lock()
		behind := map[string]uint64{}
		for name, lc := range w.live {
			if !lc.catching {
				behind[name] = lc.newest
			}
		}
		w.mu.Unlock()
		for name, pos := range behind {
			w.vaults.NudgeEvents(name, pos)
		}
	}
	sort.Strings(names)
	perFilter := min(maxCachedLogs, max(maxBatch, maxAllCachedLogs/max(len(names), 1)))
	if len(names) > maxFiltersPerPoll {
		// Many filters: each poll reads the next maxFiltersPerPoll in
		// turn; the others' blocks wait (their logs are late, not lost).
		start := w.turn % len(names)
		names = append(names[start:], names[:start]...)[:maxFiltersPerPoll]
		w.turn += maxFiltersPerPoll
	}
	for _, name := range names {
		w.catchUp(ctx, name)
		for i := 0; i < spansPerPoll; i++ {
			w.mu.Lock()
			lc := w.live[name]
			if lc == nil || lc.hi >= safe {
				w.mu.Unlock()
				break
			}
			from, key := lc.hi+1, lc.key
			w.mu.Unlock()
			to := min(safe, from+spanBlocks-1)
			logs, skipped, to, err := w.readKept(ctx, name, key, from, to)
			if err != nil {
				if ctx.Err() == nil {
					w.m.WithLabelValues("failed").Inc()
					w.log.Warn().Err(err).Str("signal", name).Uint64("from", from).Uint64("to", to).Msg("event logs: read failed; the blocks are read again at the next poll")
				}
				break
			}
			w.mu.Lock()
			if lc = w.live[name]; lc != nil && lc.hi+1 == from {
				lc.logs, lc.skipped, lc.hi = append(lc.logs, logs...), append(lc.skipped, skipped...), to
				if len(logs) > 0 {
					lc.newest = logs[len(logs)-1].Pos
				}
				lc.trim(perFilter)
			}
			w.mu.Unlock()
			if len(logs) > 0 {
				w.vaults.NudgeEvents(name, logs[len(logs)-1].Pos)
			}
		}
	}
}

// catchUp reads, for a filter first seen, the next spans of the blocks
// from its vaults' least cursor to its cache, keeping them for the vaults'
// asks; once it has read them all, it tells the vaults behind the newest
// log it found, if any.
func (w *logWatcher) catchUp(ctx context.Context, name string) {
	for i := 0; i < spansPerPoll; i++ {
		w.mu.Lock()
		lc := w.live[name]
		if lc == nil || !lc.catching {
			w.mu.Unlock()
			return
		}
		from, to, key := lc.catchFrom, lc.catchTo, lc.key
		if from > to {
			lc.catching, lc.newest = false, max(lc.newest, lc.caught)
			w.mu.Unlock()
			if lc.caught > 0 {
				w.vaults.NudgeEvents(name, lc.caught)
			}
			return
		}
		w.mu.Unlock()
		logs, skipped, end, err := w.readKept(ctx, name, key, from, min(to, from+spanBlocks-1))
		if err != nil {
			if ctx.Err() == nil {
				w.m.WithLabelValues("failed").Inc()
				w.log.Warn().Err(err).Str("signal", name).Uint64("from", from).Msg("event logs: catching up after start: read failed; read again at the next poll")
			}
			return
		}
		w.keepSpan(name, from, end, logs, skipped)
		w.mu.Lock()
		if lc = w.live[name]; lc != nil && lc.catchFrom == from {
			lc.catchFrom = end + 1
			if len(logs) > 0 {
				lc.caught = logs[len(logs)-1].Pos
			}
		}
		w.mu.Unlock()
	}
}

// keepSpan keeps the logs of blocks from..end of event signal name for
// the vaults' asks, dropping the least used span past maxSpansKept.
func (w *logWatcher) keepSpan(name string, from, end uint64, logs []rules.Log, skipped []rules.Skipped) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.spans[spanKey{name, from}] = &logSpan{end: end, logs: logs, skipped: skipped, used: time.Now()}
	if len(w.spans) > maxSpansKept {
		var oldest spanKey
		first := true
		for k, s := range w.spans {
			if first || s.used.Before(w.spans[oldest].used) {
				oldest, first = k, false
			}
		}
		delete(w.spans, oldest)
	}
}

// trim keeps at most n logs, dropping whole blocks from the start.
func (lc *logCache) trim(n int) {
	if len(lc.logs) <= n {
		return
	}
	first := len(lc.logs) - n // the oldest log that may stay
	cut := rules.PosBlock(lc.logs[first].Pos)
	if rules.PosBlock(lc.logs[first-1].Pos) == cut {
		cut++ // its block does not fit whole
	}
	i := sort.Search(len(lc.logs), func(i int) bool { return rules.PosBlock(lc.logs[i].Pos) >= cut })
	lc.logs = append([]rules.Log(nil), lc.logs[i:]...)
	j := sort.Search(len(lc.skipped), func(i int) bool { return lc.skipped[i].Block >= cut })
	lc.skipped = append([]rules.Skipped(nil), lc.skipped[j:]...)
	lc.lo = cut
}

// answer answers each ask the cache or a span read before covers, at
// once, and hands the others to the backfill readers: a filter whose
// reads are slow holds up no ask the cache can answer.
func (w *logWatcher) answer(ctx context.Context) {
	defer w.wg.Done()
	for {
		select {
		case <-ctx.Done():
			return
		case a := <-w.asks:
			if b, ok := w.cached(a); ok {
				w.vaults.PostLogs(a.id, a.name, b)
				continue
			}
			select {
			case w.backfills <- a:
			default:
				w.m.WithLabelValues("dropped").Inc() // the vault is told again (resweep)
			}
		}
	}
}

// backfill answers asks older than the cache, reading the chain.
func (w *logWatcher) backfill(ctx context.Context) {
	defer w.wg.Done()
	for {
		select {
		case <-ctx.Done():
			return
		case a := <-w.backfills:
			b := w.read1(ctx, a)
			if ctx.Err() != nil {
				return
			}
			w.vaults.PostLogs(a.id, a.name, b)
		}
	}
}

// cached is the answer to ask a from what the watcher holds: the cache of
// recent blocks, or a span read for an earlier ask; false if neither
// covers its place.
func (w *logWatcher) cached(a logAsk) (*rules.LogBatch, bool) {
	from := rules.PosBlock(a.after + 1) // the block of the first place after
	w.mu.Lock()
	defer w.mu.Unlock()
	lc := w.live[a.name]
	if lc == nil || lc.key != a.key {
		return &rules.LogBatch{After: a.after, Through: a.after}, true
	}
	if from >= lc.lo {
		w.m.WithLabelValues("served").Inc()
		return cut(a.after, lc.logs, lc.skipped, lc.hi, lc.hi), true
	}
	for k, sp := range w.spans {
		if k.name == a.name && k.start <= from && from <= sp.end {
			// Read for another vault asking from nearby.
			sp.used = time.Now()
			w.m.WithLabelValues("backfilled").Inc()
			return cut(a.after, sp.logs, sp.skipped, sp.end, lc.hi), true
		}
	}
	return nil, false
}

// read1 answers ask a by reading the span of blocks from its place, one
// read of a filter at a time (an ask that waited for another's read of
// the same span is answered from it).
func (w *logWatcher) read1(ctx context.Context, a logAsk) *rules.LogBatch {
	w.mu.Lock()
	lock := w.reading[a.name]
	if lock == nil {
		lock = &sync.Mutex{}
		w.reading[a.name] = lock
	}
	w.mu.Unlock()
	lock.Lock()
	defer lock.Unlock()
	if b, ok := w.cached(a); ok {
		return b
	}
	from := rules.PosBlock(a.after + 1)
	w.mu.Lock()
	lc := w.live[a.name]
	if lc == nil {
		w.mu.Unlock()
		return &rules.LogBatch{After: a.after, Through: a.after}
	}
	lo, hi := lc.lo, lc.hi
	w.mu.Unlock()
	logs, skipped, end, err := w.readKept(ctx, a.name, a.key, from, min(from+spanBlocks-1, lo-1))
	if err != nil {
		if ctx.Err() == nil {
			w.m.WithLabelValues("failed").Inc()
			w.log.Warn().Err(err).Str("signal", a.name).Str("vault", a.id).Uint64("from", from).Msg("event logs: backfill read failed; the vault asks again")
		}
		return &rules.LogBatch{After: a.after, Through: a.after, Err: "the node could not read the chain's logs: " + readReason(err)}
	}
	w.keepSpan(a.name, from, end, logs, skipped)
	w.m.WithLabelValues("backfilled").Inc()
	return cut(a.after, logs, skipped, end, hi)
}

// cut is a batch of the logs after place after, of logs that hold every
// log up to block end; more follow while end is before hi.
func cut(after uint64, logs []rules.Log, skipped []rules.Skipped, end, hi uint64) *rules.LogBatch {
	b := &rules.LogBatch{After: after, Through: max(after, rules.BlockEnd(end)), More: end < hi}
	i := sort.Search(len(logs), func(i int) bool { return logs[i].Pos > after })
	if n := len(logs) - i; n > maxBatch {
		b.Logs = append([]rules.Log(nil), logs[i:i+maxBatch]...)
		b.Through, b.More = b.Logs[maxBatch-1].Pos, true
	} else {
		b.Logs = append([]rules.Log(nil), logs[i:]...)
	}
	for _, s := range skipped {
		if rules.BlockEnd(s.Block) > after && rules.BlockEnd(s.Block) <= b.Through {
			b.Skipped = append(b.Skipped, s)
		}
	}
	return b
}

// readKept is read, cut at the block past maxSpanLogs logs: it returns
// the last block it holds every log of.
func (w *logWatcher) readKept(ctx context.Context, name, key string, from, to uint64) ([]rules.Log, []rules.Skipped, uint64, error) {
	logs, skipped, err := w.read(ctx, name, key, from, to)
	if err != nil {
		return nil, nil, to, err
	}
	if len(logs) > maxSpanLogs {
		if b := rules.PosBlock(logs[maxSpanLogs].Pos); b > from {
			i := sort.Search(len(logs), func(i int) bool { return rules.PosBlock(logs[i].Pos) >= b })
			j := sort.Search(len(skipped), func(i int) bool { return skipped[i].Block >= b })
			logs, skipped, to = logs[:i], skipped[:j], b-1
		}
	}
	w.m.WithLabelValues("read").Add(float64(len(logs)))
	for _, s := range skipped {
		w.m.WithLabelValues("skipped").Add(float64(s.N))
		w.log.Warn().Str("signal", name).Uint64("block", s.Block).Int("skipped", s.N).Int("bound", s.Bound).Msg("event logs: more logs in one block than a filter takes; the rest are not evaluated and the owners are told")
	}
	return logs, skipped, to, nil
}

// read reads the logs of filter key in blocks from..to, at most
// maxLogsPerBlock a block (the rest counted as skipped), each described
// in words. A range the chain refuses as too large is read in halves.
func (w *logWatcher) read(ctx context.Context, name, key string, from, to uint64) ([]rules.Log, []rules.Skipped, error) {
	q, ev, err := w.query(key)
	if err != nil {
		return nil, nil, err
	}
	q.FromBlock, q.ToBlock = new(big.Int).SetUint64(from), new(big.Int).SetUint64(to)
	rctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	raw, err := w.c.FilterLogs(rctx, q)
	cancel()
	if err != nil {
		if from < to && ctx.Err() == nil && tooMany(err) {
			// Too many results, or too long a range, for this chain:
			// halves, each within its bound.
			mid := from + (to-from)/2
			a, as, err := w.read(ctx, name, key, from, mid)
			if err != nil {
				return nil, nil, err
			}
			b, bs, err := w.read(ctx, name, key, mid+1, to)
			if err != nil {
				return nil, nil, err
			}
			return append(a, b...), append(as, bs...), nil
		}
		return nil, nil, err
	}
	sort.Slice(raw, func(i, j int) bool {
		if raw[i].BlockNumber != raw[j].BlockNumber {
			return raw[i].BlockNumber < raw[j].BlockNumber
		}
		return raw[i].Index < raw[j].Index
	})
	var logs []rules.Log
	var skipped []rules.Skipped
	var block uint64
	taken := 0
	for _, l := range raw {
		if l.Removed {
			continue
		}
		if l.BlockNumber != block {
			block, taken = l.BlockNumber, 0
		}
		if taken >= maxLogsPerBlock {
			if n := len(skipped); n > 0 && skipped[n-1].Block == block {
				skipped[n-1].N++
			} else {
				skipped = append(skipped, rules.Skipped{Block: block, N: 1, Bound: maxLogsPerBlock})
			}
			continue
		}
		taken++
		logs = append(logs, rules.Log{Pos: rules.LogPos(l.BlockNumber, l.Index), Tx: l.TxHash.Hex(),
			Detail: ev.Describe(l.Topics, l.Data) + " in block " + strconv.FormatUint(l.BlockNumber, 10) + " (log " + strconv.FormatUint(uint64(l.Index), 10) + ", tx " + l.TxHash.Hex() + ")"})
	}
	return logs, skipped, nil
}

var errBadKey = errors.New("the event filter is malformed")

// tooMany reports whether the chain refused a log query for its size (the
// wording differs between clients and providers).
func tooMany(err error) bool {
	msg := strings.ToLower(err.Error())
	for _, s := range []string{"more than", "too many", "limit", "exceed", "range", "too large"} {
		if strings.Contains(msg, s) {
			return true
		}
	}
	return false
}

// query is the filter of key, and its event.
func (w *logWatcher) query(key string) (ethereum.FilterQuery, *exec.Event, error) {
	contract, sig, topics, ok := rules.ParseEventKey(key)
	if !ok {
		return ethereum.FilterQuery{}, nil, errBadKey
	}
	w.mu.Lock()
	ev := w.parsed[key]
	w.mu.Unlock()
	if ev == nil {
		var err error
		if ev, err = exec.ParseEvent(sig); err != nil {
			return ethereum.FilterQuery{}, nil, errBadKey
		}
		w.mu.Lock()
		if len(w.parsed) > 10_000 {
			clear(w.parsed)
		}
		w.parsed[key] = ev
		w.mu.Unlock()
	}
	q := ethereum.FilterQuery{Addresses: []common.Address{common.HexToAddress(contract)}, Topics: [][]common.Hash{{ev.Topic}}}
	last := 0
	for i, t := range topics {
		if t != "" {
			last = i + 1
		}
	}
	for _, t := range topics[:last] {
		if t == "" {
			q.Topics = append(q.Topics, nil)
		} else {
			q.Topics = append(q.Topics, []common.Hash{common.HexToHash(t)})
		}
	}
	return q, ev, nil
}
