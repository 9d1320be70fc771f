package main

import (
	"context"
	"fmt"
	"sync"

	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/protocol/client"
)

// user is one wallet signed in to its vault over one connection.
type user struct {
	w     *client.Wallet
	c     *client.Conn
	s     *client.Session
	state *protocol.State // the snapshot at sign-in
}

// signIn connects w and signs in, reading frames up to the snapshot.
func signIn(ctx context.Context, n *node, w *client.Wallet) (*user, error) {
	return signInWith(ctx, n, w, nil)
}

// signInWith is signIn with the connection's dial options.
func signInWith(ctx context.Context, n *node, w *client.Wallet, opts *client.DialOptions) (*user, error) {
	c, err := client.Dial(ctx, n.wsURL(), opts)
	if err != nil {
		return nil, err
	}
	s, err := c.SignIn(ctx, w, client.SignInParams{}, nil)
	if err != nil {
		c.CloseNow()
		return nil, fmt.Errorf("sign in: %w", err)
	}
	for {
		f, err := c.Next(ctx)
		if err != nil {
			c.CloseNow()
			return nil, err
		}
		if f.Type == protocol.TypeSnapshot {
			return &user{w: w, c: c, s: s, state: f.State}, nil
		}
	}
}

// forEach runs fn(i) for i in [0, count) on parallel workers and returns
// the first error.
func forEach(ctx context.Context, count, parallel int, fn func(ctx context.Context, i int) error) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	next := make(chan int)
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	for p := 0; p < parallel; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				if err := fn(ctx, i); err != nil {
					once.Do(func() { first = err; cancel() })
				}
			}
		}()
	}
	for i := 0; i < count && ctx.Err() == nil; i++ {
		next <- i
	}
	close(next)
	wg.Wait()
	return first
}

// newUsers makes count wallets, signs each in, runs setup on its
// connection, and keeps the connection open for the first keep of them.
func newUsers(ctx context.Context, n *node, count, keep int, setup func(ctx context.Context, u *user) error) ([]*user, error) {
	users := make([]*user, count)
	err := forEach(ctx, count, 32, func(ctx context.Context, i int) error {
		w, err := client.NewWallet()
		if err != nil {
			return err
		}
		u, err := signIn(ctx, n, w)
		if err != nil {
			return fmt.Errorf("user %d: %w", i, err)
		}
		if setup != nil {
			if err := setup(ctx, u); err != nil {
				u.c.CloseNow()
				return fmt.Errorf("user %d setup: %w", i, err)
			}
		}
		if i >= keep {
			u.c.Close()
			u.c = nil
		}
		users[i] = u
		return nil
	})
	return users, err
}

func closeAll(users []*user) {
	for _, u := range users {
		if u != nil && u.c != nil {
			u.c.CloseNow()
		}
	}
}

func below(signal string, thr float64) protocol.TriggerSpec {
	return protocol.TriggerSpec{Name: "bench", Condition: protocol.Condition{Signal: signal, Op: protocol.OpBelow, Threshold: &thr},
		Action: protocol.Action{Kind: "swap", Params: []byte(`{"sell":"USDC","buy":"ETH","amount":"1"}`)}}
}
