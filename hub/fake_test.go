package hub

import (
	"context"
	"encoding/json"
	"sync"
	"time"

	"github.com/ethereum/go-ethereum/common"

	"github.com/spells-dev/spells/protocol"
)

// fakeVaults is the hub's Vaults with no vault behind it: a sign-in is
// taken when its message parses and names the socket's nonce, a resume
// when it names a session it made, and every command is acked in order.
// It records what the hub handed it.
type fakeVaults struct {
	mu       sync.Mutex
	sessions map[string]*fakeSession
	signals  chan Signal   // every value SignalReceived got, if set
	refuse   error         // every sign-in is refused with it, if set
	hold     chan struct{} // a resume waits for it to close, if set
	seq      int
}

func newFakeVaults() *fakeVaults { return &fakeVaults{sessions: map[string]*fakeSession{}} }

func (f *fakeVaults) SignIn(ctx context.Context, r SignIn, sub Subscriber) (Session, error) {
	if f.refuse != nil {
		return nil, f.refuse
	}
	msg, err := protocol.ParseMessage(r.Message)
	if err != nil {
		return nil, err
	}
	if msg.Nonce != r.Nonce {
		return nil, protocol.Errorf(protocol.CodeNonceUnknown, "nonce is not the one issued on this socket")
	}
	f.mu.Lock()
	f.seq++
	s := &fakeSession{f: f, vault: msg.Address, id: msg.Nonce}
	f.sessions[s.id] = s
	f.mu.Unlock()
	return s, s.attach(sub)
}

func (f *fakeVaults) Resume(ctx context.Context, body, sig, nonce string, sub Subscriber) (Session, error) {
	if f.hold != nil {
		<-f.hold
	}
	r, err := protocol.ParseResume(body)
	if err != nil {
		return nil, err
	}
	f.mu.Lock()
	s := f.sessions[r.Session]
	f.mu.Unlock()
	if s == nil {
		return nil, protocol.Errorf(protocol.CodeSessionUnknown, "no such session")
	}
	return s, s.attach(sub)
}

func (f *fakeVaults) Revoke(ctx context.Context, r SignIn) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := len(f.sessions)
	for _, s := range f.sessions {
		s.end("revoked")
	}
	f.sessions = map[string]*fakeSession{}
	return n, nil
}

func (f *fakeVaults) SignalReceived(name string, value float64, received time.Time, _ protocol.SignalOrigin) int {
	if f.signals != nil {
		f.signals <- Signal{Name: name, Value: value, Received: received}
	}
	return 0
}

// fakeSession acks every command with the next version, and sends each
// subscriber a diff per command.
type fakeSession struct {
	f     *fakeVaults
	vault common.Address
	id    string

	mu       sync.Mutex
	subs     map[Subscriber]bool
	version  uint64
	commands []string
}

func (s *fakeSession) attach(sub Subscriber) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.subs == nil {
		s.subs = map[Subscriber]bool{}
	}
	s.subs[sub] = true
	ready, _ := json.Marshal(protocol.Ready{Type: protocol.TypeReady, Vault: s.vault.Hex(), Owner: s.vault.Hex(), Session: s.id, Version: s.version})
	sub.Send(ready)
	snap, _ := json.Marshal(protocol.Snapshot{Type: protocol.TypeSnapshot, State: protocol.State{Vault: s.vault.Hex(), Owner: s.vault.Hex(), Version: s.version}})
	sub.Send(snap)
	return nil
}

func (s *fakeSession) Vault() common.Address { return s.vault }

func (s *fakeSession) ID() string { return s.id }

func (s *fakeSession) Command(ctx context.Context, body, sig string, reply func(protocol.Ack, error)) error {
	cmd, err := protocol.ParseCommand(body)
	if err != nil {
		reply(protocol.Ack{}, err)
		return nil
	}
	s.mu.Lock()
	s.version++
	s.commands = append(s.commands, cmd.Op)
	diff, _ := json.Marshal(protocol.Diff{Type: protocol.TypeDiff, Vault: s.vault.Hex(), Version: s.version, Changes: []protocol.Change{}})
	for sub := range s.subs {
		if !sub.Send(diff) {
			delete(s.subs, sub)
		}
	}
	ack := protocol.Ack{Type: protocol.TypeAck, Seq: cmd.Seq, Version: s.version}
	s.mu.Unlock()
	reply(ack, nil)
	return nil
}

func (s *fakeSession) Detach(sub Subscriber) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.subs, sub)
}

// end closes every subscriber as a vault does when its session ends.
func (s *fakeSession) end(reason string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for sub := range s.subs {
		if e, ok := sub.(interface{ Ended(string) }); ok {
			e.Ended(reason)
		}
		delete(s.subs, sub)
	}
}

// subscribers is how many connections the session sends frames to.
func (s *fakeSession) subscribers() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return len(s.subs)
}

// only returns the one session the fake made.
func (f *fakeVaults) only() *fakeSession {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.sessions) != 1 {
		panic("want exactly one session")
	}
	for _, s := range f.sessions {
		return s
	}
	return nil
}

// each calls fn with every subscriber of the session, outside its lock.
func (s *fakeSession) each(fn func(Subscriber)) {
	s.mu.Lock()
	subs := make([]Subscriber, 0, len(s.subs))
	for sub := range s.subs {
		subs = append(subs, sub)
	}
	s.mu.Unlock()
	for _, sub := range subs {
		fn(sub)
	}
}

// ran returns the ops of the commands the session took, in order.
func (s *fakeSession) ran() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.commands...)
}
