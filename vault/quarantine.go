package vault

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"

	"github.com/spells-dev/spells/internal/atomicfile"
	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/vault/actor"
	"github.com/spells-dev/spells/vault/notify"
	"github.com/spells-dev/spells/vault/store"
)

// One vault can never take the node down. A vault file that cannot be read
// as a vault (damaged pages, a foreign or empty file, a directory in its
// place, no vault row) is quarantined: moved with its WAL to
// Dir/quarantine/<id>.<time>.db, logged, counted, reported by /readyz, and
// remembered, so that its owner is told (vault_quarantined) and no fresh,
// empty vault ever replaces it. The node keeps serving every other vault.
// An operator restores one by moving the file back to vaults/ and
// restarting the node. Errors that may pass (a full disk, a descriptor
// limit) are not damage: the vault is unavailable for now and tried again.

func (m *Manager) quarantineDir() string { return filepath.Join(m.cfg.Dir, "quarantine") }

// quarantine moves vault id's file (and its WAL) to the quarantine folder
// and remembers the vault as quarantined. If the move fails, the vault is
// still refused while the node runs, and the next start tries again. No
// instance of the vault may have the file open.
func (m *Manager) quarantine(id string, cause error) {
	src := actor.Path(m.cfg.Dir, id)
	dst := filepath.Join(m.quarantineDir(), fmt.Sprintf("%s.%s.db", id, m.now().UTC().Format("20060102T150405.000Z")))
	moved := dst
	err := os.MkdirAll(m.quarantineDir(), 0o700)
	if err == nil {
		err = os.Rename(src, dst)
	}
	if err == nil {
		for _, suffix := range []string{"-wal", "-journal"} {
			if rerr := os.Rename(src+suffix, dst+suffix); rerr != nil && !errors.Is(rerr, os.ErrNotExist) {
				err = rerr
			}
		}
		_ = atomicfile.Write(dst+".reason", []byte(cause.Error()+"\n"))
		_ = atomicfile.SyncDir(filepath.Dir(src))
		_ = atomicfile.SyncDir(m.quarantineDir())
	}
	if err != nil {
		moved = src
		m.cfg.Logger.Error().Err(err).Str("vault", id).Msg("could not move the damaged vault file aside; it is refused until the node restarts")
	}
	m.forget(id)
	m.setPlace(id, spot{place: quarantined, file: moved})
	m.metrics.Quarantines.Inc()
	m.cfg.Logger.Error().Str("vault", id).Str("file", moved).AnErr("reason", cause).
		Msg("vault quarantined: its file cannot be read; every other vault keeps serving")
	m.tellQuarantined(id, moved)
}

// tellQuarantined alerts the owner of a quarantined vault on its channels,
// if its settings can still be read from the damaged file. The vault's
// outbox is in that file, so this alert is sent once, not kept or retried
// after the node stops.
func (m *Manager) tellQuarantined(id, path string) {
	s, err := store.AlertSettingsOf(path)
	if err != nil || len(s.Channels()) == 0 {
		return
	}
	now := m.now()
	event := "quarantined-" + strconv.FormatInt(now.UnixMilli(), 10)
	for _, ch := range s.Channels() {
		m.notifier.Send(notify.Job{Vault: id, Settings: s, Alert: protocol.Alert{ID: event + ":" + ch, Event: event, Kind: protocol.AlertQuarantined,
			Title: "Your vault was set aside: its file cannot be read", At: now.UnixMilli(), Channel: ch, Status: protocol.AlertPending,
			Detail: "the node keeps the file unchanged in its quarantine folder and runs none of its triggers; ask the node's operator to restore it (from the backup, if the node keeps one)"}})
	}
}

// loadQuarantine learns, at start, which vaults were quarantined before:
// those with a file in the quarantine folder and none in vaults/ (a file
// an operator moved back is read again).
func (m *Manager) loadQuarantine() error {
	ents, err := os.ReadDir(m.quarantineDir())
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read quarantine: %w", err)
	}
	for _, e := range ents {
		mm := quarantineFileRe.FindStringSubmatch(e.Name())
		if mm == nil {
			continue
		}
		if exists, _ := fileExists(actor.Path(m.cfg.Dir, mm[1])); exists {
			continue
		}
		m.setPlace(mm[1], spot{place: quarantined, file: filepath.Join(m.quarantineDir(), e.Name())})
	}
	if n := m.Quarantined(); n > 0 {
		m.cfg.Logger.Warn().Int("vaults", n).Str("folder", m.quarantineDir()).
			Msg("quarantined vaults are refused until their files are restored")
	}
	return nil
}

// quarantineFileRe matches the files quarantine writes: <id>.<time>.db.
var quarantineFileRe = regexp.MustCompile(`^(0x[0-9a-f]{40})\.[0-9T.]+Z\.db$`)

// Quarantined returns how many vaults are quarantined on this node.
func (m *Manager) Quarantined() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.quarantinedN
}
