package vault

import (
	"context"
	"time"
)

// janitorEvery is the longest pause between two janitor sweeps, and
// janitorParallel how many files the janitor closes at once. Closing a
// file is a checkpoint and several syncs; asking every idle vault at once
// was a burst that held the processors while wake-ups waited, so the
// janitor sweeps often and closes one file at a time (BENCHMARKS.md has
// the measurements). Evictions at MaxOpen, which a wake-up waits for, are
// not paced, so a janitor that falls behind only leaves the least
// recently used files to them.
const (
	janitorEvery    = time.Second
	janitorParallel = 1
	rescanEvery     = 30 * time.Second
)

// janitor hibernates idle vaults and dozes idle watched ones,
// janitorParallel files at a time; it also probes a disk found full, and
// retries the files the start-up scan could not read.
func (m *Manager) janitor(ctx context.Context) {
	every := min(m.cfg.IdleAfter/2, janitorEvery)
	slots := make(chan struct{}, janitorParallel)
	timer := m.cfg.Clock.NewTimer(every)
	defer timer.Stop()
	rescanned := time.Now()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C():
		}
		m.probeStorage()
		if time.Since(rescanned) >= rescanEvery {
			m.rescan(ctx)
			rescanned = time.Now()
		}
		cutoff := m.now().Add(-m.cfg.IdleAfter).UnixMilli()
		m.mu.Lock()
		var idle, drowsy []*Vault
		for _, v := range m.vaults {
			switch {
			case v.lastActive.Load() > cutoff:
			case v.subCount.Load() == 0 && (v.life == open || v.life == dozing):
				idle = append(idle, v)
			case v.life == open:
				drowsy = append(drowsy, v)
			}
		}
		m.mu.Unlock()
		for _, v := range idle {
			if !paced(ctx, slots, v, func() { v.hibernate(false) }) {
				return
			}
		}
		for _, v := range drowsy {
			if !paced(ctx, slots, v, func() { v.doze(false) }) {
				return
			}
		}
		timer.Reset(every)
	}
}

// slotWaitHook, when set by a test, runs when the janitor finds every one
// of its slots taken and waits for one.
var slotWaitHook func()

// paced waits for one of slots, then has v run closeFn (a hibernate or a
// doze), and frees the slot once v's file is closed: when the letter has
// run, or when the goroutine it retired has ended (its file closes as it
// ends), or when v ended without running it. It reports false if ctx
// ended first.
func paced(ctx context.Context, slots chan struct{}, v *Vault, closeFn func()) bool {
	select {
	case slots <- struct{}{}:
	default:
		if slotWaitHook != nil {
			slotWaitHook()
		}
		select {
		case slots <- struct{}{}:
		case <-ctx.Done():
			return false
		}
	}
	go func() {
		defer func() { <-slots }()
		retiring := make(chan bool, 1)
		if !v.postNoFile(ctx, func() { closeFn(); retiring <- v.forget }) {
			return
		}
		select {
		case r := <-retiring:
			if !r {
				return
			}
		case <-v.done:
			return
		}
		select {
		case <-v.done:
		case <-ctx.Done():
		}
	}()
	return true
}
