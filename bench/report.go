package main

import (
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"
)

// Report is what a scenario measured. Values are numbers with their unit
// in the key (e.g. "p99_ms"), so the JSON is self-describing.
type Report struct {
	Scenario string             `json:"scenario"`
	Params   map[string]any     `json:"params"`
	Results  map[string]float64 `json:"results"`
	Notes    []string           `json:"notes,omitempty"`
	Started  time.Time          `json:"started"`
	Took     string             `json:"took"`
}

func newReport(scenario string, params map[string]any) *Report {
	return &Report{Scenario: scenario, Params: params, Results: map[string]float64{}, Started: time.Now()}
}

func (r *Report) set(key string, v float64) { r.Results[key] = v }

func (r *Report) note(format string, args ...any) {
	r.Notes = append(r.Notes, fmt.Sprintf(format, args...))
}

// latencies adds p50, p99 and max of ds (in ms) under prefix.
func (r *Report) latencies(prefix string, ds []time.Duration) {
	if len(ds) == 0 {
		r.note("%s: no samples", prefix)
		return
	}
	sort.Slice(ds, func(i, j int) bool { return ds[i] < ds[j] })
	ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
	r.set(prefix+"_p50_ms", ms(ds[len(ds)*50/100]))
	r.set(prefix+"_p99_ms", ms(ds[min(len(ds)-1, len(ds)*99/100)]))
	r.set(prefix+"_max_ms", ms(ds[len(ds)-1]))
	r.set(prefix+"_samples", float64(len(ds)))
}

// print writes the table, then the JSON.
func (r *Report) print(w io.Writer) {
	r.Took = time.Since(r.Started).Round(time.Millisecond).String()
	fmt.Fprintf(w, "scenario %s (took %s)\n", r.Scenario, r.Took)
	keys := make([]string, 0, len(r.Results))
	for k := range r.Results {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(w, "  %-34s %14.3f\n", k, r.Results[k])
	}
	for _, n := range r.Notes {
		fmt.Fprintf(w, "  note: %s\n", n)
	}
	b, _ := json.MarshalIndent(r, "", "  ")
	fmt.Fprintln(w, strings.TrimSpace(string(b)))
}
