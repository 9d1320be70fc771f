package main

import (
	"encoding/json"
	"net/http"
	"path/filepath"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/spells-dev/spells/hub"
)

// The node keeps the recent points of every signal in a file of its own,
// data/signals.json (market data, never in a vault), so a dashboard's
// charts survive a restart: loaded at start, saved every few seconds while
// values arrive, and once more at shutdown.

// historyEvery is how often the history is saved while it changes.
const historyEvery = 5 * time.Second

// historySaver saves a History to its file while it changes.
type historySaver struct {
	h    *hub.History
	path string
	log  zerolog.Logger
	stop chan struct{}
	done sync.WaitGroup
}

func historyPath(dataDir string) string { return filepath.Join(dataDir, "signals.json") }

// loadHistory fills h from the data directory's file; a file that cannot
// be read is logged and left alone (the charts start empty).
func loadHistory(h *hub.History, dataDir string, log zerolog.Logger) {
	if err := h.ReadFile(historyPath(dataDir)); err != nil {
		log.Warn().Err(err).Msg("signal history not loaded; the charts start empty")
	}
}

func startHistorySaver(h *hub.History, dataDir string, log zerolog.Logger) *historySaver {
	s := &historySaver{h: h, path: historyPath(dataDir), log: log, stop: make(chan struct{})}
	s.done.Add(1)
	go s.loop()
	return s
}

func (s *historySaver) loop() {
	defer s.done.Done()
	saved := s.h.Gen()
	t := time.NewTicker(historyEvery)
	defer t.Stop()
	for {
		select {
		case <-t.C:
		case <-s.stop:
			if s.h.Gen() != saved {
				s.save()
			}
			return
		}
		if gen := s.h.Gen(); gen != saved {
			s.save()
			saved = gen
		}
	}
}

func (s *historySaver) save() {
	if err := s.h.WriteFile(s.path); err != nil {
		s.log.Warn().Err(err).Msg("signal history not saved")
	}
}

// close saves what changed since the last save and stops.
func (s *historySaver) close() {
	close(s.stop)
	s.done.Wait()
}

// historyHandler is GET /v1/history: the recent points of every signal
// (hub.History.Recent: at most hub.MaxSignals signals, 1 MiB), for a page
// that has not signed in yet (signals are public market data). One source
// address gets one answer a second (a burst of 5); more get 429.
func historyHandler(h *hub.History, n *daemon) http.Handler {
	limits := newSourceLimiter(1, 5, time.Minute)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !limits.allow(hub.SourceKey(r.RemoteAddr).String(), 1) {
			w.Header().Set("Retry-After", "1")
			n.httpError(w, r, http.StatusTooManyRequests, "rate_limited", "one history a second per address: retry in a second")
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "max-age=1")
		_ = json.NewEncoder(w).Encode(map[string]any{"series": h.Recent()})
	})
}
