package cluster

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/spells-dev/spells/hub"
	"github.com/spells-dev/spells/protocol"
)

// Nodes of a cluster in one test process: each a directory member on a
// real Redis, its links, a hub and a handoff, over in-memory vaults (no
// SQLite: what the cluster does with a vault is carry its bytes and ask
// the vaults to install them).

const testSecret = "a cluster secret of at least 32 characters"

type testNode struct {
	id      string
	dir     *Directory
	links   *Links
	hub     *hub.Hub
	handoff *Handoff
	files   *memVaults  // what the handoff moves
	echo    *echoVaults // what the hub serves
	wsURL   string
}

// nodeOpts shape a node before it starts.
type nodeOpts struct {
	held   map[common.Address]uint64 // vaults whose files it holds, with their epochs
	kek    string                    // default "kek-1"
	faucet uint64                    // the dev chain whose faucet it runs
	fund   func(owner, key common.Address)
}

func startNode(t *testing.T, rdb redis.UniversalClient, id string, o nodeOpts) *testNode {
	t.Helper()
	if o.kek == "" {
		o.kek = "kek-1"
	}
	n := &testNode{id: id, files: newMemVaults(o.kek), echo: &echoVaults{}}
	for a, e := range o.held {
		n.files.files[idOf(a)] = memFile{data: []byte("the file of " + a.Hex()), epoch: e}
	}
	mux := http.NewServeMux()
	srv := httptest.NewUnstartedServer(mux)
	addr := srv.Listener.Addr().String()
	n.dir = newDir(t, rdb, DirectoryConfig{Node: id, Addr: addr, Lease: 2 * time.Second, Held: n.files.Held,
		Faucet: o.faucet, Logger: zerolog.Nop()})
	n.links = NewLinks(LinksConfig{Dir: n.dir, Secret: []byte(testSecret), Holds: n.files.holds,
		Fund: o.fund, FundChain: o.faucet, Logger: zerolog.Nop()})
	bus := hub.NewMemoryBus(0, nil)
	n.hub = hub.New(hub.Config{Vaults: n.echo, Nonces: protocol.NewNonceIssuer([]byte(testSecret)), Bus: bus,
		Domains: []string{"localhost"}, Router: n.links, MaxPendingPerAddress: -1, SignInRate: -1, Logger: zerolog.Nop()})
	n.links.SetHub(n.hub)
	n.handoff = NewHandoff(n.links, n.files, nil)
	mux.Handle(linkPath, n.links)
	mux.Handle("/v1/ws", n.hub)
	srv.Start()
	n.wsURL = "ws" + strings.TrimPrefix(srv.URL, "http") + "/v1/ws"
	n.dir.Start(context.Background())
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		n.hub.Shutdown(ctx)
		n.handoff.Close()
		n.links.Close()
		n.dir.Close()
		srv.Close()
		bus.Close()
	})
	return n
}

// knows waits until every node sees every other as a member.
func knows(t *testing.T, nodes ...*testNode) {
	t.Helper()
	for _, a := range nodes {
		for _, b := range nodes {
			waitFor(t, a.id+" to see "+b.id, func() bool { _, ok := a.dir.Member(b.id); return ok })
		}
	}
}

// echoVaults is the hub's Vaults on a test node: a sign-in with the
// socket's nonce makes a session, and every command is acked. It records
// the vaults it served.
type echoVaults struct {
	mu     sync.Mutex
	served []common.Address
}

func (e *echoVaults) SignIn(ctx context.Context, r hub.SignIn, sub hub.Subscriber) (hub.Session, error) {
	msg, err := protocol.ParseMessage(r.Message)
	if err != nil {
		return nil, err
	}
	if msg.Nonce != r.Nonce {
		return nil, protocol.Errorf(protocol.CodeNonceUnknown, "not this socket's nonce")
	}
	e.mu.Lock()
	e.served = append(e.served, msg.Address)
	e.mu.Unlock()
	s := &echoSession{vault: msg.Address, id: msg.Nonce}
	b, _ := json.Marshal(protocol.Ready{Type: protocol.TypeReady, Vault: msg.Address.Hex(), Session: s.id})
	sub.Send(b)
	return s, nil
}

func (e *echoVaults) Resume(ctx context.Context, body, sig, nonce string, sub hub.Subscriber) (hub.Session, error) {
	return nil, protocol.Errorf(protocol.CodeSessionUnknown, "no sessions to resume here")
}

