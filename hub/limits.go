package hub

import (
	"net"
	"net/netip"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// addrLimits bounds what one source address may cost the node before any
// of its sockets has signed in: how many unauthenticated sockets it holds
// at once, and how many sign-in and resume attempts it makes per second
// (each costs a signature recovery). An IPv4 address counts alone; IPv6
// addresses count per /64, the block one subscriber usually holds. It is
// safe for concurrent use.
type addrLimits struct {
	maxPending int // unauthenticated sockets per address; 0: no limit
	rate       rate.Limit
	burst      int // 0: no rate limit

	mu    sync.Mutex
	addrs map[netip.Prefix]*addrState
	swept time.Time
}

type addrState struct {
	pending int           // unauthenticated sockets open
	signIns *rate.Limiter // nil without a rate limit
	seen    time.Time
}

// addrIdle is how long an address with no pending socket is remembered
// (its sign-in budget refills well within it).
const addrIdle = time.Minute

func newAddrLimits(maxPending int, perSecond float64, burst int) *addrLimits {
	l := &addrLimits{maxPending: maxPending, addrs: map[netip.Prefix]*addrState{}, swept: time.Now()}
	if perSecond > 0 && burst > 0 {
		l.rate, l.burst = rate.Limit(perSecond), burst
	}
	return l
}

// SourceKey is the address a remote "host:port" is counted under by the
// limits per source address: the IPv4 address, or the IPv6 /64.
func SourceKey(remote string) netip.Prefix { return addrKey(remote) }

// addrKey is the address a remote "host:port" is counted under.
func addrKey(remote string) netip.Prefix {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Prefix{}
	}
	ip = ip.Unmap()
	bits := 32
	if ip.Is6() {
		bits = 64
	}
	p, _ := ip.Prefix(bits)
	return p
}

func (l *addrLimits) stateLocked(k netip.Prefix, now time.Time) *addrState {
	if now.Sub(l.swept) > addrIdle {
		for a, st := range l.addrs {
			if st.pending == 0 && now.Sub(st.seen) > addrIdle {
				delete(l.addrs, a)
			}
		}
		l.swept = now
	}
	st := l.addrs[k]
	if st == nil {
		st = &addrState{}
		if l.burst > 0 {
			st.signIns = rate.NewLimiter(l.rate, l.burst)
		}
		l.addrs[k] = st
	}
	st.seen = now
	return st
}

// admit counts a new unauthenticated socket from k, unless k already has
// maxPending of them.
func (l *addrLimits) admit(k netip.Prefix) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	st := l.stateLocked(k, time.Now())
	if l.maxPending > 0 && st.pending >= l.maxPending {
		return false
	}
	st.pending++
	return true
}

// authenticated stops counting one of k's sockets as unauthenticated (it
// signed in, or closed).
func (l *addrLimits) authenticated(k netip.Prefix) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if st := l.addrs[k]; st != nil && st.pending > 0 {
		st.pending--
		st.seen = time.Now()
	}
}

// signInAllowed spends one of k's sign-in attempts, if it has one left.
func (l *addrLimits) signInAllowed(k netip.Prefix) bool {
	if l.burst == 0 {
		return true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.stateLocked(k, time.Now()).signIns.Allow()
}
