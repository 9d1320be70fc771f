package backup

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"syscall"
	"time"

	"zombiezen.com/go/sqlite"
	"zombiezen.com/go/sqlite/sqlitex"

	"github.com/spells-dev/spells/vault/keys"
	"github.com/spells-dev/spells/vault/store"
)

// Target is the point a restore goes back to: a vault version, or the
// state at a time (unix ms); both zero: the newest the backup holds.
type Target struct {
	Version uint64
	At      int64
}

// Plan is what a restore found: the base it starts from and the changes
// it applies, and the version and time it ends at.
type Plan struct {
	Vault       string `json:"vault"`
	BaseVersion uint64 `json:"baseVersion"`
	BaseAt      int64  `json:"baseAt"`
	Changes     int    `json:"changes"`
	Version     uint64 `json:"version"`
	At          int64  `json:"at"`
}

// ErrNoBackup is a vault the backup holds nothing of (before the target).
var ErrNoBackup = errors.New("the backup holds no copy of this vault at or before that point")

// NoVersionError is a version the backup does not hold on its own (it was
// shipped with later ones in one flush, or never existed).
type NoVersionError struct{ Want, Nearest uint64 }

func (e *NoVersionError) Error() string {
	return fmt.Sprintf("version %d is not in the backup: the nearest at or before it is %d (versions committed within one flush are shipped together)", e.Want, e.Nearest)
}

// Restorer reads vaults back from a backup. It keeps the log objects it
// read last (up to cacheBytes), since every vault of a flush is in the
// same object: restoring many vaults reads each object once.
type Restorer struct {
	b    *Bucket
	seal *sealer

	mu     sync.Mutex
	cache  map[string]cachedLog
	order  []string
	cached int
}

type cachedLog struct {
	h    logHeader
	body []byte
}

const cacheBytes = 64 << 20

