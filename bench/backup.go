package main

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"time"
)

// backup: what shipping every vault's changes costs and how fast vaults
// come back. It runs the commands scenario against a node started with
// -backup, waits until the backup has shipped everything, and reports the
// bytes and requests the shipping took per acknowledged command (from the
// node's spells_backup_* counters); then it restores each vault through
// POST /v1/admin/restore and reports vaults restored a second, beside the
// floor of one restore on this machine: the file's size over the
// loopback's bandwidth (download) plus over the disk's (writing it),
// both measured here in the same run.
type backupParams struct {
	Commands commandsParams
	Admin    string // the node's -admin-token
}

func backupBench(ctx context.Context, n *node, p backupParams) (*Report, error) {
	r := newReport("backup", map[string]any{"clients": p.Commands.Clients, "duration": p.Commands.Duration.String()})
	before, err := n.metrics(ctx)
	if err != nil {
		return nil, err
	}
	if _, ok := before["spells_backup_backlog_bytes"]; !ok {
		return nil, fmt.Errorf("the node ships no backup: start it with -backup")
	}
	saved := filepath.Join(os.TempDir(), fmt.Sprintf("spells-backup-bench-%d.json", time.Now().UnixNano()))
	defer os.Remove(saved)
	p.Commands.Save = saved
	cr, err := commands(ctx, n, p.Commands)
	if err != nil {
		return nil, err
	}
	acked := cr.Results["acked_commands"]
	// Everything shipped: the backlog empty, then one flush more.
	deadline := time.Now().Add(time.Minute)
	var after map[string]float64
	for {
		if after, err = n.metrics(ctx); err != nil {
			return nil, err
		}
		if after["spells_backup_backlog_bytes"] == 0 {
			break
		}
		if time.Now().After(deadline) {
			return nil, fmt.Errorf("the backup still waits to ship %.0f bytes after a minute", after["spells_backup_backlog_bytes"])
		}
		time.Sleep(100 * time.Millisecond)
	}
	bytes := after["spells_backup_bytes_total"] - before["spells_backup_bytes_total"]
	reqs := after["spells_backup_uploads_total"] - before["spells_backup_uploads_total"]
	r.set("acked_commands", acked)
	r.set("acked_per_s", cr.Results["acked_per_s"])
	r.set("backup_bytes_per_acked", bytes/acked)
	r.set("backup_requests_per_acked", reqs/acked)
	r.set("backup_requests", reqs)

	var vs savedVaults
	b, err := os.ReadFile(saved)
	if err != nil {
		return nil, err
	}
	if err := json.Unmarshal(b, &vs); err != nil {
		return nil, err
	}
	// A vault gives its last changes to the backup within -backup-every of
	// them: wait until the backup holds every vault at its acknowledged
	// version.
	wait := time.Now().Add(30 * time.Second)
	for _, v := range vs.Vaults {
		for {
			got, err := restoreVersion(ctx, n, p.Admin, v.Address, true)
			if err != nil {
				return nil, err
			}
			if got == v.Version {
				break
			}
			if time.Now().After(wait) {
				return nil, fmt.Errorf("vault %s: the backup holds version %d after 30 s, its acknowledged version is %d", v.Address, got, v.Version)
			}
			time.Sleep(100 * time.Millisecond)
		}
	}
	start := time.Now()
	var size float64
	for _, v := range vs.Vaults {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, n.base+"/v1/admin/restore?vault="+v.Address, nil)
		req.Header.Set("Authorization", "Bearer "+p.Admin)
		resp, err := n.http.Do(req)
		if err != nil {
			return nil, err
		}
		var out struct {
			Version uint64 `json:"version"`
			Bytes   int64  `json:"bytes"`
		}
		err = json.NewDecoder(resp.Body).Decode(&out)
		resp.Body.Close()
		if err != nil || resp.StatusCode != http.StatusOK {
			return nil, fmt.Errorf("restore %s: HTTP %d (%v)", v.Address, resp.StatusCode, err)
		}
		if out.Version != v.Version {
			r.note("vault %s restored at version %d, its acknowledged version is %d", v.Address, out.Version, v.Version)
		}
		size += float64(out.Bytes)
	}
	took := time.Since(start)
	perVault := size / float64(len(vs.Vaults))
	loop, err := loopbackBandwidth()
	if err != nil {
		return nil, err
	}
	disk, err := diskBandwidth()
	if err != nil {
		return nil, err
	}
	floor := perVault/loop + perVault/disk // seconds per vault
	r.set("restore_vaults", float64(len(vs.Vaults)))
	r.set("restore_vaults_per_s", float64(len(vs.Vaults))/took.Seconds())
	r.set("restore_file_kib", perVault/1024)
	r.set("restore_floor_vaults_per_s", 1/floor)
	r.set("restore_over_floor", took.Seconds()/float64(len(vs.Vaults))/floor)
	r.note("the floor of one restore is its file's size over the loopback's bandwidth (%.0f MB/s) plus over the disk's with a sync (%.0f MB/s), measured in this run", loop/1e6, disk/1e6)
	return r, nil
}

// restoreVersion asks the node what version of vault a restore (dry run)
// would give.
func restoreVersion(ctx context.Context, n *node, admin, vault string, dry bool) (uint64, error) {
	q := ""
	if dry {
		q = "&dry=1"
	}
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, n.base+"/v1/admin/restore?vault="+vault+q, nil)
	req.Header.Set("Authorization", "Bearer "+admin)
	resp, err := n.http.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	var out struct {
		Version uint64 `json:"version"`
	}
	if resp.StatusCode == http.StatusNotFound {
		return 0, nil
	}
	if err := json.NewDecoder(resp.Body).Decode(&out); err != nil || resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("restore %s: HTTP %d (%v)", vault, resp.StatusCode, err)
	}
	return out.Version, nil
}

// loopbackBandwidth is bytes a second through a loopback TCP connection.
func loopbackBandwidth() (float64, error) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return 0, err
	}
	defer l.Close()
	const total = 256 << 20
	done := make(chan error, 1)
	go func() {
		c, err := l.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		_, err = io.Copy(io.Discard, c)
		done <- err
	}()
	c, err := net.Dial("tcp", l.Addr().String())
	if err != nil {
		return 0, err
	}
	buf := make([]byte, 1<<20)
	start := time.Now()
	for sent := 0; sent < total; sent += len(buf) {
		if _, err := c.Write(buf); err != nil {
			c.Close()
			return 0, err
		}
	}
	c.Close()
	if err := <-done; err != nil {
		return 0, err
	}
	return total / time.Since(start).Seconds(), nil
}

// diskBandwidth is bytes a second written to a file and synced, in the
// temporary directory.
func diskBandwidth() (float64, error) {
	f, err := os.CreateTemp("", "spells-disk-*")
	if err != nil {
		return 0, err
	}
	defer os.Remove(f.Name())
	defer f.Close()
	buf := make([]byte, 1<<20)
	_, _ = rand.Read(buf)
	const total = 64 << 20
	start := time.Now()
	for n := 0; n < total; n += len(buf) {
		if _, err := f.Write(buf); err != nil {
			return 0, err
		}
	}
	if err := f.Sync(); err != nil {
		return 0, err
	}
	return total / time.Since(start).Seconds(), nil
}
