package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"

	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/protocol/client"
)

// shots saves screenshots of the dashboard at the sizes a person uses it,
// into SPELLS_SCREENSHOTS (a folder) when it is set.
type shots struct {
	t   *testing.T
	ctx context.Context
	dir string
	n   int
}

var viewports = []struct {
	name          string
	width, height int64
	mobile        bool
}{{"desktop", 1280, 800, false}, {"phone", 390, 844, true}}

// take saves the page at each viewport and checks that nothing is wider
// than it (a long name must not push the page sideways).
func (s *shots) take(step string) {
	s.t.Helper()
	s.n++
	for _, vp := range viewports {
		opts := []chromedp.EmulateViewportOption{chromedp.EmulateScale(1)}
		if vp.mobile {
			opts = append(opts, chromedp.EmulateMobile)
		}
		if err := chromedp.Do(within(s.t, s.ctx), chromedp.EmulateViewport(vp.width, vp.height, opts...)); err != nil {
			s.t.Fatal(err)
		}
		over, err := chromedp.Run(within(s.t, s.ctx), chromedp.Evaluate[int64](`document.documentElement.scrollWidth - window.innerWidth`))
		if err != nil {
			s.t.Fatal(err)
		}
		if over > 0 {
			s.t.Errorf("%s at %s: the page is %d px wider than the %d px window", step, vp.name, over, vp.width)
		}
		if s.dir != "" {
			png, err := chromedp.Run(within(s.t, s.ctx), chromedp.FullScreenshot(100))
			if err != nil {
				s.t.Fatal(err)
			}
			name := filepath.Join(s.dir, fmt.Sprintf("%02d-%s-%s.png", s.n, step, vp.name))
			if err := os.WriteFile(name, png, 0o644); err != nil {
				s.t.Fatal(err)
			}
		}
	}
	if err := chromedp.Do(within(s.t, s.ctx), chromedp.EmulateViewport(1280, 800)); err != nil {
		s.t.Fatal(err)
	}
}

// dispatch fires event on the element sel (a select whose value was set).
func dispatch(sel, event string) chromedp.Action[chromedp.Void] {
	return script(fmt.Sprintf(`document.querySelector(%q).dispatchEvent(new Event(%q))`, sel, event))
}

// empty empties the input sel as a user's delete key would (SetValue with
// "" passes the page an undefined value).
func empty(sel string) chromedp.Action[chromedp.Void] {
	return script(fmt.Sprintf(`(document.querySelector(%q).value = "") === ""`, sel))
}

func script(js string) chromedp.Action[chromedp.Void] {
	ev := chromedp.Evaluate[bool](js)
	return chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := ev(ctx, t)
		return err
	})
}

// rowsText returns the trigger table's text.
func rowsText(t *testing.T, ctx context.Context) string { return text(t, ctx, `#triggers tbody`) }

