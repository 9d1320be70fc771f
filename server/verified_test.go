package main

import (
	"crypto/ecdsa"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/crypto"

	"github.com/spells-dev/spells/protocol"
)

// TestATriggerTakesOnlyItsPublishersValues: a condition leaf that takes
// only a publisher's values fires on the value its key signed, not on an
// unsigned value or one another key signed before it; a signature that
// does not recover, or a signed value without its time, is refused at
// ingest with nothing published.
func TestATriggerTakesOnlyItsPublishersValues(t *testing.T) {
	tn := startNode(t, testOptions(t), nil)
	pub, _ := crypto.GenerateKey()
	other, _ := crypto.GenerateKey()
	at := time.Now().UnixMilli()
	signed := func(k *ecdsa.PrivateKey, v float64, at int64) string {
		sig, err := protocol.SignPersonal(k, protocol.SignalMessage("PUB/X", v, at))
		if err != nil {
			t.Fatal(err)
		}
		return fmt.Sprintf(`{"name":"PUB/X","value":%v,"at":%d,"sig":%q}`, v, at, hexutil.Encode(sig))
	}
	s := tn.signIn(t, nil)
	s.alertsTo(t, newWebhook(t).url)
	thr := 10.0
	id, _ := s.create(t, protocol.TriggerSpec{Name: "signed dip", Action: protocol.Action{Kind: "notify"},
		Condition: protocol.Condition{Signal: "PUB/X", Op: protocol.OpBelow, Threshold: &thr, From: crypto.PubkeyToAddress(pub.PublicKey).Hex()}})
	for _, body := range []string{
		signed(pub, 12, at),          // learned: above
		`{"name":"PUB/X","value":4}`, // unsigned: not taken
		signed(other, 3, at+1),       // another key: not taken
		signed(pub, 5, at+2),         // the publisher's: the crossing
	} {
		if code, resp := tn.publish(t, body); code != http.StatusAccepted {
			t.Fatalf("publish %s: %d %s", body, code, resp)
		}
	}
	s.until(t, "the firing", func(protocol.ServerFrame) bool { return len(s.mirror.Intents) == 1 })
	var fired []float64
	for _, e := range s.mirror.Evaluations {
		if e.TriggerID == id && e.Outcome == protocol.OutcomeFired && e.Value != nil {
			fired = append(fired, *e.Value)
		}
	}
	if len(fired) != 1 || fired[0] != 5 {
		t.Fatalf("fired on %v, want on the publisher's 5 only", fired)
	}
	for _, c := range []struct{ body, says string }{
		{`{"name":"PUB/X","value":1,"at":5,"sig":"0x1234"}`, "sig: signature must be 65 bytes"},
		{strings.Replace(signed(pub, 1, at+3), fmt.Sprintf(`"at":%d,`, at+3), "", 1), `needs its \"at\"`},
	} {
		code, resp := tn.publish(t, c.body)
		var e struct {
			Error struct{ Code, Message string }
		}
		_ = json.Unmarshal([]byte(resp), &e)
		if code != http.StatusBadRequest || !strings.Contains(resp, c.says) {
			t.Errorf("publish %s: %d %s, want 400 saying %q", c.body, code, resp, c.says)
		}
	}
}

// TestAnAcceptedSignalIsEvaluatedAfterACrash: a value POST /v1/signals
// accepted is in the journal before the 202; a node that stopped before
// its vaults evaluated it publishes it again at its next start, and the
// crossing fires once.
func TestAnAcceptedSignalIsEvaluatedAfterACrash(t *testing.T) {
	tn := startNode(t, testOptions(t), nil)
	tn.mustPublish(t, "ETH/USD", 2600)
	s := tn.signIn(t, nil)
	s.create(t, dip(2500))
	if err := tn.shutdown(); err != nil {
		t.Fatal(err)
	}
	// As if the node had answered 202 for 2400 and died before any vault
	// saw it: the journal holds it.
	f, err := os.OpenFile(journalPath(tn.opts.DataDir), os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(f, `{"name":"ETH/USD","value":2400,"at":%d}`+"\n", time.Now().UnixMilli())
	f.Close()
	opts := tn.opts
	tn = startNode(t, opts, nil)
	s = tn.signIn(t, s.w)
	s.until(t, "the firing on the journaled value", func(protocol.ServerFrame) bool { return len(s.mirror.Intents) == 1 })
	tn.mustPublish(t, "ETH/USD", 2400) // the same crossing again: nothing more fires
	tn.mustPublish(t, "ETH/USD", 2401)
	s.until(t, "the later value", func(f protocol.ServerFrame) bool { return f.Type == protocol.TypeSignal && f.Value == 2401 })
	if n := len(s.mirror.Intents); n != 1 {
		t.Fatalf("%d intents, want the one firing", n)
	}
}
