package s3test

import (
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync/atomic"
	"testing"
	"time"
)

// Faulty stands in front of an S3 server and, when told, answers every
// request with an error, or holds each one before passing it on: a store
// that fails or crawls, for tests.
type Faulty struct {
	URL      string
	Fail     atomic.Bool  // answer every request 500 InternalError
	Delay    atomic.Int64 // nanoseconds each request is held first
	Inflight atomic.Int64 // requests being held or passed on now
	closed   chan struct{}
}

// NewFaulty starts a Faulty in front of the S3 server at backend; it stops
// when the test ends.
func NewFaulty(t testing.TB, backend string) *Faulty {
	t.Helper()
	u, err := url.Parse(backend)
	if err != nil {
		t.Fatal(err)
	}
	f := &Faulty{closed: make(chan struct{})}
	proxy := httputil.NewSingleHostReverseProxy(u)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.Inflight.Add(1)
		defer f.Inflight.Add(-1)
		// Held while Delay says so (read again as it changes), until the
		// client goes or the test ends.
		for start := time.Now(); time.Since(start) < time.Duration(f.Delay.Load()); {
			select {
			case <-time.After(20 * time.Millisecond):
			case <-r.Context().Done():
				return
			case <-f.closed:
				return
			}
		}
		if f.Fail.Load() {
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(http.StatusInternalServerError)
			_, _ = w.Write([]byte(`<?xml version="1.0" encoding="UTF-8"?><Error><Code>InternalError</Code><Message>injected</Message></Error>`))
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	t.Cleanup(func() { close(f.closed); srv.Close() })
	f.URL = srv.URL
	return f
}
