package main

import (
	"encoding/json"
	"fmt"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"io"
	"net/http"

	"github.com/spells-dev/spells/hub"
	"github.com/spells-dev/spells/protocol"
)

// maxSignalBody bounds a POST /v1/signals body.
const maxSignalBody = 64 << 10

// signalIn is one signal as a client sends it. Value is a pointer so that
// a missing or null value is refused instead of read as 0.
type signalIn struct {
	Name  string   `json:"name"`
	Value *float64 `json:"value"`
	At    int64    `json:"at"`
	// Sig is a publisher's signature of the value (protocol.SignalMessage,
	// with at): a condition leaf may take only its values.
	Sig string `json:"sig,omitempty"`
}

// signalsRequest is either one signal or {"signals": [...]} (not
// embedding signalIn, so that decoder errors name JSON fields only).
type signalsRequest struct {
	Name    string     `json:"name"`
	Value   *float64   `json:"value"`
	At      int64      `json:"at"`
	Sig     string     `json:"sig,omitempty"`
	Signals []signalIn `json:"signals"`
}

// signalsHandler is POST /v1/signals: authenticated by a bearer token,
// all-or-nothing (one invalid signal refuses the whole request).
func (n *daemon) signalsHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.opts.SignalToken == "" {
			n.httpError(w, r, http.StatusServiceUnavailable, "ingest_disabled", "signal ingest is disabled: start the node with --signal-token")
			return
		}
		if !n.bearer(w, r, n.opts.SignalToken) {
			return
		}
		sigs, err := decodeSignals(http.MaxBytesReader(w, r.Body, maxSignalBody), n.hub.Now())
		if err != nil {
			n.httpError(w, r, http.StatusBadRequest, "bad_request", err.Error())
			return
		}
		for _, s := range sigs {
			if f := n.chain.feed(s.Name); f != nil {
				n.httpError(w, r, http.StatusConflict, "signal_from_feed", fmt.Sprintf("signal %q is the chain's price feed %s, read at every block: a publisher cannot set it (nothing in this request was taken)", s.Name, f.Address))
				return
			}
		}
		// Durable before it is answered: a 202 means the values will be
		// evaluated, even if the node stops now (journal.go).
		if err := n.journal.append(sigs); err != nil {
			n.log.Error().Err(err).Msg("signal ingest: the journal did not take the values; refused")
			n.httpError(w, r, http.StatusServiceUnavailable, "storage_full", "the node could not record the values durably (its disk may be full): nothing was taken; retry")
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
		return nil, fmt.Errorf("the body must be one signal {\"name\", \"value\", \"at\"} or {\"signals\": [...]}: %s", protocol.DescribeJSONError(err))
	}
	if dec.More() {
		return nil, fmt.Errorf("the body holds more than one JSON value")
	}
	single := signalIn{Name: req.Name, Value: req.Value, At: req.At, Sig: req.Sig}
	one := single != (signalIn{})
	switch {
	case one && req.Signals != nil:
		return nil, fmt.Errorf("send one signal or a \"signals\" list, not both")
	case one:
		req.Signals = []signalIn{single}
	case len(req.Signals) == 0:
		return nil, fmt.Errorf("no signals in the request")
	}
	sigs := make([]hub.Signal, len(req.Signals))
	for i, in := range req.Signals {
		if in.Value == nil {
			return nil, fmt.Errorf("signal %d (%q): value is missing; it must be a finite number", i, in.Name)
		}
		sigs[i] = hub.Signal{Name: in.Name, Value: *in.Value, At: in.At}
		if in.Sig != "" {
			if in.At == 0 {
				return nil, fmt.Errorf("signal %d (%q): a signed value needs its \"at\", the time the publisher signed", i, in.Name)
			}
			sig, err := hexutil.Decode(in.Sig)
			if err != nil {
				return nil, fmt.Errorf("signal %d (%q): sig is not 0x-prefixed hex", i, in.Name)
			}
			if _, err := protocol.SignalSigner(in.Name, *in.Value, in.At, sig); err != nil {
				return nil, fmt.Errorf("signal %d (%q): sig: %v", i, in.Name, protocol.AsError(err).Message)
			}
			sigs[i].Sig = sig
		}
		if sigs[i].At == 0 {
			sigs[i].At = nowMs
		}
		if err := sigs[i].Validate(); err != nil {
			return nil, fmt.Errorf("signal %d (%q): %v", i, in.Name, err)
		}
	}
	return sigs, nil
}
