package main

import (
	"regexp"
	"strconv"
	"syscall"
	"testing"
	"time"

	"github.com/spells-dev/spells/protocol/client"
)

// TestSIGKILLAfterAMassCrossing: a tick crosses the triggers of many
// hibernated vaults; the node makes their firings durable in its firing
// journal (every intent counted) and is killed with SIGKILL while its
// vaults are still applying them, one file slot at a time. After the
// restart every vault holds exactly one intent: the journal's records are
// applied by the vaults that had not, skipped by those that had, and the
// signal the node replays at start (its newest accepted value) fires
// nothing twice.
func TestSIGKILLAfterAMassCrossing(t *testing.T) {
	const vaults = 150
	data := t.TempDir()
	args := []string{"-max-open-vaults", "1", "-new-vaults-per-ip", "0", "-new-vaults-per-minute", "0", "-signin-rate-per-ip", "0"}
	p := startProc(t, data, args...)
	p.publish(t, "ETH/USD", 2600)
	wallets := make([]*client.Wallet, vaults)
	for i := range wallets {
		wallets[i], _ = client.NewWallet()
		s := p.signIn(t, wallets[i])
		s.create(t, dip(2500))
		s.c.CloseNow()
	}
	// A clean stop and start: every vault hibernated, read by the scan.
	if err := p.stop(syscall.SIGTERM, 30*time.Second); err != nil {
		t.Fatal(err)
	}
	p = startProc(t, data, args...)
	p.publish(t, "ETH/USD", 2400)
	waitFor(t, "every intent durable", func() bool { return p.metric(t, "spells_intents_total") == vaults })
	applied := p.metric(t, "spells_firing_journal_applied_total")
	p.kill()
	t.Logf("killed with %g of %d firings applied to their vault files", applied, vaults)

	p = startProc(t, data, args...)
	line := p.waitLog(`firing journal read`, 30*time.Second)
	replayed, _ := strconv.Atoi(regexp.MustCompile(`"records":(\d+)`).FindStringSubmatch(line)[1])
	if replayed == 0 {
		t.Fatalf("the journal held no records after the kill: %s", line)
	}
	for i, w := range wallets {
		s := p.signIn(t, w)
		if n := len(s.mirror.Intents); n != 1 {
			t.Fatalf("vault %d holds %d intents after the kill and the replay, want 1", i, n)
		}
		for _, tr := range s.mirror.Triggers {
			if tr.Fires != 1 {
				t.Fatalf("vault %d: its trigger is %+v, want fired once", i, tr)
			}
		}
		s.c.CloseNow()
	}
	if n := p.metric(t, "spells_firing_journal_pending"); n != 0 {
		t.Fatalf("%g journal records still pending", n)
	}
	// The intents are the journal's: none was made again by the replayed
	// signal (which would give each vault a new intent in place of the
	// one counted before the kill).
	if n := p.metric(t, "spells_intents_total"); n != 0 {
		t.Fatalf("the restarted node recorded %g new intents", n)
	}
	// (applied was read a moment before the kill: a few more may have
	// been applied since.)
	if n := p.metric(t, "spells_firing_journal_applied_total"); n < 1 || n+applied > vaults {
		t.Fatalf("%g firings applied after the restart, %g before; %d fired", n, applied, vaults)
	}
}
