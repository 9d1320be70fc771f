package main

import (
	"context"
	"encoding/json"
	"fmt"
	"math/big"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/ethereum/go-ethereum"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"

	"github.com/spells-dev/spells/backup/s3test"
	"github.com/spells-dev/spells/chain"
	"github.com/spells-dev/spells/contracts"
	"github.com/spells-dev/spells/delegation"
	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/vault/notify/smtptest"
)

// browser starts headless Chromium for a test. Without Chromium the test
// is skipped, unless SPELLS_REQUIRE_BROWSER=1 (set by .ci/run, which
// installs it).
func browser(t *testing.T) context.Context {
	t.Helper()
	path, err := exec.LookPath("chromium")
	if err != nil {
		if os.Getenv("SPELLS_REQUIRE_BROWSER") == "1" {
			t.Fatal("chromium is required (SPELLS_REQUIRE_BROWSER=1) but not installed")
		}
		t.Skip("chromium not installed; apt-get install chromium to run the dashboard test")
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.ExecPath(path), chromedp.NoSandbox, chromedp.DisableGPU,
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		// No smooth scrolling: a click aims at where an element is, and an
		// element still scrolling into view (slower on a loaded machine)
		// is not there any more when the click lands.
		chromedp.Flag("force-prefers-reduced-motion", true),
		chromedp.UserDataDir(t.TempDir()))
	actx, cancelAlloc := chromedp.NewExecAllocator(context.Background(), opts...)
	ctx, cancelCtx := chromedp.NewContext(actx)
	t.Cleanup(func() { cancelCtx(); cancelAlloc() })
	// The first run starts the browser; it must not carry a timeout.
	if err := chromedp.Do(ctx, chromedp.Navigate("about:blank")); err != nil {
		t.Fatalf("start chromium: %v", err)
	}
	// Only now (the browser runs) listen: the page's console is printed
	// when the test fails, and an exception or a warning or error the
	// dashboard's own code wrote fails it. The browser's log of refused
	// connections (a node stopped on purpose) is only printed.
	var mu sync.Mutex
	var console, faults []string
	go func() {
		for m, err := range chromedp.Console(ctx) {
			if err != nil {
				return
			}
			mu.Lock()
			console = append(console, m.String())
			if pageFault(m) {
				faults = append(faults, fmt.Sprintf("%s (%s:%d)", m, m.URL, m.Line+1))
			}
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		mu.Lock()
		defer mu.Unlock()
		for _, f := range faults {
			t.Errorf("the page wrote %s", f)
		}
		if t.Failed() {
			for _, l := range console {
				t.Log("browser console:", l)
			}
		}
	})
	return ctx
}

// pageFault tells whether a console message is a defect of the page: an
// uncaught exception, or a warning or error from the console API or from
// the rendering engine (such as an input given a value it cannot parse).
// Network entries (a refused WebSocket while the node is down) are not.
func pageFault(m chromedp.ConsoleMessage) bool {
	switch {
	case m.IsException():
		return true
	case m.Type != chromedp.ConsoleWarning && m.Type != chromedp.ConsoleError:
		return false
	case m.Source == "network":
		return false
	}
	return true
}

// within bounds one step of a browser test.
func within(t *testing.T, ctx context.Context) context.Context {
	c, cancel := context.WithTimeout(ctx, 30*time.Second)
	t.Cleanup(cancel)
	return c
}

func text(t *testing.T, ctx context.Context, sel string) string {
	t.Helper()
	s, err := chromedp.Run(within(t, ctx), chromedp.Text(sel))
	if err != nil {
		t.Fatalf("text of %s: %v", sel, err)
	}
	return s
}

