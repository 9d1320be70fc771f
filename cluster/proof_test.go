package cluster

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/spells-dev/spells/cluster/redistest"
)

// kickRenew asks for a renewal now.
func (d *Directory) kickRenew() {
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

func memberDir(t *testing.T, rdb redis.UniversalClient, node, secret, kek string) *Directory {
	t.Helper()
	d := newDir(t, rdb, DirectoryConfig{Node: node, Addr: "127.0.0.1:1" + node[len(node)-1:], Lease: time.Second,
		Secret: []byte(secret), KEKID: kek, PeersFile: t.TempDir() + "/cluster.json", Logger: zerolog.Nop()})
	d.Start(context.Background())
	t.Cleanup(d.Close)
	return d
}

// TestANodeWithoutTheSecretOrTheKeyStaysOut: a node started with another
// cluster secret, or another key-encryption key, is no member: it writes
// no membership, the members do not see it, it claims no vault, and it
// says why.
func TestANodeWithoutTheSecretOrTheKeyStaysOut(t *testing.T) {
	rdb := dial(t, redistest.Start(t).URL())
	a := memberDir(t, rdb, "node-a", "the secret", "kek-1")
	waitFor(t, "node-a settled", a.Settled)
	for _, tc := range []struct{ node, secret, kek, says string }{
		{"node-x", "another secret", "kek-1", "cluster secret"},
		{"node-y", "the secret", "kek-2", "key-encryption key (id kek-2) is not the cluster's (id kek-1)"},
	} {
		x := memberDir(t, rdb, tc.node, tc.secret, tc.kek)
		if out := x.Out(); !strings.Contains(out, tc.says) {
			t.Fatalf("%s: out %q, want it to name the %s", tc.node, out, tc.says)
		}
		if err := x.Claim(context.Background(), vaultN(1)); err == nil || !strings.Contains(err.Error(), "not a member") {
			t.Fatalf("%s claimed a vault: %v", tc.node, err)
		}
		if _, err := rdb.ZScore(context.Background(), keyMembers, tc.node).Result(); err != redis.Nil {
			t.Fatalf("%s wrote a membership: %v", tc.node, err)
		}
		renewed := testutil.ToFloat64(a.m.Renewals)
		a.kickRenew()
		waitFor(t, "node-a's next renewal", func() bool { return testutil.ToFloat64(a.m.Renewals) > renewed })
		if _, ok := a.Member(tc.node); ok {
			t.Fatalf("node-a sees %s as a member", tc.node)
		}
	}
	if len(a.Members()) != 1 {
		t.Fatalf("members %v", a.Members())
	}
}

// TestAForgedEntryIsIgnored: a membership written into Redis by anything
// without the secret (its tag does not verify) is no member for
// placement, and a member's address cannot be changed under its tag.
func TestAForgedEntryIsIgnored(t *testing.T) {
	rdb := dial(t, redistest.Start(t).URL())
	a := memberDir(t, rdb, "node-a", "the secret", "kek-1")
	b := memberDir(t, rdb, "node-b", "the secret", "kek-1")
	waitFor(t, "node-b in a's members", func() bool { _, ok := a.Member("node-b"); return ok })
	ctx := context.Background()
	forged, _ := json.Marshal(map[string]any{"addr": "203.0.113.9:443", "kek": "kek-1", "tag": "00"})
	rdb.ZAdd(ctx, keyMembers, redis.Z{Score: float64(time.Now().Add(time.Hour).UnixMilli()), Member: "node-evil"})
	rdb.HSet(ctx, keyNodes, "node-evil", forged)
	// node-b's entry, pointed elsewhere, keeping its tag.
	var info map[string]any
	raw, _ := rdb.HGet(ctx, keyNodes, "node-b").Result()
	json.Unmarshal([]byte(raw), &info)
	info["addr"] = "203.0.113.10:443"
	moved, _ := json.Marshal(info)
	b.Close() // so its renewals do not put its entry back
	rdb.ZAdd(ctx, keyMembers, redis.Z{Score: float64(time.Now().Add(time.Hour).UnixMilli()), Member: "node-b"})
	rdb.HSet(ctx, keyNodes, "node-b", moved)
	a.kickRenew()
	waitFor(t, "node-a to drop both", func() bool {
		_, evil := a.Member("node-evil")
		_, nb := a.Member("node-b")
		return !evil && !nb
	})
	for i := 0; i < 200; i++ {
		if m, err := a.Place(vaultN(i)); err != nil || m.ID != "node-a" {
			t.Fatalf("vault %d placed on %v (%v)", i, m.ID, err)
		}
	}
}

// TestAProofWrittenByAStrangerIsReplaced: after Redis lost the directory,
// a node without the secret may write its proof first; a member that
// joined under the cluster's proof before writes it back and stays in,
// and the stranger is out again.
func TestAProofWrittenByAStrangerIsReplaced(t *testing.T) {
	rdb := dial(t, redistest.Start(t).URL())
	a := memberDir(t, rdb, "node-a", "the secret", "kek-1")
	waitFor(t, "node-a settled", a.Settled)
	ctx := context.Background()
	rdb.Set(ctx, keyProof, "ffff:kek-9", 0)
	a.kickRenew()
	waitFor(t, "the proof written back", func() bool { return rdb.Get(ctx, keyProof).Val() == a.clusterProof() })
	if out := a.Out(); out != "" {
		t.Fatalf("the member went out: %s", out)
	}
}