func (e *echoVaults) Revoke(ctx context.Context, r hub.SignIn) (int, error) { return 0, nil }

func (e *echoVaults) SignalReceived(string, float64, time.Time, protocol.SignalOrigin) int { return 0 }

func (e *echoVaults) vaults() []common.Address {
	e.mu.Lock()
	defer e.mu.Unlock()
	return append([]common.Address(nil), e.served...)
}

type echoSession struct {
	vault common.Address
	id    string
	seq   uint64
}

func (s *echoSession) Vault() common.Address { return s.vault }
func (s *echoSession) ID() string            { return s.id }
func (s *echoSession) Detach(hub.Subscriber) {}
func (s *echoSession) Command(ctx context.Context, body, sig string, reply func(protocol.Ack, error)) error {
	cmd, err := protocol.ParseCommand(body)
	if err != nil {
		return err
	}
	s.seq++
	reply(protocol.Ack{Type: protocol.TypeAck, Seq: cmd.Seq, Version: s.seq}, nil)
	return nil
}

// memVaults is the handoff's Vaults on a test node: files as bytes, with
// the moves' bookkeeping a vault manager keeps.
type memVaults struct {
	kek string

	mu       sync.Mutex
	files    map[string]memFile // held, by id
	incoming map[string]memFile // received, not installed
	pending  map[string]Move    // moves out a stop interrupted
	leaving  map[string]bool
	aborted  int
	corrupt  bool // MoveOut hands out a sum that does not match the bytes
}

type memFile struct {
	data  []byte
	epoch uint64
}

func newMemVaults(kek string) *memVaults {
	return &memVaults{kek: kek, files: map[string]memFile{}, incoming: map[string]memFile{},
		pending: map[string]Move{}, leaving: map[string]bool{}}
}

func (m *memVaults) KEKID() string { return m.kek }

func (m *memVaults) Held() map[string]uint64 {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]uint64{}
	for id, f := range m.files {
		out[id] = f.epoch
	}
	return out
}

func (m *memVaults) holds(a common.Address) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	_, ok := m.files[idOf(a)]
	return ok
}

func (m *memVaults) file(a common.Address) (memFile, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f, ok := m.files[idOf(a)]
	return f, ok
}

func (m *memVaults) MoveOut(ctx context.Context, a common.Address, to string) (*Outgoing, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f, ok := m.files[idOf(a)]
	if !ok || m.leaving[idOf(a)] {
		return nil, errors.New("not held here")
	}
	m.leaving[idOf(a)] = true
	sum := sha256.Sum256(f.data)
	if m.corrupt {
		sum[0] ^= 1
	}
	return &Outgoing{Vault: a, Epoch: f.epoch, To: to, Data: f.data, Sum: sum}, nil
}

func (m *memVaults) MoveDone(a common.Address) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.files, idOf(a))
	delete(m.leaving, idOf(a))
	delete(m.pending, idOf(a))
	return nil
}

func (m *memVaults) MoveAbort(a common.Address) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.leaving, idOf(a))
	delete(m.pending, idOf(a))
	m.aborted++
	return nil
}

func (m *memVaults) Receive(a common.Address, epoch uint64, data []byte, sum [32]byte) error {
	if sha256.Sum256(data) != sum {
		return fmt.Errorf("the file of %s does not match its checksum", a.Hex())
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.incoming[idOf(a)] = memFile{data: append([]byte(nil), data...), epoch: epoch}
	return nil
}

func (m *memVaults) Install(ctx context.Context, a common.Address, epoch uint64) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	f, ok := m.incoming[idOf(a)]
	if !ok || f.epoch != epoch {
		return fmt.Errorf("no received file of %s at epoch %d", a.Hex(), epoch)
	}
	delete(m.incoming, idOf(a))
	m.files[idOf(a)] = f
	return nil
}

func (m *memVaults) Discard(a common.Address) {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.incoming, idOf(a))
}

func (m *memVaults) PendingMoves() []Move {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Move
	for _, mv := range m.pending {
		out = append(out, mv)
	}
	return out
}

func (m *memVaults) Incoming() []Move {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []Move
	for id, f := range m.incoming {
		out = append(out, Move{Vault: common.HexToAddress(id), Epoch: f.epoch})
	}
	return out
}

func (m *memVaults) counts() (held, incoming, aborted int) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.files), len(m.incoming), m.aborted
}