// screenshot writes the page at a desktop and a phone's size to
// $SPELLS_SCREENSHOTS/<name>-desktop.png and -phone.png, when that is set,
// to be looked at.
func screenshot(t *testing.T, ctx context.Context, name string) {
	t.Helper()
	dir := os.Getenv("SPELLS_SCREENSHOTS")
	if dir == "" {
		return
	}
	for _, size := range []struct {
		name string
		w, h int64
	}{{"desktop", 1280, 900}, {"phone", 390, 844}} {
		if err := chromedp.Do(within(t, ctx), chromedp.EmulateViewport(size.w, size.h), chromedp.Sleep(300*time.Millisecond)); err != nil {
			t.Fatalf("screenshot: %v", err)
		}
		png, err := chromedp.Run(within(t, ctx), chromedp.FullScreenshot(100)) // 100: PNG
		if err != nil {
			t.Fatalf("screenshot: %v", err)
		}
		if err := os.WriteFile(filepath.Join(dir, name+"-"+size.name+".png"), png, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := chromedp.Do(within(t, ctx), chromedp.EmulateViewport(1280, 900)); err != nil {
		t.Fatal(err)
	}
}

// signInAndCreate opens the dashboard at url, signs in with a new burner
// key and creates the form's trigger below 2,500.
func signInAndCreate(t *testing.T, ctx context.Context, url string) {
	t.Helper()
	err := chromedp.Do(within(t, ctx),
		chromedp.Navigate(url),
		chromedp.WaitVisible(`#btn-burner`),
		chromedp.Click(`#btn-burner`),
		chromedp.WaitVisible(`#vault`),
		chromedp.WaitVisible(`#signal-tabs button[data-name="ETH/USD"]`),
		chromedp.SetValue(`#create input[name=threshold]`, "2500"),
		chromedp.Click(`#create button[type=submit]`),
		chromedp.WaitVisible(`#triggers tbody tr`),
	)
	if err != nil {
		t.Fatalf("sign in and create: %v", err)
	}
}

// TestDashboardTour drives the embedded dashboard in Chromium as a person
// would: sign in with a burner key, create a trigger, see it fire when the
// price crosses, reload and find the session resumed.
func TestDashboardTour(t *testing.T) {
	ctx := browser(t)
	tn := startNode(t, testOptions(t), nil)
	tn.mustPublish(t, "ETH/USD", 2600)
	url := "http://" + tn.addr + "/"
	signInAndCreate(t, ctx, url)
	tn.mustPublish(t, "ETH/USD", 2400)
	if err := chromedp.Do(within(t, ctx), chromedp.WaitVisible(`#intents li`)); err != nil {
		t.Fatalf("no intent shown after the crossing: %v", err)
	}
	intents, who := text(t, ctx, `#intents`), text(t, ctx, `#who`)
	if err := chromedp.Do(within(t, ctx), chromedp.Reload(), chromedp.WaitVisible(`#triggers tbody tr`)); err != nil {
		t.Fatalf("after reload: %v", err)
	}
	rows := text(t, ctx, `#triggers tbody`)
	if out := os.Getenv("SPELLS_SCREENSHOT"); out != "" {
		if png, err := chromedp.Run(within(t, ctx), chromedp.FullScreenshot(100)); err == nil {
			_ = os.WriteFile(out, png, 0o644)
		}
	}
	if !strings.Contains(intents, "swap") || !strings.Contains(intents, "Buy the dip") {
		t.Fatalf("intents feed: %q", intents)
	}
	// It fired its one time (the default is to fire once), so it is done.
	if !strings.Contains(rows, "ETH/USD below 2,500") || !strings.Contains(rows, "done") || !strings.Contains(rows, "1 of 1") {
		t.Fatalf("after reload the trigger table shows %q", rows)
	}
	if !strings.HasPrefix(who, "0x") {
		t.Fatalf("vault address shown as %q", who)
	}
}

// TestDashboardChartKeepsThePriceReadable: a threshold far from the price
// (a take-profit at 9,999 beside prices near 2,600) is marked at the
// chart's edge instead of stretching its scale, a near one stays a line
// across it, and minutes without data break the line.
func TestDashboardChartKeepsThePriceReadable(t *testing.T) {
	ctx := browser(t)
	tn := startNode(t, testOptions(t), nil)
	now := time.Now().UnixMilli()
	// Prices every 10 s, with six minutes missing between two runs.
	var pts []string
	for i := int64(0); i < 12; i++ {
		pts = append(pts, fmt.Sprintf(`{"name":"ETH/USD","value":%d,"at":%d}`, 2600+i, now-600_000+i*10_000))
	}
	for i := int64(0); i < 12; i++ {
		pts = append(pts, fmt.Sprintf(`{"name":"ETH/USD","value":%d,"at":%d}`, 2611-i, now-120_000+i*10_000))
	}
	if code, body := tn.publish(t, `{"signals":[`+strings.Join(pts, ",")+`]}`); code != http.StatusAccepted {
		t.Fatalf("publish: %d %s", code, body)
	}
	signInAndCreate(t, ctx, "http://"+tn.addr+"/") // below 2,500: near the price
	err := chromedp.Do(within(t, ctx),
		chromedp.SetValue(`#create select[name=op]`, "above"),
		chromedp.SetValue(`#create input[name=threshold]`, "9999"),
		chromedp.Click(`#create button[type=submit]`),
		chromedp.WaitVisible(`#triggers tbody tr:nth-child(2)`),
	)
	if err != nil {
		t.Fatalf("a take-profit at 9,999: %v", err)
	}
	var offScale, gaps string
	deadline := time.Now().Add(10 * time.Second)
	for {
		a, err := chromedp.Run(within(t, ctx), chromedp.AttributeValue(`#chart .uplot`, "data-off-scale"))
		if err != nil {
			t.Fatal(err)
		}
		g, err := chromedp.Run(within(t, ctx), chromedp.AttributeValue(`#chart .uplot`, "data-gaps"))
		if err != nil {
			t.Fatal(err)
		}
		offScale, gaps = a.Value, g.Value
		if offScale == "1" && gaps == "1" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the chart marks %q thresholds off its scale and %q gaps; want the take-profit and the six minutes", offScale, gaps)
		}
		time.Sleep(50 * time.Millisecond)
	}
	screenshot(t, ctx, "chart")
}

// TestDashboardAlerts: a notify trigger is refused until the vault has an
// alert channel, and the page says what to set up; with a webhook saved
// (its secret shown) and a mail address confirmed with the code mailed to
// it, the firing's alert reaches the owner's receiver, signed with that
// secret, and the mail server, and the delivery log shows both delivered.
func TestDashboardAlerts(t *testing.T) {
	ctx := browser(t)
	mailSrv := smtptest.Start(t)
	o := testOptions(t)
	o.SMTP, o.SMTPFrom = mailSrv.URL(), "alerts@spells.example"
	tn := startNode(t, o, nil)
	hook := newWebhook(t)
	tn.mustPublish(t, "ETH/USD", 2600)
	err := chromedp.Do(within(t, ctx),
		chromedp.Navigate("http://"+tn.addr+"/"),
		chromedp.WaitVisible(`#btn-burner`),
		chromedp.Click(`#btn-burner`),
		chromedp.WaitVisible(`#alerts-card`),
		chromedp.WaitVisible(`#signal-tabs button[data-name="ETH/USD"]`),
		chromedp.SetValue(`#f-action`, "notify"),
		chromedp.SetValue(`#create input[name=threshold]`, "2500"),
		chromedp.Click(`#create button[type=submit]`),
		chromedp.WaitVisible(`//*[@id="cmd-error" and contains(., "set up a webhook")]`),
		chromedp.SetValue(`#alerts-form input[name=url]`, hook.url),
		chromedp.SetValue(`#alerts-form input[name=email]`, "owner@example.org"),
		chromedp.Click(`#btn-alerts`),
		chromedp.WaitVisible(`#alerts-secret-value`),
		chromedp.WaitVisible(`#confirm-form input[name=code]`),
	)
	if err != nil {
		t.Fatalf("save the alert channels: %v", err)
	}
	_, code, _ := strings.Cut(mailSrv.Wait(t, 1)[0].Body, "Confirmation code: ")
	err = chromedp.Do(within(t, ctx),
		chromedp.SetValue(`#confirm-form input[name=code]`, code[:6]),
		chromedp.Click(`#btn-confirm`),
		chromedp.WaitVisible(`//*[@id="alerts-state" and contains(., "webhook, mail")]`),
		chromedp.SetValue(`#f-action`, "notify"),
		chromedp.SetValue(`#create input[name=threshold]`, "2500"),
		chromedp.Click(`#create button[type=submit]`),
		chromedp.WaitVisible(`#triggers tbody tr`),
	)
	if err != nil {
		t.Fatalf("set up a webhook and a notify trigger: %v", err)
	}
	secret := text(t, ctx, `#alerts-secret-value`)
	if !strings.HasPrefix(secret, "whsec_") {
		t.Fatalf("the page shows the secret as %q", secret)
	}
	hook.secret.Store(&secret)
	// The browser's own notification, while the page is open: a stand-in
	// for the browser's Notification records what the page shows.
	if err := chromedp.Do(within(t, ctx), script(`window.shown = []; window.Notification = class { static permission = "granted"; constructor(title, o) { window.shown.push(title + " | " + o.body); } }; true`)); err != nil {
		t.Fatal(err)
	}
	tn.mustPublish(t, "ETH/USD", 2400)
	if err := chromedp.Do(within(t, ctx), chromedp.WaitVisible(`#alert-log li[data-id$=":webhook"][data-status=delivered]`),
		chromedp.WaitVisible(`#alert-log li[data-id$=":email"][data-status=delivered]`)); err != nil {
		t.Fatalf("no delivered alert in the log: %v", err)
	}
	mailed := false
	for _, m := range mailSrv.Wait(t, 2) {
		mailed = mailed || strings.Contains(m.Header.Get("Subject"), "fired")
	}
	if !mailed {
		t.Fatalf("no alert mail among %+v", mailSrv.Messages(t))
	}
	got := hook.deliveries()
	if len(got) != 1 || !got[0].verified || got[0].payload.Alert.Kind != protocol.AlertTriggerFired {
		t.Fatalf("the webhook received %+v", got)
	}
	if log := text(t, ctx, `#alert-log`); !strings.Contains(log, "fired") || !strings.Contains(log, "ETH/USD at 2400") {
		t.Fatalf("the delivery log shows %q", log)
	}
	shown, err := chromedp.Run(within(t, ctx), chromedp.Evaluate[[]string](`window.shown`))
	if err != nil || len(shown) != 1 || !strings.Contains(shown[0], "fired") || !strings.Contains(shown[0], "ETH/USD at 2400") {
		t.Fatalf("the page's own notifications: %q %v; want one for the event (two channels)", shown, err)
	}
	// The service worker that shows pushed alerts registers at the root
	// (a push service is not part of headless Chromium: the delivery of a
	// push is tested from Go against pushtest).
	scope, err := chromedp.Run(within(t, ctx), chromedp.Evaluate[string](`navigator.serviceWorker.register("sw.js").then((r) => r.scope)`, chromedp.EvalAwaitPromise))
	if err != nil || scope != "http://"+tn.addr+"/" {
		t.Fatalf("the service worker registered with scope %q: %v", scope, err)
	}
	screenshot(t, ctx, "alerts")
}

// TestDashboardReadConditions: from the form, a trigger on the owner's
// dUSD balance, one on a contract's number (the feed's latestAnswer) and
// one on ETH/USD rising 10 % within an hour and one on dUSD's Transfer
// event to the owner are created, shown in words, and each fires when what
// it reads crosses (the event: when a transfer's log comes): the delivery
// log shows their alerts.
func TestDashboardReadConditions(t *testing.T) {
	ctx := browser(t)
	o := testOptions(t)
	o.ChainRPC, o.ChainID, o.DevChainRPC, o.DevChainBlockInterval, o.ChainPoll = chainDev, 0, "", time.Second, 200*time.Millisecond
	tn := startNode(t, o, nil)
	dev := tn.n.chain.dev
	if err := dev.SetFeed(context.Background(), "ETH/USD", 2600); err != nil {
		t.Fatal(err)
	}
	hook := newWebhook(t)
	feed := tn.n.chain.info.Feeds[0].Address
	step := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		sctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		if err := chromedp.Do(sctx, actions...); err != nil {
			t.Fatalf("%s: %v\nform %q\nerror %q\ntriggers %q\nalerts %q\nevaluations %q", what, err, text(t, ctx, `#create`), text(t, ctx, `#cmd-error`), text(t, ctx, `#triggers`), text(t, ctx, `#alert-log`), text(t, ctx, `#evaluations`))
		}
	}
	step("sign in and be funded", chromedp.Navigate("http://"+tn.addr+"/"), chromedp.WaitVisible(`#btn-burner:not([disabled])`),
		chromedp.Click(`#btn-burner`), chromedp.WaitVisible(`//p[@id="balances-account" and contains(., "25,000 dUSD")]`))
	step("a webhook", chromedp.SetValue(`#alerts-form input[name=url]`, hook.url), chromedp.Click(`#btn-alerts`), chromedp.WaitVisible(`#alerts-secret-value`))
	step("a balance trigger", chromedp.SetValue(`#f-kind`, "balance"), chromedp.WaitVisible(`#create select[name=token]`),
		chromedp.SetValue(`#create input[name=name]`, "rich"), chromedp.SetValue(`#create select[name=token]`, "dUSD"),
		chromedp.SetValue(`#create select[name=op]`, "above"), chromedp.SetValue(`#create input[name=threshold]`, "26000"),
		chromedp.SetValue(`#f-action`, "notify"), chromedp.Click(`#btn-create`),
		chromedp.WaitVisible(`//td[contains(., "my dUSD balance above 26,000")]`))
	step("a view-call trigger", chromedp.SetValue(`#f-kind`, "call"), chromedp.WaitVisible(`#create input[name=contract]`),
		chromedp.SetValue(`#create input[name=name]`, "feed high"), chromedp.SetValue(`#create input[name=contract]`, feed),
		chromedp.SetValue(`#create input[name=function]`, "latestAnswer() returns (int256)"), chromedp.SetValue(`#create input[name=decimals]`, "8"),
		chromedp.SetValue(`#create select[name=op]`, "above"), chromedp.SetValue(`#create input[name=threshold]`, "3000"),
		chromedp.SetValue(`#f-action`, "notify"), chromedp.Click(`#btn-create`),
		chromedp.WaitVisible(`//td[contains(., ".latestAnswer() above 3,000")]`))
	step("a move trigger", chromedp.SetValue(`#f-kind`, "move"), chromedp.WaitVisible(`#create input[name=pct]`),
		chromedp.SetValue(`#create input[name=name]`, "pump"), chromedp.SetValue(`#create select[name=signal]`, "ETH/USD"),
		chromedp.SetValue(`#create select[name=op]`, "above"), chromedp.SetValue(`#create input[name=pct]`, "10"),
		chromedp.SetValue(`#create input[name=window]`, "1"), chromedp.SetValue(`#create select[name=windowUnit]`, "3600000"),
		chromedp.SetValue(`#f-action`, "notify"), chromedp.Click(`#btn-create`),
		chromedp.WaitVisible(`//td[contains(., "ETH/USD rises 10 % within 1 h")]`))
	var dUSD string
	for _, tk := range tn.n.chain.info.Tokens {
		if tk.Symbol == "dUSD" {
			dUSD = tk.Address
		}
	}
	owner := text(t, ctx, `#who`)
	step("an event trigger", chromedp.SetValue(`#f-kind`, "event"), chromedp.WaitVisible(`#create input[name=signature]`),
		chromedp.SetValue(`#create input[name=name]`, "dUSD in"), chromedp.SetValue(`#create input[name=contract]`, dUSD),
		chromedp.SetValue(`#create input[name=signature]`, "Transfer(address indexed from, address indexed to, uint256 value)"),
		chromedp.SetValue(`#create input[name=topics]`, ", "+owner),
		chromedp.SetValue(`#f-action`, "notify"), chromedp.Click(`#btn-create`),
		chromedp.WaitVisible(`//td[contains(., "Transfer on `+shortAddr(dUSD)+` where to = `+shortAddr(owner)+`")]`))
	step("the reads and the move known", chromedp.WaitVisible(`//ul[@id="evaluations"]/li[contains(., "rich") and contains(., "at 25,000")]`),
		chromedp.WaitVisible(`//ul[@id="evaluations"]/li[contains(., "feed high") and contains(., "at 2,600")]`),
		chromedp.WaitVisible(`//ul[@id="evaluations"]/li[contains(., "pump") and contains(., "is now false")]`))
	if err := dev.Fund(context.Background(), common.HexToAddress(text(t, ctx, `#who`)), nil, map[string]*big.Int{"dUSD": chain.Units(2000)}); err != nil {
		t.Fatal(err)
	}
	step("the balance trigger fires", chromedp.WaitVisible(`//ul[@id="alert-log"]/li[@data-status="delivered" and contains(., "rich fired")]`))
	step("the event trigger fires on the transfer's log", chromedp.WaitVisible(`//ul[@id="alert-log"]/li[@data-status="delivered" and contains(., "dUSD in fired") and contains(., "Transfer(")]`),
		chromedp.WaitVisible(`//ul[@id="evaluations"]/li[contains(., "dUSD in") and contains(., "on-chain event") and contains(., ", 2000000000000000000000) in block")]`))
	if err := dev.SetFeed(context.Background(), "ETH/USD", 3100); err != nil {
		t.Fatal(err)
	}
	step("the view-call trigger fires", chromedp.WaitVisible(`//ul[@id="alert-log"]/li[@data-status="delivered" and contains(., "feed high fired")]`))
	step("the move trigger fires", chromedp.WaitVisible(`//ul[@id="alert-log"]/li[@data-status="delivered" and contains(., "pump fired") and contains(., "ETH/USD's move")]`))
	screenshot(t, ctx, "read-conditions")
}

