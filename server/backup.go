package main

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/spells-dev/spells/backup"
	"github.com/spells-dev/spells/cluster"
	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/vault/actor"
	"github.com/spells-dev/spells/vault/keys"
)

// The backup: every vault's committed changes shipped to an S3-compatible
// bucket (-backup), and POST /v1/admin/restore, which writes a vault as
// it was at a version or a time into <data>/restored/ (a fork), or makes
// the vault's triggers what they were then (in place).

type backupParts struct {
	bucket   *backup.Bucket
	shipper  *backup.Shipper
	restorer *backup.Restorer
	metrics  *backup.Metrics
}

func (n *daemon) startBackup(ctx context.Context, kek *keys.KEK, reg prometheus.Registerer) (*backupParts, error) {
	octx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	b, err := backup.OpenBucket(octx, n.opts.Backup)
	if err != nil {
		return nil, err
	}
	m := backup.NewMetrics(reg)
	node := n.opts.Node
	if node == "" {
		node = "node"
	}
	log := n.log.With().Str("part", "backup").Logger()
	sh, err := backup.Start(octx, backup.Config{Bucket: b, KEK: kek, Node: strings.ReplaceAll(node, "-", "_"), Every: n.opts.BackupEvery, CheckEvery: n.opts.BackupCheckEvery, Logger: log, Metrics: m})
	if err != nil {
		return nil, fmt.Errorf("-backup %s: %w", backup.Redact(n.opts.Backup), err)
	}
	r, err := backup.NewRestorer(octx, b, kek)
	if err != nil {
		sh.Close(ctx)
		return nil, err
	}
	log.Info().Str("to", backup.Redact(n.opts.Backup)).Str("every", n.opts.BackupEvery.String()).Msg("backup: every vault's changes are shipped, sealed")
	return &backupParts{bucket: b, shipper: sh, restorer: r, metrics: m}, nil
}

// shippedMark is the file a clean stop leaves when the backup holds every
// change: a start that does not find it (after a crash, a stop while the
// store was down, or the first start with -backup) has every vault ship
// its whole file again, since a change committed but not shipped would
// otherwise reach the backup only with the vault's next change.
const shippedMark = "backup.shipped"

// wasShipped reports whether the last stop left the backup whole, and
// removes the mark: from now on a crash finds it missing.
func (b *backupParts) wasShipped(dataDir string) bool {
	p := filepath.Join(dataDir, shippedMark)
	_, err := os.Stat(p)
	os.Remove(p)
	return err == nil
}

// markShipped records a clean stop with nothing left to ship.
func (b *backupParts) markShipped(dataDir string, log zerolog.Logger) {
	if err := os.WriteFile(filepath.Join(dataDir, shippedMark), []byte("every committed change was shipped when the node stopped\n"), 0o600); err != nil {
		log.Warn().Err(err).Msg("backup: could not record that every change was shipped; the next start ships every vault again")
	}
}

// restoreCopy is vault.Config.Restore: it writes vault's copy that a
// names from the backup into path.
func (b *backupParts) restoreCopy(ctx context.Context, vault string, a protocol.RestoreArgs, path string) (actor.RestorePoint, error) {
	plan, err := b.restorer.Restore(ctx, vault, backup.Target{Version: a.Version, At: a.At}, path)
	if err != nil {
		if notInBackup(err) {
			return actor.RestorePoint{}, protocol.Errorf(protocol.CodeNotInBackup, "%v", err)
		}
		return actor.RestorePoint{}, err
	}
	b.metrics.Restored.Inc()
	return actor.RestorePoint{BaseVersion: plan.BaseVersion, Version: plan.Version, At: plan.At}, nil
}

// notInBackup reports whether err says the backup holds no copy at the
// point asked.
func notInBackup(err error) bool {
	var nv *backup.NoVersionError
	return errors.Is(err, backup.ErrNoBackup) || errors.As(err, &nv)
}

