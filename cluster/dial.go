package cluster

import (
	"context"
	"net"
	"net/http"
	"net/netip"
	"time"

	"github.com/coder/websocket"
	"github.com/ethereum/go-ethereum/common"

	"github.com/spells-dev/spells/hub"
)

// Reaching a peer: the route a client's vault takes, the link to its
// node (dialed, or accepted on GET /v1/node-link), and the links' end.

// Route implements hub.Router: a vault held here is served here; one with
// a home elsewhere is forwarded to it; one with no home goes where
// placement puts it (created here, or forwarded to the node that will
// create it).
func (l *Links) Route(ctx context.Context, vault common.Address) (hub.Forwarder, error) {
	if l.cfg.Holds(vault) {
		return nil, nil
	}
	home, ok, err := l.cfg.Dir.Lookup(ctx, vault)
	if err != nil {
		return nil, unreachable("the cluster's directory (Redis) does not answer, so a vault on another node cannot be found; retry")
	}
	target := home.Node
	if !ok {
		m, err := l.cfg.Dir.Place(vault)
		if err != nil {
			return nil, unreachable("no node of the cluster is alive in its directory; retry")
		}
		target = m.ID
	}
	if target == l.me {
		return nil, nil
	}
	lk, err := l.link(ctx, target)
	if err != nil {
		return nil, err
	}
	return lk, nil
}

// link returns the link to peer, dialing it if there is none. Of two
// links dialed at once by both ends, both keep the one the lower id
// dialed (register).
func (l *Links) link(ctx context.Context, peer string) (*link, error) {
	deadline := time.Now().Add(linkWait)
	for {
		l.mu.Lock()
		if l.closed {
			l.mu.Unlock()
			return nil, unreachable("node shutting down")
		}
		if lk := l.links[peer]; lk != nil {
			l.mu.Unlock()
			return lk, nil
		}
		if b := l.backoff[peer]; time.Now().Before(b.until) {
			// A peer that just refused a dial is not dialed again at every
			// sign-in: the client hears at once, and retries.
			l.mu.Unlock()
			return nil, unreachable("node %s cannot be reached now; retry", peer)
		}
		wait, busy := l.dialing[peer]
		if !busy {
			wait = make(chan struct{})
			l.dialing[peer] = wait
			l.mu.Unlock()
			err := l.dial(ctx, peer)
			l.mu.Lock()
			if err != nil {
				b := l.backoff[peer]
				b.wait = min(max(2*b.wait, minDialBackoff), maxDialBackoff)
				b.until = time.Now().Add(b.wait)
				l.backoff[peer] = b
			} else {
				delete(l.backoff, peer)
			}
			delete(l.dialing, peer)
			close(wait)
			lk := l.links[peer]
			l.mu.Unlock()
			if lk != nil {
				return lk, nil
			}
			return nil, err
		}
		l.mu.Unlock()
		t := time.NewTimer(time.Until(deadline))
		select {
		case <-wait:
		case <-ctx.Done():
		case <-t.C:
		}
		t.Stop()
		if ctx.Err() != nil || time.Now().After(deadline) {
			return nil, unreachable("no link to node %s yet; retry", peer)
		}
	}
}

// dial opens a link to peer at its address in the directory.
func (l *Links) dial(ctx context.Context, peer string) error {
	m, ok := l.cfg.Dir.Member(peer)
	if !ok {
		l.m.Dials.WithLabelValues("failed").Inc()
		return unreachable("node %s is not alive in the cluster (down or restarting): its vaults are unavailable until it is back; retry", peer)
	}
	dctx, cancel := context.WithTimeout(ctx, handshakeTimeout)
	defer cancel()
	ws, _, err := websocket.Dial(dctx, "http://"+m.Addr+linkPath, &websocket.DialOptions{Subprotocols: []string{linkProto}})
	if err == nil {
		err = l.dialerHandshake(dctx, ws, peer)
		if err != nil {
			ws.Close(websocket.StatusPolicyViolation, "handshake failed")
		}
	}
	if err != nil {
		l.m.Dials.WithLabelValues("failed").Inc()
		l.log.Warn().Err(err).Str("peer", peer).Str("addr", m.Addr).Msg("node link not made")
		return unreachable("node %s cannot be reached now; retry", peer)
	}
	l.m.Dials.WithLabelValues("ok").Inc()
	l.start(ws, peer, true)
	return nil
}

