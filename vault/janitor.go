package vault

import (
	"context"
	"time"
)

// janitorEvery is the longest pause between two janitor sweeps, and
// janitorParallel how many files the janitor closes at once. Closing a
// file is a checkpoint and several syncs; asking every idle vault at once
// was a burst that held the processors while wake-ups waited, so the
// janitor sweeps often and closes one file at a time (DECISIONS.md has
// the measurements). Evictions at MaxOpen, which a wake-up waits for, are
// not paced, so a janitor that falls behind only leaves the least
// recently used files to them.
const (
	janitorEvery    = time.Second
	janitorParallel = 1
	rescanEvery     = 30 * time.Second
)

// janitor hibernates idle vaults and dozes idle watched ones,
// janitorParallel files at a time; it also probes a disk found full,
// retries the files the start-up scan could not read and the firings
// their vaults could not apply (fire.go), and checks the
// closed files' integrity in turn (integrity.go). It runs on the injected
// clock.
func (m *Manager) janitor(ctx context.Context) {
	every := min(m.cfg.IdleAfter/2, janitorEvery)
	slots := make(chan struct{}, janitorParallel)
	timer := m.cfg.Clock.NewTimer(every)
	defer timer.Stop()
	rescanned := m.now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C():
		}
		m.probeStorage()
		m.checkIntegrity(ctx, every)
		if m.now().Sub(rescanned) >= rescanEvery {
			m.rescan(ctx)
			m.retryFired()
			rescanned = m.now()
		}
		cutoff := m.now().Add(-m.cfg.IdleAfter).UnixMilli()
		m.mu.Lock()
		var idle, drowsy []*instance
		for _, i := range m.vaults {
			switch {
			case i.v.LastActive() > cutoff:
			case i.v.Subscribers() == 0 && (i.life == open || i.life == dozing):
				idle = append(idle, i)
			case i.life == open:
				drowsy = append(drowsy, i)
			}
		}
		m.mu.Unlock()
		for _, i := range idle {
			if !m.paced(ctx, slots, i, false) {
				return
			}
		}
		for _, i := range drowsy {
			if !m.paced(ctx, slots, i, true) {
				return
			}
		}
		timer.Reset(every)
	}
}

// paced waits for one of slots, then asks i to hibernate (or doze), and
// frees the slot once i's file is closed: when its letter has run, or when
// the goroutine it retired has ended (its file closes as it ends), or when
// i ended without running it. It reports false if ctx ended first.
func (m *Manager) paced(ctx context.Context, slots chan struct{}, i *instance, doze bool) bool {
	select {
	case slots <- struct{}{}:
	default:
		if h := m.hooks().JanitorWait.Load(); h != nil {
			(*h)()
		}
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return false
		}
	}
	m.spawn(func(ctx context.Context) {
		defer func() { <-slots }()
		retiring := make(chan bool, 1)
		if !i.v.Rest(ctx, doze, false, func(r bool) { retiring <- r }) {
			return
		}
		select {
		case r := <-retiring:
			if !r {
				return
			}
		case <-i.v.Done():
			return
		case <-ctx.Done():
			return
		}
		select {
		case <-i.v.Done():
		case <-ctx.Done():
		}
	})
	return true
}