// TestDashboardSaysTheVaultLostData: a dashboard that held a version the
// vault no longer has (its file was rolled back while the node was down)
// says so plainly, then shows the vault as it is.
func TestDashboardSaysTheVaultLostData(t *testing.T) {
	ctx := browser(t)
	tn := startNode(t, testOptions(t), nil)
	tn.mustPublish(t, "ETH/USD", 2600)
	signInAndCreate(t, ctx, "http://"+tn.addr+"/")
	id := strings.ToLower(text(t, ctx, `#who`))
	file := tn.opts.DataDir + "/vaults/" + id[2:4] + "/" + id + ".db"
	if err := tn.shutdown(); err != nil {
		t.Fatal(err)
	}
	older, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	tn = tn.restart()
	for _, th := range []string{"2400", "2300"} {
		if err := chromedp.Do(within(t, ctx),
			chromedp.WaitVisible(`#status.on`),
			chromedp.SetValue(`#create input[name=threshold]`, th),
			chromedp.Click(`#create button[type=submit]`),
		); err != nil {
			t.Fatal(err)
		}
	}
	waitFor(t, "three triggers on the page", func() bool {
		return strings.Count(text(t, ctx, `#triggers tbody`), "ETH/USD") == 3
	})
	if err := tn.shutdown(); err != nil {
		t.Fatal(err)
	}
	os.Remove(file + "-wal")
	if err := os.WriteFile(file, older, 0o600); err != nil { // what a damaged WAL leaves: an older vault
		t.Fatal(err)
	}
	tn = tn.restart()
	if err := chromedp.Do(within(t, ctx), chromedp.WaitVisible(`#notice`)); err != nil {
		t.Fatalf("no notice after the rollback: %v", err)
	}
	if n := text(t, ctx, `#notice`); !strings.Contains(n, "This vault lost data") {
		t.Fatalf("the notice says %q", n)
	}
	waitFor(t, "the vault as it is", func() bool {
		return strings.Count(text(t, ctx, `#triggers tbody`), "ETH/USD") == 1
	})
	if out := os.Getenv("SPELLS_SCREENSHOT"); out != "" {
		if png, err := chromedp.Run(within(t, ctx), chromedp.FullScreenshot(100)); err == nil {
			_ = os.WriteFile(strings.TrimSuffix(out, ".png")+"-lost-data.png", png, 0o644)
		}
	}
}

