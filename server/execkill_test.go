package main

import (
	"context"
	"encoding/json"
	"math/big"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"

	"github.com/spells-dev/spells/chain"
	"github.com/spells-dev/spells/contracts"
	"github.com/spells-dev/spells/delegation"
	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/protocol/client"
)

func procChain(t *testing.T, p *procNode) (protocol.ChainInfo, *chain.Client) {
	t.Helper()
	resp, err := http.Get("http://" + p.addr + "/v1/chain")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var info protocol.ChainInfo
	if err := json.NewDecoder(resp.Body).Decode(&info); err != nil {
		t.Fatal(err)
	}
	c, err := chain.Dial(context.Background(), info.RPC, info.ChainID, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return info, c
}

// intentStatus is the status of the newest intent a frame shows, if any.
func intentStatus(f protocol.ServerFrame) string {
	status := ""
	for _, c := range f.Changes {
		if c.Kind == protocol.KindIntent {
			var in protocol.Intent
			if json.Unmarshal(c.Data, &in) == nil {
				status = in.Status
			}
		}
	}
	return status
}

// TestIntentSurvivesSIGKILL: the daemon, on its dev chain, is killed with
// SIGKILL as an intent reaches each step of its life; started again, it
// carries the intent on to confirmed, and its vault's session key has sent
// exactly one transaction (the chain may lose its newest blocks in the
// crash: the vault sends the same transaction again).
func TestIntentSurvivesSIGKILL(t *testing.T) {
	for _, at := range []string{protocol.IntentPending, protocol.IntentSigned, protocol.IntentSubmitted, protocol.IntentIncluded} {
		t.Run(at, func(t *testing.T) {
			data := t.TempDir()
			args := []string{"-chain-rpc", "dev", "-dev-chain-rpc", "127.0.0.1:0", "-chain-poll", "100ms", "-confirmations", "3", "-fee-bump-after", "5s"}
			p := startProc(t, data, args...)
			info, c := procChain(t, p)
			w, _ := client.NewWallet()
			s := p.signIn(t, w)
			key := common.HexToAddress(s.mirror.Account.SessionKey)
			ctx := context.Background()
			g := grantTransfer(t, c, info, s, "KILL")
			usd, stranger := g.usd, g.payee
			s.create(t, g.spec)
			// A clean restart writes the chain so far (deployment, funding,
			// the owner's setup) to disk: the crash below tests the intent.
			if err := p.stop(syscall.SIGTERM, 20*time.Second); err != nil {
				t.Fatalf("clean stop: %v", err)
			}
			p = startProc(t, data, args...)
			_, c = procChain(t, p)
			s = p.signIn(t, w)
			p.publish(t, "KILL", 15)
			p.publish(t, "KILL", 5)
			s.until(t, "the intent "+at, func(f protocol.ServerFrame) bool { return intentStatus(f) == at })
			p.kill()

			p = startProc(t, data, args...)
			_, c = procChain(t, p)
			s = p.signIn(t, w)
			deadline := time.Now().Add(60 * time.Second)
			for {
				st := ""
				for _, in := range s.mirror.Intents {
					st = in.Status
				}
				if st == protocol.IntentConfirmed || st == protocol.IntentFinal {
					break
				}
				if st == protocol.IntentFailed || st == protocol.IntentReverted || st == protocol.IntentRefused || time.Now().After(deadline) {
					t.Fatalf("after SIGKILL at %s the intent is %q; the node's log:\n%s", at, st, p.log())
				}
				s.until(t, "an intent change", func(f protocol.ServerFrame) bool { return intentStatus(f) != "" })
			}
			if n, _ := c.NonceAt(ctx, key, nil); n != 1 {
				t.Fatalf("after SIGKILL at %s the session key sent %d transactions, want 1", at, n)
			}
			data2, _ := contracts.MustGet(contracts.DemoToken).ABI.Pack("balanceOf", stranger)
			out, _ := c.CallContract(ctx, ethereum.CallMsg{To: &usd, Data: data2}, nil)
			if got := new(big.Int).SetBytes(out); got.Cmp(chain.Units(1)) != 0 {
				t.Fatalf("after SIGKILL at %s the payee holds %s, want 1 dUSD", at, got)
			}
		})
	}
}

// transferSetup is a vault set up to pay 1 dUSD: its owner a smart
// account, a grant of 100 dUSD a day to its session key, and a trigger
// that pays when signal falls below 10.
type transferSetup struct {
	usd, payee common.Address
	spec       protocol.TriggerSpec
}

// grantTransfer waits for the faucet to fund s's owner and session key,
// upgrades the owner (EIP-7702), adds the grant and returns the trigger
// spec, not created yet.
func grantTransfer(t *testing.T, c *chain.Client, info protocol.ChainInfo, s *session, signal string) transferSetup {
	t.Helper()
	ctx := context.Background()
	w, key := s.w, common.HexToAddress(s.mirror.Account.SessionKey)
	var g transferSetup
	for _, tk := range info.Tokens {
		if tk.Symbol == "dUSD" {
			g.usd = common.HexToAddress(tk.Address)
		}
	}
	waitFor(t, "the faucet", func() bool {
		kb, _ := c.BalanceAt(ctx, key, nil)
		ob, _ := c.BalanceAt(ctx, w.Address(), nil)
		return kb != nil && ob != nil && kb.Sign() > 0 && ob.Sign() > 0 && tokenBalance(t, c, g.usd, w.Address()).Sign() > 0
	})
	// geth's pool takes a new head's state a moment after the head: a
	// transaction sent at once after the funding block may be checked
	// against the balance before it.
	deadline := time.Now().Add(10 * time.Second)
	for {
		err := delegation.Upgrade(ctx, c, w.Key, common.HexToAddress(info.DeleGator), nil)
		if err == nil {
			break
		}
		if !strings.Contains(err.Error(), "insufficient funds") || time.Now().After(deadline) {
			t.Fatal(err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	dom := delegation.Domain{ChainID: info.ChainID, Manager: common.HexToAddress(info.DelegationManager)}
	grant, _, err := delegation.SignGrant(dom, delegation.ParseEnforcers(info.Enforcers), w.Key, key, 1,
		delegation.Rules{Token: &delegation.TokenPeriod{Token: g.usd, Period: delegation.Period{Amount: chain.Units(100), Duration: 86400, Start: 1}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.cmd(t, protocol.OpGrantAdd, grant); err != nil {
		t.Fatal(err)
	}
	g.payee = common.BytesToAddress(crypto.Keccak256(w.Address().Bytes())[:20])
	params, _ := json.Marshal(protocol.TransferParams{Token: "dUSD", To: g.payee.Hex(), Amount: "1"})
	g.spec = dip(10)
	g.spec.Condition.Signal = signal
	g.spec.Action = protocol.Action{Kind: "transfer", Params: params}
	return g
}