// restoreHandler is POST /v1/admin/restore?vault=0x…&version=N (or
// at=<unix ms>; neither: the newest)[&mode=fork|in_place][&dry=1]:
// authenticated by -admin-token. A fork (the default) writes the vault as
// the backup holds it at that point into <data>/restored/<vault>-<version>.db,
// and the vault being served is not touched; in place, the vault's
// triggers become what they were then, as one new version its dashboards
// follow. It answers what it did (with dry=1, only what it would do).
func (n *daemon) restoreHandler(w http.ResponseWriter, r *http.Request) {
	switch {
	case !n.adminToken(w, r):
		return
	case n.backup == nil:
		n.httpError(w, r, http.StatusConflict, "no_backup", "this node runs without a backup: start it with --backup")
		return
	}
	q := r.URL.Query()
	id := strings.ToLower(q.Get("vault"))
	if !common.IsHexAddress(id) || !strings.HasPrefix(id, "0x") {
		n.httpError(w, r, http.StatusBadRequest, "bad_request", "vault must be the vault's 0x address")
		return
	}
	var t backup.Target
	var err error
	if v := q.Get("version"); v != "" {
		if t.Version, err = strconv.ParseUint(v, 10, 64); err != nil || t.Version == 0 {
			n.httpError(w, r, http.StatusBadRequest, "bad_request", "version must be a whole number from 1")
			return
		}
	}
	if v := q.Get("at"); v != "" {
		if t.At, err = strconv.ParseInt(v, 10, 64); err != nil || t.At <= 0 {
			n.httpError(w, r, http.StatusBadRequest, "bad_request", "at must be a time in unix milliseconds")
			return
		}
	}
	if t.Version != 0 && t.At != 0 {
		n.httpError(w, r, http.StatusBadRequest, "bad_request", "give a version or a time, not both")
		return
	}
	dry := q.Get("dry") == "1"
	mode := q.Get("mode")
	if mode == "" {
		mode = "fork"
	}
	if mode != "fork" && mode != "in_place" {
		n.httpError(w, r, http.StatusBadRequest, "bad_request", "mode is fork (a copy in restored/, the default) or in_place")
		return
	}
	dir := filepath.Join(n.opts.DataDir, "restored")
	tmp := filepath.Join(dir, fmt.Sprintf(".%s-%d.tmp", id, time.Now().UnixNano()))
	plan, err := n.backup.restorer.Restore(r.Context(), id, t, tmp)
	if err != nil {
		status, code := http.StatusInternalServerError, "restore_failed"
		switch {
		case notInBackup(err):
			status, code = http.StatusNotFound, "not_in_backup"
		case errors.Is(err, backup.ErrDiskFull):
			status, code = http.StatusInsufficientStorage, "storage_full"
		}
		n.log.Warn().Err(err).Str("vault", id).Msg("restore refused")
		n.httpError(w, r, status, code, err.Error())
		return
	}
	if mode == "in_place" {
		defer os.Remove(tmp)
		pt := actor.RestorePoint{BaseVersion: plan.BaseVersion, Version: plan.Version, At: plan.At}
		f, err := n.mgr.Restore(r.Context(), common.HexToAddress(id), tmp, pt, dry)
		if err != nil {
			status, code := http.StatusInternalServerError, "restore_failed"
			if pe := protocol.AsError(err); pe != nil {
				status, code = http.StatusConflict, string(pe.Code)
			}
			n.log.Warn().Err(err).Str("vault", id).Msg("restore in place refused")
			n.httpError(w, r, status, code, err.Error())
			return
		}
		if !dry {
			n.backup.metrics.Restored.Inc()
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(f)
		return
	}
	out := struct {
		backup.Plan
		File  string `json:"file,omitempty"`
		Bytes int64  `json:"bytes"`
		Dry   bool   `json:"dry,omitempty"`
	}{Plan: plan, Dry: dry}
	if fi, err := os.Stat(tmp); err == nil {
		out.Bytes = fi.Size()
	}
	if dry {
		os.Remove(tmp)
	} else {
		out.File = filepath.Join(dir, fmt.Sprintf("%s-%d.db", id, plan.Version))
		if err := os.Rename(tmp, out.File); err != nil {
			os.Remove(tmp)
			n.httpError(w, r, http.StatusInternalServerError, "restore_failed", err.Error())
			return
		}
		n.backup.metrics.Restored.Inc()
		n.log.Info().Str("vault", id).Uint64("version", plan.Version).Str("file", out.File).Msg("vault restored from the backup")
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(out)
}

// restoreFromBackup writes every vault the backup holds, at its newest,
// into a data directory that holds none (-backup-restore: a node started
// on an empty disk after its disk died), before the vaults are scanned. A
// restore cut short goes on at the next start (data/restoring marks it).
func (n *daemon) restoreFromBackup(ctx context.Context) error {
	if n.backup == nil {
		return fmt.Errorf("-backup-restore needs -backup")
	}
	marker := filepath.Join(n.opts.DataDir, "restoring")
	_, err := os.Stat(marker)
	resuming := err == nil
	existing, _ := filepath.Glob(filepath.Join(n.opts.DataDir, "vaults", "*", "0x*.db"))
	if len(existing) > 0 && !resuming {
		n.log.Info().Int("vaults", len(existing)).Msg("-backup-restore: the data directory holds vaults; nothing restored")
		return nil
	}
	if err := os.MkdirAll(n.opts.DataDir, 0o700); err != nil {
		return err
	}
	if err := os.WriteFile(marker, []byte("vaults are being restored from the backup\n"), 0o600); err != nil {
		return err
	}
	start := time.Now()
	plans, err := n.backup.restorer.RestoreAll(ctx, func(id string) string { return actor.Path(n.opts.DataDir, id) }, func(done, total int) {
		if done%100 == 0 || done == total {
			n.log.Info().Int("done", done).Int("of", total).Msg("restoring vaults from the backup")
		}
	})
	if err != nil {
		return fmt.Errorf("-backup-restore: %w (restored %d vaults; start again to go on)", err, len(plans))
	}
	if err := os.Remove(marker); err != nil {
		return err
	}
	n.backup.metrics.Restored.Add(float64(len(plans)))
	n.log.Info().Int("vaults", len(plans)).Dur("took", time.Since(start)).Msg("vaults restored from the backup")
	return nil
}

// restoreNodeHandler is POST /v1/admin/restore-node?node=ID: in a cluster
// with -backup, authenticated by -admin-token, this node takes every vault
// whose home is node ID (gone for good, its disk lost) from the backup, at
// its newest: for each, the copy is written beside its place, the
// directory's home moves from ID at epoch e to this node at e+1 (a move
// that fails leaves the vault as it was), and the copy is installed and
// opened. A node ID that comes back finds its copies superseded by the
// higher epoch and keeps them as tombstones, never running them. It
// answers how many vaults it restored and which failed.
func (n *daemon) restoreNodeHandler(w http.ResponseWriter, r *http.Request) {
	switch {
	case !n.adminAllowed(w, r):
		return
	case n.backup == nil:
		n.httpError(w, r, http.StatusConflict, "no_backup", "this node runs without a backup: start it with --backup")
		return
	}
	gone := r.URL.Query().Get("node")
	if gone == "" || gone == n.opts.Node {
		n.httpError(w, r, http.StatusBadRequest, "bad_request", "name another node: ?node=ID")
		return
	}
	if _, live := n.cluster.dir.Member(gone); live {
		n.httpError(w, r, http.StatusConflict, "node_alive", "node "+gone+" is a live member of the cluster: drain it instead (POST /v1/admin/drain on it)")
		return
	}
	homes, err := n.cluster.dir.HomesOf(r.Context(), gone)
	if err != nil {
		n.httpError(w, r, http.StatusServiceUnavailable, "node_unreachable", err.Error())
		return
	}
	n.log.Warn().Str("node", gone).Int("vaults", len(homes)).Msg("restoring the vaults of a node gone for good from the backup")
	began := time.Now()
	res := struct {
		Node     string            `json:"node"`
		Restored int               `json:"restored"`
		Failed   map[string]string `json:"failed"`
	}{Node: gone, Failed: map[string]string{}}
	for addr, home := range homes {
		if err := n.adoptVault(r.Context(), addr, home); err != nil {
			res.Failed[strings.ToLower(addr.Hex())] = err.Error()
			n.log.Error().Err(err).Str("vault", addr.Hex()).Str("node", gone).Msg("a vault of a node gone for good was not restored")
			continue
		}
		res.Restored++
	}
	n.log.Info().Str("node", gone).Int("restored", res.Restored).Int("failed", len(res.Failed)).Dur("took", time.Since(began)).
		Msg("vaults of a node gone for good restored from the backup")
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(res)
}

// adoptVault restores the vault at addr, whose home is a node gone for
// good, from the backup onto this node at the next epoch.
func (n *daemon) adoptVault(ctx context.Context, addr common.Address, home cluster.Home) error {
	id := strings.ToLower(addr.Hex())
	tmp := filepath.Join(n.opts.DataDir, "restored", fmt.Sprintf(".%s-%d.adopt", id, time.Now().UnixNano()))
	defer os.Remove(tmp)
	plan, err := n.backup.restorer.Restore(ctx, id, backup.Target{}, tmp)
	if err != nil {
		return err
	}
	data, err := os.ReadFile(tmp)
	if err != nil {
		return err
	}
	to := cluster.Home{Node: n.opts.Node, Epoch: home.Epoch + 1}
	if err := n.mgr.Receive(addr, to.Epoch, data, sha256.Sum256(data)); err != nil {
		return err
	}
	if err := n.cluster.dir.Move(ctx, addr, home, to, time.Now().Add(time.Minute)); err != nil {
		n.mgr.Discard(addr)
		return err
	}
	if err := n.mgr.Install(ctx, addr, to.Epoch); err != nil {
		return fmt.Errorf("the directory names this node, but the copy did not install (restore it again): %w", err)
	}
	n.backup.metrics.Restored.Inc()
	n.log.Info().Str("vault", id).Uint64("version", plan.Version).Uint64("epoch", to.Epoch).Msg("vault of a node gone for good restored here")
	return nil
}