// TestDashboardShowsBalances: on the dev chain, a burner key's first
// sign-in is funded by the faucet, and the page shows the owner's balances
// and the session key's gas money as the chain holds them.
func TestDashboardShowsBalances(t *testing.T) {
	ctx := browser(t)
	o := testOptions(t)
	o.ChainRPC, o.ChainID, o.DevChainRPC, o.DevChainBlockInterval, o.ChainPoll = chainDev, 0, "", time.Second, 200*time.Millisecond
	tn := startNode(t, o, nil)
	err := chromedp.Do(within(t, ctx),
		chromedp.Navigate("http://"+tn.addr+"/"),
		chromedp.WaitVisible(`#btn-burner:not([disabled])`),
		chromedp.Click(`#btn-burner`),
		chromedp.WaitVisible(`#vault`),
		chromedp.WaitVisible(`//p[@id="balances-account" and contains(., "10 dETH")]`),
	)
	if err != nil {
		t.Fatalf("no balances shown: %v (balances: %q)", err, text(t, ctx, `#balances`))
	}
	if got := text(t, ctx, `#balances`); !strings.Contains(got, "25,000 dUSD") || !strings.Contains(got, "holds 1 ETH for gas") {
		t.Fatalf("balances %q", got)
	}
	if out := os.Getenv("SPELLS_SCREENSHOTS"); out != "" {
		if png, err := chromedp.Run(within(t, ctx), chromedp.FullScreenshot(100)); err == nil {
			_ = os.WriteFile(filepath.Join(out, "balances.png"), png, 0o644)
		}
	}
}

