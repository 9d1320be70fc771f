package main

import (
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// sourceLimiter is a token bucket per source address (hub.SourceKey's
// string), for the node's HTTP doors and its vault creation. Buckets that
// are full again are forgotten every sweep, so the map holds only the
// addresses seen lately.
type sourceLimiter struct {
	rate  rate.Limit
	burst int
	sweep time.Duration

	mu    sync.Mutex
	by    map[string]*rate.Limiter
	swept time.Time
}

func newSourceLimiter(r rate.Limit, burst int, sweep time.Duration) *sourceLimiter {
	return &sourceLimiter{rate: r, burst: burst, sweep: sweep, by: map[string]*rate.Limiter{}, swept: time.Now()}
}

// allow charges n tokens to source's bucket.
func (l *sourceLimiter) allow(source string, n int) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := time.Now()
	if now.Sub(l.swept) > l.sweep {
		for k, b := range l.by {
			if b.TokensAt(now) >= float64(b.Burst()) {
				delete(l.by, k)
			}
		}
		l.swept = now
	}
	b := l.by[source]
	if b == nil {
		b = rate.NewLimiter(l.rate, l.burst)
		l.by[source] = b
	}
	return b.AllowN(now, n)
}
