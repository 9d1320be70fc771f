package main

import (
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/ethereum/go-ethereum/common"
)

// TestDashboardFollowsItsVaultAcrossAMove: a dashboard signed in on node A
// of a cluster, with a trigger made in it, stays with its vault while the
// vault's home node is drained: the page is closed with 4005 (directly,
// or through the node link), reconnects, resumes on the vault's new home
// and is live again with the same trigger, and a trigger made after the
// move is stored there.
func TestDashboardFollowsItsVaultAcrossAMove(t *testing.T) {
	ctx := browser(t)
	tc := startCluster(t, 2)
	a := tc.nodes[0]
	a.mustPublish(t, "ETH/USD", 2600)
	do := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(within(t, ctx), actions...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	do("open the page", chromedp.EmulateViewport(1280, 800), chromedp.Navigate("http://"+a.addr+"/"),
		chromedp.WaitVisible(`#btn-burner:not([disabled])`))
	do("sign in", chromedp.Click(`#btn-burner`), chromedp.WaitVisible(`#vault`), chromedp.WaitVisible(`#status.on`))
	vault := common.HexToAddress(strings.TrimSpace(text(t, ctx, `#who`)))
	do("create a trigger", chromedp.SetValue(`#create input[name=name]`, "before the move"),
		chromedp.SendKeys(`#create input[name=threshold]`, "2500"), chromedp.Click(`#btn-create`),
		chromedp.WaitVisible(`#triggers tbody tr`))
	home, ok, err := a.n.cluster.dir.Lookup(ctxT(t), vault)
	if err != nil || !ok {
		t.Fatalf("home: %v %v", ok, err)
	}
	from := a
	if home.Node != a.opts.Node {
		from = tc.nodes[1]
	}
	if res := from.drain(t); res.Moved != 1 {
		t.Fatalf("drain: %+v", res)
	}
	after, _, _ := a.n.cluster.dir.Lookup(ctxT(t), vault)
	if after.Node == home.Node || after.Epoch != 2 {
		t.Fatalf("home after the drain: %v", after)
	}
	// The page comes back live on its own, with what it had.
	do("live again", chromedp.WaitVisible(`//div[@id="status"][text()="live"]`))
	if rows := rowsText(t, ctx); !strings.Contains(rows, "before the move") {
		t.Fatalf("after the move the table shows %q", rows)
	}
	do("create after the move", chromedp.SetValue(`#create input[name=name]`, "after the move"),
		chromedp.Click(`#btn-create`), chromedp.WaitVisible(`//td[contains(., "after the move")]`))
	// The page's socket was closed under it by the move, and it came back.
	moved := disconnects(t, a, "vault_moved") + disconnects(t, a, "forwarded_closed")
	if moved != 1 {
		t.Fatalf("node A closed %v sockets for the move, want the page's", moved)
	}
	// Stored on the new home: a reload shows both.
	do("reload", chromedp.Reload(), chromedp.WaitVisible(`//div[@id="status"][text()="live"]`),
		chromedp.WaitVisible(`//td[contains(., "after the move")]`))
	if rows := rowsText(t, ctx); !strings.Contains(rows, "before the move") {
		t.Fatalf("after a reload the table shows %q", rows)
	}
}

// disconnects reads spells_ws_disconnects_total{reason} on a node.
func disconnects(t *testing.T, tn *testNode, reason string) float64 {
	t.Helper()
	mfs, err := tn.n.metricsReg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "spells_ws_disconnects_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "reason" && l.GetValue() == reason {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}