// TestDashboardExecutesASwap: on the dev chain, in Chromium, a burner key
// signs in, sets up its smart account and grants the default limits in
// one click, creates a swap trigger, and when the price crosses sees the
// intent go to confirmed with its transaction, and its balances move.
func TestDashboardExecutesASwap(t *testing.T) {
	ctx := browser(t)
	o := testOptions(t)
	o.ChainRPC, o.ChainID, o.DevChainRPC, o.DevChainBlockInterval, o.ChainPoll, o.Confirmations = chainDev, 0, "", time.Second, 200*time.Millisecond, 1
	tn := startNode(t, o, nil)
	// ETH/USD is the dev chain's price feed: the test moves the feed, and
	// the chain checks it when the swap executes.
	setFeed := func(price float64) {
		t.Helper()
		if err := tn.n.chain.dev.SetFeed(context.Background(), "ETH/USD", price); err != nil {
			t.Fatal(err)
		}
	}
	setFeed(2600)
	if code, body := tn.publish(t, `{"name":"ETH/USD","value":2400}`); code != http.StatusConflict || !strings.Contains(body, "price feed") {
		t.Fatalf("publishing the feed's signal: %d %s", code, body)
	}
	// Each step waits for blocks (one a second) on 2 cores shared with the
	// browser: a minute each.
	step := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		sctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		if err := chromedp.Do(sctx, actions...); err != nil {
			t.Fatalf("%s: %v\nbalances %q\ngrants %q %q\nintents %q\npending %q %q", what, err, text(t, ctx, `#balances`), text(t, ctx, `#grants-card`),
				text(t, ctx, `#grant-msg`), text(t, ctx, `#intents`), text(t, ctx, `#pending`), text(t, ctx, `#cmd-error`))
		}
	}
	step("sign in and be funded", chromedp.Navigate("http://"+tn.addr+"/"), chromedp.WaitVisible(`#btn-burner:not([disabled])`),
		chromedp.Click(`#btn-burner`), chromedp.WaitVisible(`//p[@id="balances-account" and contains(., "10 dETH")]`))
	step("set up and grant", chromedp.Click(`#btn-grant`), chromedp.WaitVisible(`#grants li[data-status=active]`))
	if g := text(t, ctx, `#grants`); !strings.Contains(g, "spend up to 5 dETH a day") || strings.Contains(g, "the pool") {
		t.Fatalf("grants shown as %q", g)
	}
	step("create a swap trigger, signing its own grant", chromedp.WaitVisible(`#p-amount`), chromedp.SetValue(`#create input[name=threshold]`, "2500"),
		chromedp.Click(`#btn-create`), chromedp.WaitVisible(`#triggers tbody tr`), chromedp.WaitVisible(`//ul[@id="grants"]/li[contains(., "a swap through the router, to you")]`),
		chromedp.WaitVisible(`//td[contains(., "on-chain: exactly its 2 signed calls, at most 1 time") and contains(., "only while the chain's ETH/USD feed is below 2,500")]`))
	setFeed(2400)
	step("the swap confirms", chromedp.WaitVisible(`#intents li[data-status=confirmed]`))
	if in := text(t, ctx, `#intents`); !strings.Contains(in, "tx 0x") || !strings.Contains(in, "block") {
		t.Fatalf("the intent shows %q", in)
	}
	step("the balances move", chromedp.WaitVisible(`//p[@id="balances-account" and contains(., "24,750 dUSD")]`))
	if b := text(t, ctx, `#balances-account`); strings.Contains(b, " 10 dETH") {
		t.Fatalf("after buying dETH the balances read %q", b)
	}
	// Money as money: what the swap paid and received, at what price
	// against the feed's value at the firing, its gas, and what the
	// trigger's grant has left.
	step("the swap's money", chromedp.WaitVisible(`//ul[@id="intents"]/li[contains(., "paid 250 dUSD") and contains(., "received") and contains(., "dUSD/dETH (fired at 2,400:") and contains(., "gas 0.")]`),
		chromedp.WaitVisible(`//ul[@id="grants"]/li[contains(., "1 of 1 calls used")]`),
		chromedp.WaitVisible(`//p[@id="gas-today" and contains(., "gas today")]`),
		chromedp.WaitVisible(`//p[@id="balances-account" and contains(., "dETH ($") and contains(., "ETH ($")]`))
	screenshot(t, ctx, "money")
	step("the transaction view", chromedp.Click(`#intents li button.view`),
		chromedp.WaitVisible(`//dialog[@id="tx-view"]//b[contains(., "DelegationManager.redeemDelegations")]`),
		chromedp.WaitVisible(`//dialog[@id="tx-view"]//b[contains(., "DemoRouter.swapExactTokensForTokens")]`),
		chromedp.WaitVisible(`//dialog[@id="tx-view"]//li[b[contains(., "DemoToken.Transfer")] and contains(., "dUSD")]`),
		chromedp.WaitVisible(`//dialog[@id="tx-view"]//span[contains(@class, "badge") and contains(., "success")]`))
	screenshot(t, ctx, "tx-view")
	step("close it", chromedp.Click(`#tx-view-close`), chromedp.WaitNotVisible(`#tx-view`))
	// Revoking stops the vault using the grant and disables its
	// delegations on-chain.
	step("revoke", script(`window.confirm = () => true; true`), chromedp.Click(`#grants li[data-status=active] button`),
		chromedp.WaitVisible(`#grants li[data-status=revoked]`), chromedp.WaitVisible(`//p[@id="grant-msg" and contains(., "Disabled on-chain too (2 delegations)")]`))
	st, err := tn.n.mgr.Vault(ctxT(t), common.HexToAddress(text(t, ctx, `#who`)))
	if err != nil {
		t.Fatal(err)
	}
	state, _ := st.State(ctxT(t))
	mgr := common.HexToAddress(tn.n.chain.info.DelegationManager)
	abi := contracts.MustGet(contracts.DelegationManager).ABI
	for _, d := range state.Grants[0].Delegations {
		data, _ := abi.Pack("disabledDelegations", common.HexToHash(d.Hash))
		out, err := tn.n.chain.client.CallContract(ctxT(t), ethereum.CallMsg{To: &mgr, Data: data}, nil)
		if err != nil || new(big.Int).SetBytes(out).Sign() == 0 {
			t.Fatalf("delegation %s is not disabled on-chain (%v)", d.Hash, err)
		}
	}
}

