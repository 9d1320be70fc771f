package main

import (
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"

	"github.com/spells-dev/spells/hub"
)

// maxSignalBody bounds a POST /v1/signals body.
const maxSignalBody = 64 << 10

// signalsRequest is either one signal or {"signals": [...]}.
type signalsRequest struct {
	hub.Signal
	Signals []hub.Signal `json:"signals"`
}

// signalsHandler is POST /v1/signals: authenticated by a bearer token,
// all-or-nothing (one invalid signal refuses the whole request).
func (n *node) signalsHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.opts.SignalToken == "" {
			n.httpError(w, r, http.StatusServiceUnavailable, "ingest_disabled", "signal ingest is disabled: start the node with --signal-token")
			return
		}
		token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		if !ok || subtle.ConstantTimeCompare([]byte(token), []byte(n.opts.SignalToken)) != 1 {
			n.httpError(w, r, http.StatusUnauthorized, "unauthorized", "missing or wrong bearer token")
			return
		}
		sigs, err := decodeSignals(http.MaxBytesReader(w, r.Body, maxSignalBody), n.hub.Now())
		if err != nil {
			n.httpError(w, r, http.StatusBadRequest, "bad_request", err.Error())
			return
		}
		for _, s := range sigs {
			if err := n.bus.Publish(r.Context(), s); err != nil {
				n.httpError(w, r, http.StatusServiceUnavailable, "unavailable", "signal bus: "+err.Error())
				return
			}
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusAccepted)
		fmt.Fprintf(w, `{"accepted":%d}`+"\n", len(sigs))
	})
}

func decodeSignals(body io.Reader, nowMs int64) ([]hub.Signal, error) {
	var req signalsRequest
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	if err := dec.Decode(&req); err != nil {
		return nil, fmt.Errorf("body must be a JSON signal or {\"signals\": [...]}: %v", err)
	}
	sigs := req.Signals
	if req.Name != "" {
		if len(sigs) > 0 {
			return nil, fmt.Errorf("send one signal or a \"signals\" list, not both")
		}
		sigs = []hub.Signal{req.Signal}
	}
	if len(sigs) == 0 {
		return nil, fmt.Errorf("no signals in the request")
	}
	for i := range sigs {
		if sigs[i].At == 0 {
			sigs[i].At = nowMs
		}
		if err := sigs[i].Validate(); err != nil {
			return nil, fmt.Errorf("signal %d (%q): %v", i, sigs[i].Name, err)
		}
	}
	return sigs, nil
}

func (n *node) httpError(w http.ResponseWriter, r *http.Request, status int, code, msg string) {
	n.log.Info().Str("path", r.URL.Path).Int("status", status).Str("code", code).Str("remote", r.RemoteAddr).Msg(msg)
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]string{"code": code, "message": msg}})
}
