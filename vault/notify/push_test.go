package notify

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/vault/notify/pushtest"
)

// TestWebPush: an alert reaches a subscription encrypted for it (the
// push service reads nothing; the browser decrypts it) under a VAPID
// token the node signed; a subscription the service dropped (410) is
// gone for the vault too. The node's push key is kept across starts.
func TestWebPush(t *testing.T) {
	path := filepath.Join(t.TempDir(), "push.key")
	v, err := LoadVAPID(path, "https://spells.example/")
	if err != nil {
		t.Fatal(err)
	}
	again, err := LoadVAPID(path, "https://spells.example/")
	if err != nil || again.Public != v.Public {
		t.Fatalf("the push key changed across starts: %v", err)
	}
	svc := pushtest.Start(t, v.Public)
	rs := newResults()
	n := start(t, Config{AllowPrivate: true, Post: rs.post, RetryBase: time.Hour, VAPID: v})
	j := job("", "p-1:push:0123456789abcdef")
	sub := svc.Subscription()
	sub.ID = "0123456789abcdef"
	j.Settings = protocol.AlertSettings{Push: []protocol.PushSubscription{sub}}
	j.Alert.Channel = "push:" + sub.ID
	if err := CheckSubscription(sub, true); err != nil {
		t.Fatal(err)
	}
	n.Send(j)
	if r := rs.wait(t, 1)[0]; r.Status != protocol.AlertDelivered {
		t.Fatalf("push: %+v (the service says %q)", r, svc.Failed())
	}
	if got := svc.Received(); len(got) != 1 || got[0]["title"] != "Spells: dip fired" || !strings.Contains(got[0]["body"], "0x00000000000000000000000000000000000000AA") {
		t.Fatalf("the browser read %+v", got)
	}
	svc.SetGone(true)
	j.Alert.ID = "p-2:push:0123456789abcdef"
	n.Send(j)
	if r := rs.wait(t, 2)[1]; r.Status != protocol.AlertFailed || !r.Gone || !strings.Contains(r.Err, "410") {
		t.Fatalf("a dropped subscription: %+v", r)
	}
	bad := sub
	bad.Keys.Auth = "AAAA"
	if CheckSubscription(bad, true) == nil {
		t.Error("a 3-byte auth secret accepted")
	}
	if CheckSubscription(sub, false) == nil {
		t.Error("a loopback endpoint accepted without private addresses allowed")
	}
}