// mockWallet is an EIP-1193 provider for the page, backed by key: what a
// browser wallet answers to the requests the dashboard makes.
func mockWallet(key string) string {
	return fmt.Sprintf(`(() => {
  const rpc = () => new ethers.JsonRpcProvider(location.origin + "/v1/chain/rpc", 1337, { staticNetwork: true, batchMaxCount: 1 });
  window.ethereum = { request: async ({ method, params }) => {
    const w = new ethers.Wallet(%q, rpc());
    switch (method) {
      case "eth_requestAccounts": case "eth_accounts": return [w.address.toLowerCase()];
      case "personal_sign": return w.signMessage(ethers.getBytes(params[0]));
      case "eth_signTypedData_v4": { const t = JSON.parse(params[1]); delete t.types.EIP712Domain; return w.signTypedData(t.domain, t.types, t.message); }
      case "eth_sendTransaction": return (await w.sendTransaction({ to: params[0].to, data: params[0].data })).hash;
      case "eth_chainId": return "0x539";
      case "wallet_grantPermissions": {
        if (!window.mock7715) { const e = new Error("the method wallet_grantPermissions does not exist"); e.code = -32601; throw e; }
        // What an ERC-7715 wallet returns: a delegation from the account to
        // the signer, with the periodic allowance as a caveat, encoded.
        const p = params[0], c = window.mock7715;
        const pad = (n) => ethers.zeroPadValue(ethers.toBeHex(n), 32);
        const terms = ethers.concat([p.permission.data.tokenAddress, pad(p.permission.data.periodAmount), pad(p.permission.data.periodDuration), pad(Math.floor(Date.now() / 1000) - 60)]);
        const d = { delegate: p.signer.data.address, delegator: w.address, authority: "0x" + "f".repeat(64),
          caveats: [{ enforcer: c.enforcer, terms: ethers.hexlify(terms), args: "0x" }], salt: 77n };
        const sig = await w.signTypedData({ name: "DelegationManager", version: "1", chainId: 1337, verifyingContract: c.manager },
          { Delegation: [{ name: "delegate", type: "address" }, { name: "delegator", type: "address" }, { name: "authority", type: "bytes32" },
            { name: "caveats", type: "Caveat[]" }, { name: "salt", type: "uint256" }], Caveat: [{ name: "enforcer", type: "address" }, { name: "terms", type: "bytes" }] }, d);
        const context = ethers.AbiCoder.defaultAbiCoder().encode(
          ["tuple(address,address,bytes32,tuple(address,bytes,bytes)[],uint256,bytes)[]"],
          [[[d.delegate, d.delegator, d.authority, d.caveats.map((x) => [x.enforcer, x.terms, x.args]), d.salt, sig]]]);
        return [{ ...p, context, signerMeta: { delegationManager: c.manager } }];
      }
    }
    throw new Error("mock wallet: " + method);
  } };
})(); true`, key)
}