// readLog returns log object name, decoded, from the cache or the bucket
// (ErrForeign: another KEK's).
func (r *Restorer) readLog(ctx context.Context, name string) (logHeader, []byte, error) {
	r.mu.Lock()
	c, ok := r.cache[name]
	r.mu.Unlock()
	if ok {
		return c.h, c.body, nil
	}
	sealed, err := r.b.get(ctx, name)
	if err != nil {
		return logHeader{}, nil, fmt.Errorf("read %s: %w", name, err)
	}
	plain, err := r.seal.open(name, sealed)
	if err != nil {
		return logHeader{}, nil, err
	}
	h, body, err := decodeLog(plain)
	if err != nil {
		return logHeader{}, nil, fmt.Errorf("%s: %w", name, err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cache == nil {
		r.cache = map[string]cachedLog{}
	}
	if _, ok := r.cache[name]; !ok {
		r.cache[name] = cachedLog{h: h, body: body}
		r.order = append(r.order, name)
		r.cached += len(body)
		for r.cached > cacheBytes && len(r.order) > 1 {
			old := r.order[0]
			r.order = r.order[1:]
			r.cached -= len(r.cache[old].body)
			delete(r.cache, old)
		}
	}
	return h, body, nil
}

// NewRestorer opens the backup keys this KEK unwraps.
func NewRestorer(ctx context.Context, b *Bucket, kek *keys.KEK) (*Restorer, error) {
	s, err := loadSealer(ctx, b, kek, false)
	if err != nil {
		return nil, err
	}
	return &Restorer{b: b, seal: s}, nil
}

// Restore writes vault as it was at target into the file at path (which
// must not exist), and returns the plan it followed. Keys stay sealed:
// the file holds them as the vault did.
func (r *Restorer) Restore(ctx context.Context, vault string, target Target, path string) (Plan, error) {
	plan := Plan{Vault: vault}
	names, err := r.b.list(ctx, "base/"+vault+"/", "", 0)
	if err != nil {
		return plan, fmt.Errorf("list the vault's bases: %w", err)
	}
	var bases []baseRef
	for _, n := range names {
		if b, ok := parseBase(n); ok {
			bases = append(bases, b)
		}
	}
	sort.Slice(bases, func(i, j int) bool { return bases[i].ms < bases[j].ms })
	var base *baseRef
	for i := range bases {
		b := bases[i]
		if (target.Version != 0 && b.version > target.Version) || (target.At != 0 && b.ms > target.At) {
			continue
		}
		base = &bases[i]
	}
	if base == nil {
		return plan, ErrNoBackup
	}
	sealed, err := r.b.get(ctx, base.name)
	if err != nil {
		return plan, fmt.Errorf("read base %s: %w", base.name, err)
	}
	file, err := r.seal.open(base.name, sealed)
	if err != nil {
		return plan, fmt.Errorf("base %s: %w", base.name, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return plan, err
	}
	if err := os.WriteFile(path, file, 0o600); err != nil {
		os.Remove(path)
		return plan, diskFull(filepath.Dir(path), err)
	}
	conn, err := sqlite.OpenConn(path, sqlite.OpenReadWrite|sqlite.OpenNoMutex)
	if err != nil {
		os.Remove(path)
		return plan, err
	}
	plan.BaseVersion, plan.BaseAt, plan.Version, plan.At = base.version, base.ms, base.version, base.ms
	// The file is not the vault's until it is whole: the changes apply
	// without a sync each, and the file is synced once at the end.
	err = sqlitex.ExecuteTransient(conn, "PRAGMA journal_mode=MEMORY;", nil)
	if err == nil {
		err = sqlitex.ExecuteTransient(conn, "PRAGMA synchronous=OFF;", nil)
	}
	if err == nil {
		err = r.replay(ctx, conn, vault, *base, target, &plan)
	}
	if cerr := conn.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = syncFile(path)
	}
	if err == nil && target.Version != 0 && plan.Version != target.Version {
		err = &NoVersionError{Want: target.Version, Nearest: plan.Version}
	}
	if err != nil {
		os.Remove(path)
		os.Remove(path + "-wal")
		os.Remove(path + "-shm")
		return plan, diskFull(filepath.Dir(path), err)
	}
	return plan, nil
}

// ErrDiskFull is a restore that ran out of disk.
var ErrDiskFull = errors.New("the disk is full")

// diskFull tells a write that failed for want of space as such: SQLite
// reports some of those as an I/O error, so the disk's free space decides.
func diskFull(dir string, err error) error {
	var st syscall.Statfs_t
	if store.IsFull(err) || (syscall.Statfs(dir, &st) == nil && st.Bavail*uint64(st.Bsize) < 1<<20) {
		return fmt.Errorf("%w (%s, %d KiB free; nothing half-written is kept): %v", ErrDiskFull, dir, st.Bavail*uint64(st.Bsize)>>10, err)
	}
	return err
}

func syncFile(path string) error {
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Sync()
}

// replay applies the base's chain from the log objects after it, in
// order, up to target.
func (r *Restorer) replay(ctx context.Context, conn *sqlite.Conn, vault string, base baseRef, target Target, plan *Plan) error {
	next := uint64(1)
	after := logName(base.ms-int64(time.Minute/time.Millisecond), "", 0)
	for {
		names, err := r.b.list(ctx, "log/", after, 1000)
		if err != nil {
			return fmt.Errorf("list the log: %w", err)
		}
		if len(names) == 0 {
			return nil
		}
		for _, n := range names {
			after = n
			if ms, ok := logTime(n); ok && target.At != 0 && ms > target.At+int64(time.Minute/time.Millisecond) {
				return nil
			}
			h, body, err := r.readLog(ctx, n)
			if errors.Is(err, ErrForeign) {
				continue // another node's, sealed by another KEK
			}
			if err != nil {
				return err
			}
			for _, e := range h.Entries {
				if e.Vault != vault || e.Chain != base.chain || e.N != next {
					continue
				}
				if (target.Version != 0 && e.Version > target.Version) || (target.At != 0 && e.At > target.At) {
					return nil
				}
				if err := store.ApplyChangeset(conn, body[e.Off:e.Off+e.Len]); err != nil {
					return fmt.Errorf("change %d of vault %s: %w", e.N, vault, err)
				}
				next++
				plan.Changes++
				plan.Version, plan.At = e.Version, e.At
			}
		}
	}
}
