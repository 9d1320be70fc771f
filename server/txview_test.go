package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/spells-dev/spells/protocol"
)

// TestTransactionView: the view of an intent's transaction on the dev
// chain names its sender and target, decodes the redemption and the
// transfer it executes, the token's Transfer event with the owner named,
// and its status and fee; a malformed hash is 400, an unknown one 404.
func TestTransactionView(t *testing.T) {
	o := testOptions(t)
	o.ChainRPC, o.ChainID, o.DevChainRPC, o.DevChainBlockInterval, o.ChainPoll, o.Confirmations = chainDev, 0, "", time.Second, 200*time.Millisecond, 1
	tn := startNode(t, o, nil)
	s := tn.signIn(t, nil)
	g := grantTransfer(t, tn.n.chain.client, tn.n.chain.info, s, "VIEW/TX")
	s.create(t, g.spec)
	tn.mustPublish(t, "VIEW/TX", 15)
	tn.mustPublish(t, "VIEW/TX", 5)
	var hash string
	s.mirrorUntil(t, "the transfer confirmed", func() bool {
		for _, in := range s.mirror.Intents {
			if (in.Status == protocol.IntentConfirmed || in.Status == protocol.IntentFinal) && in.Tx != nil {
				hash = in.Tx.Hash
				return true
			}
		}
		return false
	})
	get := func(path string) (int, txView) {
		t.Helper()
		res, err := http.Get("http://" + tn.addr + path)
		if err != nil {
			t.Fatal(err)
		}
		defer res.Body.Close()
		var v txView
		_ = json.NewDecoder(res.Body).Decode(&v)
		return res.StatusCode, v
	}
	code, v := get("/v1/chain/tx/" + hash)
	if code != http.StatusOK || v.Status != "success" || v.Block == 0 || v.Fee == "" || v.From != s.mirror.Account.SessionKey || v.ToName != "DelegationManager" {
		t.Fatalf("view: %d %+v", code, v)
	}
	if v.Call == nil || v.Call.Method != "DelegationManager.redeemDelegations" || len(v.Call.Calls) != 1 ||
		v.Call.Calls[0].Method != "DemoToken.transfer" || v.Call.Calls[0].ToName != "dUSD" || v.Call.Calls[0].Args["value"] != "1000000000000000000" {
		t.Fatalf("call: %+v", v.Call)
	}
	found := false
	for _, l := range v.Logs {
		if l.Event == "DemoToken.Transfer" && l.Name == "dUSD" && strings.EqualFold(strings.Fields(l.Args["from"])[0], s.w.Address().Hex()) && l.Args["value"] == "1000000000000000000" {
			found = true
		}
	}
	if !found {
		t.Fatalf("logs: %+v", v.Logs)
	}
	if code, _ := get("/v1/chain/tx/0x1234"); code != http.StatusBadRequest {
		t.Fatalf("a malformed hash: %d", code)
	}
	if code, _ := get("/v1/chain/tx/0x" + strings.Repeat("ab", 32)); code != http.StatusNotFound {
		t.Fatalf("an unknown hash: %d", code)
	}
}