// TestDashboardWalletGrant: with a browser wallet whose account is already
// a smart account (wallets make that switch in their own screens), the
// dashboard has the wallet sign the default delegations as typed data, and
// revoking has the wallet disable them on-chain.
func TestDashboardWalletGrant(t *testing.T) {
	ctx := browser(t)
	o := testOptions(t)
	o.ChainRPC, o.ChainID, o.DevChainRPC, o.DevChainBlockInterval, o.ChainPoll = chainDev, 0, "", time.Second, 200*time.Millisecond
	tn := startNode(t, o, nil)
	key, _ := crypto.GenerateKey()
	owner := crypto.PubkeyToAddress(key.PublicKey)
	step := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		sctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		if err := chromedp.Do(sctx, actions...); err != nil {
			t.Fatalf("%s: %v\ngrants %q %q\npending %q\nsign-in %q who %q balances %q", what, err, text(t, ctx, `#grants-card`), text(t, ctx, `#grant-msg`), text(t, ctx, `#cmd-error`), text(t, ctx, `#signin-error`), text(t, ctx, `#who`), text(t, ctx, `#balances`))
		}
	}
	// A wallet extension injects its provider before the page loads; here
	// it comes after, so the page's wallet button is shown by hand.
	step("sign in with the wallet", chromedp.Navigate("http://"+tn.addr+"/"), chromedp.WaitVisible(`#btn-burner:not([disabled])`),
		script(mockWallet(fmt.Sprintf("0x%x", crypto.FromECDSA(key)))),
		script(`document.querySelector("#btn-wallet").classList.remove("hidden"); true`), chromedp.Click(`#btn-wallet`),
		chromedp.WaitVisible(`//p[@id="balances-account" and contains(., "10 dETH")]`))
	step("refused before the account is a smart account", chromedp.Click(`#btn-grant-wallet`),
		chromedp.WaitVisible(`//p[@id="grant-msg" and contains(., "not a smart account yet")]`))
	if err := delegation.Upgrade(ctxT(t), tn.n.chain.client, key, common.HexToAddress(tn.n.chain.info.DeleGator), nil); err != nil {
		t.Fatal(err)
	}
	step("grant with the wallet", chromedp.Click(`#btn-grant-wallet`), chromedp.WaitVisible(`#grants li[data-status=active]`))
	step("revoke", script(`window.confirm = () => true; true`), chromedp.Click(`#grants li[data-status=active] button`),
		chromedp.WaitVisible(`//p[@id="grant-msg" and contains(., "Disabled on-chain too (2 delegations)")]`))
	v, err := tn.n.mgr.Vault(ctxT(t), owner)
	if err != nil {
		t.Fatal(err)
	}
	st, _ := v.State(ctxT(t))
	if len(st.Grants) != 1 || st.Grants[0].Status != protocol.GrantRevoked {
		t.Fatalf("grants %+v", st.Grants)
	}
	// A wallet with ERC-7715 grants its own permission instead.
	info := tn.n.chain.info
	step("grant with the wallet's ERC-7715", script(fmt.Sprintf(`window.mock7715 = { enforcer: %q, manager: %q }; true`,
		info.Enforcers[contracts.ERC20PeriodTransferEnforcer], info.DelegationManager)),
		chromedp.Click(`#btn-grant-wallet`), chromedp.WaitVisible(`#grants li[data-status=active]`))
	if g := text(t, ctx, `#grants li[data-status=active]`); !strings.Contains(g, "spend up to 10,000 dUSD a day") {
		t.Fatalf("the ERC-7715 grant shows as %q", g)
	}
}