// TestDashboardFlows drives the dashboard through what a person does in
// their first hour, in Chromium, at 1280×800 and at phone width: the form's
// messages, creating without duplicates, editing, a long name, an action
// taken while the node is down (it arrives once, after the reconnect),
// the activity, sign-out and sign-out everywhere.
func TestDashboardFlows(t *testing.T) {
	ctx := browser(t)
	tn := startNode(t, testOptions(t), nil)
	tn.mustPublish(t, "ETH/USD", 2600)
	tn.mustPublish(t, "BTC/USD", 60000)
	sh := &shots{t: t, ctx: ctx, dir: os.Getenv("SPELLS_SCREENSHOTS")}
	do := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		if err := chromedp.Do(within(t, ctx), actions...); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	do("open the page", chromedp.EmulateViewport(1280, 800), chromedp.Navigate("http://"+tn.addr+"/"),
		chromedp.WaitVisible(`#signal-tabs button[data-name="ETH/USD"]`), chromedp.WaitVisible(`#btn-burner:not([disabled])`))
	if where := text(t, ctx, `#burner-where`); !strings.Contains(where, "http://127.0.0.1:") || !strings.Contains(where, "localhost") {
		t.Fatalf("the page does not say where the burner key lives: %q", where)
	}
	sh.take("before-sign-in")
	do("sign in", chromedp.Click(`#btn-burner`), chromedp.WaitVisible(`#vault`), chromedp.WaitVisible(`#status.on`))
	if m := text(t, ctx, `#no-intents`); !strings.Contains(m, "When a trigger fires") {
		t.Fatalf("an empty vault's intents say %q", m)
	}

	// The form says what is wrong, next to the field, and sends nothing.
	do("an empty threshold and a negative cooldown",
		empty(`#create input[name=threshold]`), chromedp.SetValue(`#create input[name=cooldown]`, "-5"),
		chromedp.Click(`#btn-create`), chromedp.WaitVisible(`.msg[data-for=threshold]`))
	if m := text(t, ctx, `.msg[data-for=threshold]`); !strings.Contains(m, "enter the threshold") {
		t.Fatalf("threshold message %q", m)
	}
	if m := text(t, ctx, `.msg[data-for=cooldown]`); !strings.Contains(m, "0 or more") {
		t.Fatalf("cooldown message %q", m)
	}
	sh.take("validation")
	// What a user typed is never rewritten by a new price.
	do("type a threshold", chromedp.SetValue(`#create input[name=cooldown]`, "10"), chromedp.SendKeys(`#create input[name=threshold]`, "2500"))
	tn.mustPublish(t, "ETH/USD", 2590)
	do("the new price", chromedp.WaitVisible(`//span[@id="price-value"][text()="2,590"]`))
	typed, err := chromedp.Run(within(t, ctx), chromedp.Value(`#create input[name=threshold]`))
	if err != nil {
		t.Fatal(err)
	}
	if typed != "2500" {
		t.Fatalf("the threshold typed as 2500 reads %q after a price tick", typed)
	}
	long := strings.Repeat("A very long trigger name ", 4)[:100]
	do("create, once", chromedp.SetValue(`#create input[name=name]`, long), chromedp.Click(`#btn-create`),
		chromedp.WaitVisible(`#triggers tbody tr`))
	if n := strings.Count(rowsText(t, ctx), "ETH/USD below 2,500"); n != 1 {
		sh.take("duplicate-check")
		t.Fatalf("%d triggers after one click: %q", n, rowsText(t, ctx))
	}
	name, err := chromedp.Run(within(t, ctx), chromedp.Value(`#create input[name=name]`))
	if err != nil {
		t.Fatal(err)
	}
	if name != "Buy the dip" {
		t.Fatalf("after Create the name field holds %q", name)
	}
	// An interval trigger.
	do("an interval trigger", chromedp.SetValue(`#create input[name=name]`, "DCA"), chromedp.SetValue(`#f-kind`, "every"),
		dispatch(`#f-kind`, "change"),
		chromedp.WaitVisible(`#create input[name=every]`), chromedp.SetValue(`#create input[name=every]`, "6"),
		chromedp.Click(`#btn-create`), chromedp.WaitVisible(`//td[contains(., "every 6 h")]`))
	// Any of two conditions.
	do("an any-of trigger", chromedp.SetValue(`#create input[name=name]`, "Either"), chromedp.SetValue(`#f-kind`, "any"),
		dispatch(`#f-kind`, "change"), chromedp.WaitVisible(`#part-list .part input[name$=threshold]`),
		chromedp.SetValue(`#part-list .part input[name$=threshold]`, "2000"),
		chromedp.Click(`#btn-create`), chromedp.WaitVisible(`//td[contains(., "any of (ETH/USD below 2,000; every 1 h)")]`))
	sh.take("created")

	// Edit the first trigger.
	do("edit", chromedp.Click(`#triggers tbody tr:first-child button`), chromedp.WaitVisible(`#btn-cancel-edit`),
		chromedp.SetValue(`#create input[name=threshold]`, "2400"), chromedp.Click(`#btn-create`),
		chromedp.WaitVisible(`//td[contains(., "ETH/USD below 2,400")]`))
	do("the edit is in the activity", chromedp.WaitVisible(`//li[contains(., "You edited")]`))
	sh.take("edited")

	// Pause while the node is down: queued, shown, sent once after the reconnect.
	if err := tn.shutdown(); err != nil {
		t.Fatal(err)
	}
	do("see the node gone", chromedp.WaitVisible(`#status.off`))
	do("pause while disconnected", chromedp.Click(`//tr[contains(., "below 2,400")]//button[text()="pause"]`),
		chromedp.WaitVisible(`//div[@id="pending"]//li[contains(., "waiting for the connection")]`))
	sh.take("queued-while-down")
	tn = tn.restart()
	do("the pause arrives", chromedp.WaitVisible(`//tr[contains(., "below 2,400")]//span[text()="paused"]`),
		chromedp.WaitVisible(`#status.on`))
	if n := strings.Count(text(t, ctx, `#evaluations`), "You paused"); n != 1 {
		t.Fatalf("the activity shows %d pauses, want the one", n)
	}
	vaultAddr := text(t, ctx, `#who`)
	pauses := countCommandEntries(t, tn, vaultAddr, protocol.OutcomePaused)
	if pauses != 1 {
		t.Fatalf("the vault recorded %d pauses, want 1", pauses)
	}
	sh.take("after-reconnect")

	// Filters and sign-out.
	do("filter to your changes", chromedp.SetValue(`#filter-kind`, "command"),
		dispatch(`#filter-kind`, "change"))
	if ev := text(t, ctx, `#evaluations`); strings.Contains(ev, "fired") || !strings.Contains(ev, "You created") {
		t.Fatalf("filtered to changes, the activity shows %q", ev)
	}
	do("sign out", chromedp.Click(`#btn-signout`), chromedp.WaitVisible(`#signin`))
	if m := text(t, ctx, `#signin-error`); !strings.Contains(m, "Signed out") {
		t.Fatalf("after sign-out the page says %q", m)
	}
	sh.take("signed-out")
	// The burner key can be shown (to keep a copy) and another one used.
	do("show the burner key", chromedp.Click(`#btn-export`), chromedp.WaitVisible(`#export-key`))
	shown, err := chromedp.Run(within(t, ctx), chromedp.Value(`#export-key`))
	if err != nil || len(shown) != 66 || !strings.HasPrefix(shown, "0x") {
		t.Fatalf("the shown burner key %q (%v)", shown, err)
	}
	other, _ := client.NewWallet()
	do("answer the page's questions yes", script(`window.confirm = () => true; true`))
	do("use a saved key", chromedp.WaitVisible(`#btn-burner:not([disabled])`), chromedp.Click(`#btn-import`),
		chromedp.SetValue(`#import-key`, fmt.Sprintf("0x%x", crypto.FromECDSA(other.Key))), chromedp.Click(`#import-box button`),
		chromedp.WaitVisible(`#vault`), chromedp.WaitVisible(`#no-triggers`))
	if who := text(t, ctx, `#who`); who != other.Address().Hex() {
		t.Fatalf("the imported key opened %s, not %s", who, other.Address().Hex())
	}
	do("back to the first key", chromedp.Click(`#btn-signout`), chromedp.WaitVisible(`#btn-burner:not([disabled])`),
		chromedp.Click(`#btn-import`), chromedp.SetValue(`#import-key`, shown), chromedp.Click(`#import-box button`),
		chromedp.WaitVisible(`#vault`), chromedp.WaitVisible(`#triggers tbody tr`))
	if who := text(t, ctx, `#who`); who != vaultAddr {
		t.Fatalf("the burner key opened %s, not its vault %s", who, vaultAddr)
	}
	// The header names the vault's session key (its address only); the
	// owner rotates it.
	keyOf := func() string {
		v, err := tn.n.mgr.Vault(ctxT(t), common.HexToAddress(vaultAddr))
		if err != nil {
			t.Fatal(err)
		}
		st, err := v.State(ctxT(t))
		if err != nil || st.Account == nil {
			t.Fatalf("the vault's account %+v (%v)", st.Account, err)
		}
		return st.Account.SessionKey
	}
	before := keyOf()
	if shown := text(t, ctx, `#session-key`); shown != "session key "+before[:6]+"…"+before[len(before)-4:] {
		t.Fatalf("the header shows %q for session key %s", shown, before)
	}
	do("rotate the session key", chromedp.Click(`#btn-rotate`),
		chromedp.WaitVisible(`//span[@id="session-key" and not(contains(., "`+before[len(before)-4:]+`"))]`))
	after := keyOf()
	if after == before || text(t, ctx, `#session-key`) != "session key "+after[:6]+"…"+after[len(after)-4:] {
		t.Fatalf("after rotating, the vault's key is %s (was %s) and the header shows %q", after, before, text(t, ctx, `#session-key`))
	}
	do("no older entries than these", chromedp.Click(`#older-evaluations`), chromedp.WaitVisible(`#older-evaluations[disabled]`))
	do("sign out everywhere", chromedp.Click(`#btn-signout-all`), chromedp.WaitVisible(`#notice`), chromedp.WaitVisible(`#signin`))
	if n := text(t, ctx, `#notice`); !strings.Contains(n, "Signed out everywhere") {
		t.Fatalf("notice %q", n)
	}
	sh.take("signed-out-everywhere")
}

// countCommandEntries reads, through the node's manager (the burner key
// is in the browser), how many command entries with outcome the vault
// holds.
func countCommandEntries(t *testing.T, tn *testNode, vault, outcome string) int {
	t.Helper()
	v, err := tn.n.mgr.Vault(ctxT(t), common.HexToAddress(vault))
	if err != nil {
		t.Fatal(err)
	}
	st, err := v.State(ctxT(t))
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, e := range st.Evaluations {
		if e.Cause == "command" && e.Outcome == outcome {
			n++
		}
	}
	return n
}