// ServeHTTP accepts a node link (GET /v1/node-link), only from the
// address of a member of the cluster, and at most maxHandshakesPerAddr
// handshakes from one address at once, so no outsider can hold the
// handshake slots and cut the cluster's nodes apart.
func (l *Links) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	src := remoteIP(r.RemoteAddr)
	if !l.fromMember(r.Context(), src) {
		l.m.AuthFailed.Inc()
		l.log.Debug().Str("remote", r.RemoteAddr).Msg("node link refused: not from a member's address")
		http.Error(w, "node links are accepted from the cluster's members only", http.StatusForbidden)
		return
	}
	if !l.takeAddr(src) {
		l.m.AuthFailed.Inc()
		http.Error(w, "too many node link handshakes from this address at once; retry", http.StatusServiceUnavailable)
		return
	}
	defer l.releaseAddr(src)
	select {
	case l.handshakes <- struct{}{}:
		defer func() { <-l.handshakes }()
	default:
		l.m.AuthFailed.Inc()
		l.log.Warn().Str("remote", r.RemoteAddr).Msg("node link refused: too many handshakes at once")
		http.Error(w, "too many node link handshakes at once; retry", http.StatusServiceUnavailable)
		return
	}
	ws, err := websocket.Accept(w, r, &websocket.AcceptOptions{Subprotocols: []string{linkProto}})
	if err != nil {
		return
	}
	if ws.Subprotocol() != linkProto {
		ws.Close(websocket.StatusPolicyViolation, "subprotocol "+linkProto+" required")
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), handshakeTimeout)
	peer, err := l.listenerHandshake(ctx, ws)
	cancel()
	if err != nil {
		l.m.AuthFailed.Inc()
		l.log.Warn().Err(err).Str("remote", r.RemoteAddr).Msg("node link refused")
		ws.Close(websocket.StatusPolicyViolation, "node link refused")
		return
	}
	l.start(ws, peer, false)
}

// start runs an authenticated link and registers it. Of two links with
// one peer, the one the lower id dialed stays.
func (l *Links) start(ws *websocket.Conn, peer string, dialed bool) {
	ws.SetReadLimit(linkReadLimit)
	lk := &link{l: l, ws: ws, peer: peer, dialed: dialed, streams: map[uint32]*stream{}, calls: map[uint32]chan string{},
		moves: map[uint32]*moveIn{}, done: make(chan struct{})}
	if dialed {
		lk.next = 1
	} else {
		lk.next = 2
	}
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		ws.Close(websocket.StatusGoingAway, "node shutting down")
		return
	}
	if old := l.links[peer]; old != nil {
		lowerDialed := func(k *link) bool { return k.dialed == (l.me < peer) }
		if lowerDialed(old) && !lowerDialed(lk) {
			l.mu.Unlock()
			ws.Close(websocket.StatusNormalClosure, "a link with this node exists")
			return
		}
		l.wg.Add(1) // under l.mu, before Close can wait
		go func() {
			defer l.wg.Done()
			old.close(websocket.StatusNormalClosure, "replaced by a newer link")
		}()
	}
	l.links[peer] = lk
	delete(l.backoff, peer)
	close(l.changed)
	l.changed = make(chan struct{})
	l.wg.Add(2)
	l.mu.Unlock()
	l.m.Links.Inc()
	l.log.Info().Str("peer", peer).Bool("dialed", dialed).Msg("node link up")
	go func() {
		defer l.wg.Done()
		lk.read()
	}()
	go func() {
		defer l.wg.Done()
		lk.ping()
	}()
}

// Close ends every link (their streams end: clients reconnect).
func (l *Links) Close() {
	l.mu.Lock()
	l.closed = true
	l.cancel()
	links := make([]*link, 0, len(l.links))
	for _, lk := range l.links {
		links = append(links, lk)
	}
	l.mu.Unlock()
	for _, lk := range links {
		lk.close(websocket.StatusGoingAway, "node shutting down")
	}
	l.wg.Wait()
}

// maxHandshakesPerAddr bounds the handshakes one address has in progress.
const maxHandshakesPerAddr = 4

func remoteIP(remote string) netip.Addr {
	host, _, err := net.SplitHostPort(remote)
	if err != nil {
		host = remote
	}
	a, _ := netip.ParseAddr(host)
	return a.Unmap()
}

// fromMember reports whether a is the address of a member of the cluster
// (its link address's host, resolved if it is a name, cached a minute).
func (l *Links) fromMember(ctx context.Context, a netip.Addr) bool {
	if !a.IsValid() {
		return false
	}
	for _, m := range l.cfg.Dir.Members() {
		host, _, err := net.SplitHostPort(m.Addr)
		if err != nil {
			continue
		}
		for _, ip := range l.resolve(ctx, host) {
			if ip == a {
				return true
			}
		}
	}
	return false
}

// resolve is host's addresses: itself if it is one, else looked up (with
// a second's timeout) and cached a minute.
func (l *Links) resolve(ctx context.Context, host string) []netip.Addr {
	if ip, err := netip.ParseAddr(host); err == nil {
		return []netip.Addr{ip.Unmap()}
	}
	l.mu.Lock()
	c, ok := l.hosts[host]
	l.mu.Unlock()
	if ok && time.Since(c.at) < time.Minute {
		return c.ips
	}
	rctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	ips, err := net.DefaultResolver.LookupNetIP(rctx, "ip", host)
	if err != nil {
		return nil
	}
	for i := range ips {
		ips[i] = ips[i].Unmap()
	}
	l.mu.Lock()
	l.hosts[host] = resolved{ips: ips, at: time.Now()}
	l.mu.Unlock()
	return ips
}

type resolved struct {
	ips []netip.Addr
	at  time.Time
}

func (l *Links) takeAddr(a netip.Addr) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.inflight[a] >= maxHandshakesPerAddr {
		return false
	}
	l.inflight[a]++
	return true
}

func (l *Links) releaseAddr(a netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.inflight[a]--; l.inflight[a] <= 0 {
		delete(l.inflight, a)
	}
}