// TestDashboardFormSaysWhatIsWrong: on the dev chain, the trigger form
// shows a swap's quote and the least it signs for before Create; after
// editing a notify trigger and cancelling, the swap's own fields are back;
// a threshold a price feed can never show, a threshold beyond any price
// and an amount beyond the account's are refused in the form, in the
// token's own units, and Create says it saved nothing; after sign-out the
// old vault's grants are gone and the grant button says to sign in.
func TestDashboardFormSaysWhatIsWrong(t *testing.T) {
	ctx := browser(t)
	o := testOptions(t)
	o.ChainRPC, o.ChainID, o.DevChainRPC, o.DevChainBlockInterval, o.ChainPoll = chainDev, 0, "", time.Second, 200*time.Millisecond
	tn := startNode(t, o, nil)
	if err := tn.n.chain.dev.SetFeed(context.Background(), "ETH/USD", 2600); err != nil {
		t.Fatal(err)
	}
	step := func(what string, actions ...chromedp.Action[chromedp.Void]) {
		t.Helper()
		sctx, cancel := context.WithTimeout(ctx, time.Minute)
		defer cancel()
		if err := chromedp.Do(sctx, actions...); err != nil {
			t.Fatalf("%s: %v\nform %q\npending %q", what, err, text(t, ctx, `#create`), text(t, ctx, `#cmd-error`))
		}
	}
	step("sign in and be funded", chromedp.Navigate("http://"+tn.addr+"/"), chromedp.WaitVisible(`#btn-burner:not([disabled])`),
		chromedp.Click(`#btn-burner`), chromedp.WaitVisible(`//p[@id="balances-account" and contains(., "25,000 dUSD")]`))
	step("the quote", chromedp.WaitVisible(`#p-amount`), chromedp.SetValue(`#create input[name=threshold]`, "2500"),
		chromedp.SendKeys(`#p-amount`, "0"),
		chromedp.WaitVisible(`//p[@id="quote" and contains(., "At the price now") and contains(., "price impact") and contains(., "You sign for at least")]`))
	hook := newWebhook(t)
	step("an alert webhook", chromedp.SetValue(`#alerts-form input[name=url]`, hook.url), chromedp.Click(`#btn-alerts`),
		chromedp.WaitVisible(`#alerts-secret-value`))
	step("a notify trigger, edited, then cancelled", chromedp.SetValue(`#f-action`, "notify"), chromedp.SetValue(`#create input[name=threshold]`, "2500"),
		chromedp.Click(`#btn-create`), chromedp.WaitVisible(`#triggers tbody tr`),
		chromedp.Click(`#triggers tbody tr button.secondary`), chromedp.WaitVisible(`#btn-cancel-edit`),
		chromedp.Click(`#btn-cancel-edit`), chromedp.WaitVisible(`#p-amount`))
	for _, c := range []struct{ what, threshold, amount, says string }{
		{"a threshold below 0 on a feed", "-5", "250", "its threshold must be above 0"},
		{"a threshold beyond any price", "1e300", "250", "must be below"},
		{"more than the account holds", "2500", "1000000000", "your account holds 25,000 dUSD"},
	} {
		step(c.what, chromedp.SetValue(`#create input[name=threshold]`, c.threshold), chromedp.SetValue(`#p-amount`, c.amount),
			chromedp.Click(`#btn-create`),
			chromedp.WaitVisible(`//form[@id="create"]//p[contains(@class,"msg") and contains(., "`+c.says+`")]`),
			chromedp.WaitVisible(`//*[@id="cmd-error" and contains(., "was not saved")]`))
	}
	if n := text(t, ctx, `#triggers tbody`); strings.Count(n, "\n") > 1 {
		t.Fatalf("a refused form saved a trigger: %q", n)
	}
	step("sign out", chromedp.Click(`#btn-signout`), chromedp.WaitVisible(`#btn-burner`))
	if g := text(t, ctx, `#grants`); g != "" {
		t.Fatalf("after sign-out the old vault's grants still show: %q", g)
	}
}

// TestDashboardTellsARestore: the operator restores a vault's triggers in
// place while its owner's dashboard is open: the page shows the trigger as
// it was, and says what the restore did.
func TestDashboardTellsARestore(t *testing.T) {
	ctx := browser(t)
	srv := s3test.Start(t)
	o := testOptions(t)
	o.Backup, o.BackupEvery, o.AdminToken = srv.URL+"/spells/dash", 50*time.Millisecond, "adm1n"
	tn := startNode(t, o, nil)
	tn.mustPublish(t, "ETH/USD", 2600)
	signInAndCreate(t, ctx, "http://"+tn.addr+"/")
	files, _ := filepath.Glob(filepath.Join(o.DataDir, "vaults", "*", "0x*.db"))
	if len(files) != 1 {
		t.Fatalf("%d vault files, want the page's one", len(files))
	}
	vault := strings.TrimSuffix(filepath.Base(files[0]), ".db")
	var before uint64
	last := ""
	waitForOr(t, "the new trigger shipped", func() bool {
		code, body := adminPost(t, tn, "/v1/admin/restore?dry=1&vault="+vault, "adm1n")
		var p struct{ Version uint64 }
		_ = json.Unmarshal([]byte(body), &p)
		before, last = p.Version, fmt.Sprint(code, " ", body)
		return code == http.StatusOK && p.Version >= 1 // the vault's creation is version 0
	}, func() string { return last })
	tn.mustPublish(t, "ETH/USD", 2400) // it fires its one time: done
	if err := chromedp.Do(within(t, ctx), chromedp.WaitVisible(`#intents li`)); err != nil {
		t.Fatalf("no intent shown after the crossing: %v", err)
	}
	code, body := adminPost(t, tn, fmt.Sprintf("/v1/admin/restore?mode=in_place&vault=%s&version=%d", vault, before), "adm1n")
	if code != http.StatusOK {
		t.Fatalf("restore in place: %d %s", code, body)
	}
	if err := chromedp.Do(within(t, ctx), chromedp.WaitVisible(`#notice`)); err != nil {
		t.Fatalf("no notice after the restore: %v", err)
	}
	if n := text(t, ctx, `#notice`); !strings.Contains(n, fmt.Sprintf("Restored to version %d", before)) || !strings.Contains(n, "changed") {
		t.Fatalf("the notice after the restore: %q", n)
	}
	if rows := rowsText(t, ctx); !strings.Contains(rows, "active") {
		t.Fatalf("after the restore the trigger table shows %q", rows)
	}
}

// shortAddr is an address as the page shortens it.
func shortAddr(a string) string { return a[:6] + "…" + a[len(a)-4:] }
