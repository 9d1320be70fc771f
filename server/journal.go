package main

import (
	"bufio"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"sort"
	"sync"

	"github.com/spells-dev/spells/hub"
	"github.com/spells-dev/spells/internal/atomicfile"
)

// signalJournal makes the values POST /v1/signals accepts durable before
// it answers 202: each request's values are appended to
// <data>/signals.journal and synced. At the next start the newest value of
// each signal in it is published again, so a value the node accepted is
// evaluated even if the node stopped before its vaults saw it (a threshold
// fires on a crossing: a value evaluated twice changes nothing the second
// time). Past journalMax bytes it is rewritten with the newest value of
// each signal only.
type signalJournal struct {
	mu     sync.Mutex
	path   string
	f      *os.File
	size   int64
	latest map[string]hub.Signal
}

const journalMax = 4 << 20

func journalPath(dataDir string) string { return dataDir + "/signals.journal" }

// openJournal opens (or creates) the journal and returns it with the
// newest value of each signal it holds, oldest first. A torn last line (a
// crash during a write that was never answered) is ignored.
func openJournal(path string) (*signalJournal, []hub.Signal, error) {
	j := &signalJournal{path: path, latest: map[string]hub.Signal{}}
	f, err := os.Open(path)
	switch {
	case err == nil:
		sc := bufio.NewScanner(f)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			var s hub.Signal
			if json.Unmarshal(sc.Bytes(), &s) != nil || s.Validate() != nil {
				continue
			}
			if old, ok := j.latest[s.Name]; !ok || s.At >= old.At {
				j.latest[s.Name] = s
			}
		}
		f.Close()
	case !errors.Is(err, fs.ErrNotExist):
		return nil, nil, fmt.Errorf("signal journal: %w", err)
	}
	if err := j.rewrite(); err != nil {
		return nil, nil, err
	}
	replay := make([]hub.Signal, 0, len(j.latest))
	for _, s := range j.latest {
		replay = append(replay, s)
	}
	sort.Slice(replay, func(a, b int) bool { return replay[a].At < replay[b].At })
	return j, replay, nil
}

// rewrite replaces the journal with the newest value of each signal, and
// opens it for appending.
func (j *signalJournal) rewrite() error {
	var buf []byte
	for _, s := range j.latest {
		b, _ := json.Marshal(s)
		buf = append(append(buf, b...), '\n')
	}
	if j.f != nil {
		j.f.Close()
		j.f = nil
	}
	if err := atomicfile.Write(j.path, buf); err != nil {
		return fmt.Errorf("signal journal: %w", err)
	}
	f, err := os.OpenFile(j.path, os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return fmt.Errorf("signal journal: %w", err)
	}
	j.f, j.size = f, int64(len(buf))
	return nil
}

// append makes sigs durable; an error (a full disk) means none may be
// answered as accepted.
func (j *signalJournal) append(sigs []hub.Signal) error {
	var buf []byte
	for _, s := range sigs {
		b, err := json.Marshal(s)
		if err != nil {
			return err
		}
		buf = append(append(buf, b...), '\n')
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f == nil {
		return errors.New("signal journal is closed")
	}
	if _, err := j.f.Write(buf); err != nil {
		return fmt.Errorf("signal journal: %w", err)
	}
	if err := j.f.Sync(); err != nil {
		return fmt.Errorf("signal journal: %w", err)
	}
	j.size += int64(len(buf))
	for _, s := range sigs {
		if old, ok := j.latest[s.Name]; !ok || s.At >= old.At {
			j.latest[s.Name] = s
		}
	}
	if j.size > journalMax {
		return j.rewrite()
	}
	return nil
}

func (j *signalJournal) close() {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.f != nil {
		j.f.Close()
		j.f = nil
	}
}
