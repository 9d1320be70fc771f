package backup

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Vaults lists the vaults the backup holds a base of.
func (r *Restorer) Vaults(ctx context.Context) ([]string, error) {
	names, err := r.b.list(ctx, "base/", "", 0)
	if err != nil {
		return nil, fmt.Errorf("list the backup's vaults: %w", err)
	}
	var out []string
	seen := map[string]bool{}
	for _, n := range names {
		parts := strings.Split(n, "/")
		if len(parts) == 3 && !seen[parts[1]] {
			seen[parts[1]] = true
			out = append(out, parts[1])
		}
	}
	return out, nil
}

// RestoreAll writes every vault the backup holds, at its newest, to the
// path pathOf gives it (a temporary file first, renamed into place),
// skipping one whose file is there already, and returns what it restored;
// it stops at the first vault it cannot restore.
func (r *Restorer) RestoreAll(ctx context.Context, pathOf func(vault string) string, progress func(done, total int)) ([]Plan, error) {
	ids, err := r.Vaults(ctx)
	if err != nil {
		return nil, err
	}
	var plans []Plan
	for i, id := range ids {
		p := pathOf(id)
		if _, err := os.Stat(p); err == nil {
			continue // restored before a restart
		}
		tmp := p + ".restoring"
		os.Remove(tmp)
		plan, err := r.Restore(ctx, id, Target{}, tmp)
		if err != nil {
			return plans, fmt.Errorf("restore vault %s: %w", id, err)
		}
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			return plans, err
		}
		if err := os.Rename(tmp, p); err != nil {
			return plans, err
		}
		plans = append(plans, plan)
		if progress != nil {
			progress(i+1, len(ids))
		}
	}
	return plans, nil
}
