package vault

import (
	"context"
	"errors"
	"sync"
	"testing"

	dto "github.com/prometheus/client_model/go"
	"zombiezen.com/go/sqlite"

	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/vault/actor"
)

// holdVault keeps v's goroutine busy until the returned release is called,
// so that the messages sent meanwhile queue up behind it.
func holdVault(t *testing.T, v *actor.Vault) (release func()) {
	t.Helper()
	started, hold := make(chan struct{}), make(chan struct{})
	done := make(chan error, 1)
	go func() {
		done <- v.Inspect(context.Background(), func(*sqlite.Conn) error { close(started); <-hold; return nil })
	}()
	<-started
	return func() {
		close(hold)
		if err := <-done; err != nil {
			t.Errorf("hold: %v", err)
		}
	}
}

type cmdResult struct {
	ack protocol.Ack
	err error
}

// queueCommands sends one command per user while the vault is held, waits
// until all of them are in the mailbox, and returns a function that
// releases the vault and collects the results in the users' order.
func queueCommands(t *testing.T, v *actor.Vault, users []*user, spec func(i int) protocol.TriggerSpec) func() []cmdResult {
	t.Helper()
	release := holdVault(t, v)
	out := make([]cmdResult, len(users))
	var wg sync.WaitGroup
	for i, u := range users {
		f, _, err := u.sess.SignCommand(protocol.OpTriggerCreate, spec(i))
		if err != nil {
			t.Fatal(err)
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			out[i].ack, out[i].err = v.Command(context.Background(), u.sess.ID, f.Body, f.Sig)
		}()
	}
	waitFor(t, "commands queued", func() bool { return v.Queued() == len(users) })
	return func() []cmdResult {
		release()
		wg.Wait()
		return out
	}
}

func groupCommits(t *testing.T, m *Manager) (count uint64, commands float64) {
	t.Helper()
	var pb dto.Metric
	if err := m.metrics.Actor.GroupCommits.Write(&pb); err != nil {
		t.Fatal(err)
	}
	return pb.GetHistogram().GetSampleCount(), pb.GetHistogram().GetSampleSum()
}

// sessions signs the same wallet in n times: n sessions on one vault.
func (e *env) sessions(n int) []*user {
	e.t.Helper()
	first := e.newUser()
	users := []*user{first}
	for len(users) < n {
		users = append(users, e.signIn(first.w))
	}
	return users
}

func TestGroupCommitSharesOneCommitAndKeepsEachVersion(t *testing.T) {
	e := newEnv(t)
	users := e.sessions(8)
	v := users[0].v
	before := users[0].state(t).Version
	const bad = 5 // this one's spec is refused; the others must still commit
	collect := queueCommands(t, v, users, func(i int) protocol.TriggerSpec {
		spec := protocol.TriggerSpec{Name: "t", Condition: below("X", float64(i)), Action: swap}
		if i == bad {
			spec.Condition = protocol.Condition{Signal: "X", Op: "~"}
		}
		return spec
	})
	res := collect()
	seen := map[uint64]bool{}
	for i, r := range res {
		if i == bad {
			wantCode(t, r.err, protocol.CodeInvalidTrigger)
			continue
		}
		if r.err != nil {
			t.Fatalf("command %d: %v", i, r.err)
		}
		if r.ack.Version <= before || r.ack.Version > before+7 || seen[r.ack.Version] {
			t.Fatalf("command %d acked at version %d; want a distinct one in (%d, %d]", i, r.ack.Version, before, before+7)
		}
		seen[r.ack.Version] = true
	}
	if n, cmds := groupCommits(t, e.m); n != 1 || cmds != 8 {
		t.Fatalf("group commits: %d holding %v commands; want 1 holding 8", n, cmds)
	}
	// Every subscriber sees the seven diffs, in version order, no gap.
	for k := before + 1; k <= before+7; k++ {
		if f := users[0].sub.nextOf(t, protocol.TypeDiff); f.Version != k {
			t.Fatalf("diff at version %d, want %d", f.Version, k)
		}
	}
	// And all of it is on disk.
	e.restart()
	v2, err := e.m.Vault(context.Background(), users[0].w.Address())
	if err != nil {
		t.Fatal(err)
	}
	st, err := v2.State(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if st.Version != before+7 || len(st.Triggers) != 7 {
		t.Fatalf("after restart: version %d with %d triggers; want %d with 7", st.Version, len(st.Triggers), before+7)
	}
}

func TestGroupCommitFailureAnswersEveryoneAndReloads(t *testing.T) {
	e := newEnv(t)
	users := e.sessions(3)
	v := users[0].v
	before := users[0].state(t).Version
	collect := queueCommands(t, v, users, func(i int) protocol.TriggerSpec {
		return protocol.TriggerSpec{Name: "t", Condition: below("X", float64(i)), Action: swap}
	})
	fail := func() error { return errors.New("disk on fire") }
	e.hooks.Actor.CommitFault.Store(&fail)
	defer e.hooks.Actor.CommitFault.Store(nil)
	res := collect()
	e.hooks.Actor.CommitFault.Store(nil)
	for i, r := range res {
		wantCode(t, r.err, protocol.CodeUnavailable)
		if !users[i].sub.gone.Load() {
			t.Fatalf("subscriber %d was not told its vault ended", i)
		}
	}
	waitFor(t, "the vault to end", v.Ended)
	// The next use reopens it from the file, which has none of the group.
	v2, err := e.m.Vault(context.Background(), users[0].w.Address())
	if err != nil {
		t.Fatal(err)
	}
	if v2 == v {
		t.Fatal("the failed vault is still in use")
	}
	users[0].v = v2
	st := users[0].state(t)
	if st.Version != before || len(st.Triggers) != 0 {
		t.Fatalf("after the failed commit: version %d with %d triggers; want %d with 0", st.Version, len(st.Triggers), before)
	}
	// The sessions are intact and accept the next command.
	ack := users[0].mustCmd(t, protocol.OpTriggerCreate, protocol.TriggerSpec{Name: "t", Condition: below("X", 1), Action: swap})
	if ack.Version != before+1 {
		t.Fatalf("next command at version %d, want %d", ack.Version, before+1)
	}
}
