package notify

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/spells-dev/spells/internal/clock"
	"github.com/spells-dev/spells/protocol"
)

// receiver is a webhook endpoint for tests: it answers with the codes it
// is given in turn (then 200), and keeps what it received.
type receiver struct {
	mu    sync.Mutex
	codes []int
	got   []received
	srv   *httptest.Server
}

type received struct {
	id, sig string
	body    []byte
}

func newReceiver(t *testing.T, codes ...int) *receiver {
	r := &receiver{codes: codes}
	r.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		b, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.got = append(r.got, received{id: req.Header.Get("X-Spells-Alert"), sig: req.Header.Get("X-Spells-Signature"), body: b})
		code := http.StatusOK
		if len(r.codes) > 0 {
			code, r.codes = r.codes[0], r.codes[1:]
		}
		r.mu.Unlock()
		if code >= 300 && code < 400 {
			w.Header().Set("Location", "http://example.com/elsewhere")
		}
		w.WriteHeader(code)
		_, _ = w.Write([]byte("answer " + strconv.Itoa(code)))
	}))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *receiver) received() []received {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]received(nil), r.got...)
}

// results collects what a Notifier posts back.
type results struct {
	mu  sync.Mutex
	got []*Result
	ch  chan struct{}
}

func newResults() *results { return &results{ch: make(chan struct{}, 100)} }

func (rs *results) post(_ string, r *Result) {
	rs.mu.Lock()
	rs.got = append(rs.got, r)
	rs.mu.Unlock()
	rs.ch <- struct{}{}
}

// wait waits for n results and returns them all.
func (rs *results) wait(t *testing.T, n int) []*Result {
	t.Helper()
	for {
		rs.mu.Lock()
		got := len(rs.got)
		rs.mu.Unlock()
		if got >= n {
			break
		}
		select {
		case <-rs.ch:
		case <-time.After(10 * time.Second):
			t.Fatalf("%d results after 10s; want %d", got, n)
		}
	}
	rs.mu.Lock()
	defer rs.mu.Unlock()
	return append([]*Result(nil), rs.got...)
}

func start(t *testing.T, cfg Config) *Notifier {
	n := New(cfg)
	n.Start()
	t.Cleanup(n.Close)
	return n
}

func job(url, id string) Job {
	return Job{Vault: "0x00000000000000000000000000000000000000aa", Settings: protocol.AlertSettings{Webhook: &protocol.WebhookChannel{URL: url, Secret: "s3cret"}},
		Alert: protocol.Alert{ID: id, Event: id, Kind: protocol.AlertTriggerFired, Title: "dip fired", At: 1, Channel: protocol.ChannelWebhook, Status: protocol.AlertPending}}
}

// TestWebhookSignedAndRetried: a webhook that answers 500 twice gets the
// alert a third time; each try carries the alert's id and a signature a
// receiver can check; the vault hears of each try.
func TestWebhookSignedAndRetried(t *testing.T) {
	rcv := newReceiver(t, 500, 503)
	rs := newResults()
	n := start(t, Config{AllowPrivate: true, Post: rs.post, RetryBase: 10 * time.Millisecond})
	n.Send(job(rcv.srv.URL, "a-1"))
	got := rs.wait(t, 3)
	if got[0].Status != protocol.AlertPending || got[1].Status != protocol.AlertPending || got[2].Status != protocol.AlertDelivered || got[2].Attempts != 3 {
		t.Fatalf("results: %+v %+v %+v", got[0], got[1], got[2])
	}
	if !strings.Contains(got[0].Err, "500") {
		t.Fatalf("first try's error %q does not name the answer", got[0].Err)
	}
	for _, r := range rcv.received() {
		if r.id != "a-1" {
			t.Fatalf("X-Spells-Alert %q", r.id)
		}
		ts, mac, ok := strings.Cut(strings.TrimPrefix(r.sig, "t="), ",v1=")
		if !ok {
			t.Fatalf("signature header %q", r.sig)
		}
		h := hmac.New(sha256.New, []byte("s3cret"))
		h.Write([]byte(ts + "."))
		h.Write(r.body)
		if hex.EncodeToString(h.Sum(nil)) != mac {
			t.Fatal("the signature does not verify under the vault's secret")
		}
		var p protocol.WebhookPayload
		if err := json.Unmarshal(r.body, &p); err != nil || p.Vault != "0x00000000000000000000000000000000000000AA" || p.Alert.Title != "dip fired" {
			t.Fatalf("payload %s: %v", r.body, err)
		}
	}
}

// TestWebhookRefusals: a redirect is not followed, a 410 and a 400 are
// given up at once, and a webhook that never succeeds is given up after
// the last try; none of them is tried more than that.
func TestWebhookRefusals(t *testing.T) {
	for _, c := range []struct {
		name  string
		codes []int
		tries int
		want  string
	}{
		{"redirect", []int{302}, 1, "redirect"},
		{"gone", []int{410}, 1, "410"},
		{"bad request", []int{400}, 1, "refused for good"},
		{"always 500", []int{500, 500, 500}, 3, "given up after 3 tries"},
	} {
		t.Run(c.name, func(t *testing.T) {
			rcv := newReceiver(t, c.codes...)
			rs := newResults()
			n := start(t, Config{AllowPrivate: true, Post: rs.post, RetryBase: 5 * time.Millisecond, MaxAttempts: 3})
			n.Send(job(rcv.srv.URL, "a-"+c.name))
			got := rs.wait(t, c.tries)
			last := got[len(got)-1]
			if last.Status != protocol.AlertFailed || !strings.Contains(last.Err, c.want) {
				t.Fatalf("last result %+v; want failed, saying %q", last, c.want)
			}
			if n := len(rcv.received()); n != c.tries {
				t.Fatalf("the webhook was tried %d times; want %d", n, c.tries)
			}
			n.mu.Lock()
			waiting := len(n.waiting)
			n.mu.Unlock()
			if waiting != 0 || n.retries.Len() != 0 {
				t.Fatalf("a try is still scheduled after the alert was given up (%d waiting, %d scheduled)", waiting, n.retries.Len())
			}
		})
	}
}

// TestWebhookGuard: a webhook on loopback is refused unless the node
// allows private addresses, whether it is named by address or by a name
// that resolves there; URLs are checked when set.
func TestWebhookGuard(t *testing.T) {
	rcv := newReceiver(t)
	rs := newResults()
	n := start(t, Config{Post: rs.post, RetryBase: time.Millisecond})
	n.Send(job(rcv.srv.URL, "a-ip"))
	n.Send(job(strings.Replace(rcv.srv.URL, "127.0.0.1", "localhost", 1), "a-name"))
	for _, r := range rs.wait(t, 2) {
		if r.Status != protocol.AlertFailed || !strings.Contains(r.Err, "--alerts-allow-private") {
			t.Fatalf("a loopback webhook: %+v", r)
		}
	}
	if len(rcv.received()) != 0 {
		t.Fatal("a loopback webhook was reached")
	}
	for _, c := range []struct {
		url, want string
	}{
		{"ftp://example.com/x", "https://"},
		{"https://", "no host"},
		{"https://user:pw@example.com/", "user or password"},
		{"http://127.0.0.1:8080/hook", "not public"},
		{"http://10.1.2.3/hook", "not public"},
		{"http://169.254.169.254/latest/meta-data", "not public"},
		{"http://[::1]/hook", "not public"},
		{"http://localhost/hook", "not public"},
		{"http://100.64.0.1/hook", "not public"},
	} {
		if err := CheckURL(c.url, false); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("CheckURL(%q) = %v; want it to say %q", c.url, err, c.want)
		}
	}
	if err := CheckURL("https://hooks.example.com/spells?x=1", false); err != nil {
		t.Errorf("a public webhook refused: %v", err)
	}
	if err := CheckURL("http://127.0.0.1:8080/hook", true); err != nil {
		t.Errorf("a loopback webhook refused with private addresses allowed: %v", err)
	}
	if !errors.Is(CheckURL("http://192.168.1.1/", false), ErrPrivate) {
		t.Error("CheckURL's refusal of a private address is not ErrPrivate")
	}
}

// TestDeadWebhookSlowsNoOne: a webhook that never answers holds one
// worker for the timeout, however many alerts wait for it; another
// vault's alert is delivered meanwhile.
func TestDeadWebhookSlowsNoOne(t *testing.T) {
	hang := make(chan struct{})
	dead := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-hang:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(dead.Close)
	t.Cleanup(func() { close(hang) })
	rcv := newReceiver(t)
	rs := newResults()
	n := start(t, Config{AllowPrivate: true, Post: rs.post, RetryBase: time.Hour, Timeout: 2 * time.Second, PerMinute: 1000})
	for i := 0; i < 2*workers; i++ {
		n.Send(job(dead.URL, "dead-"+strconv.Itoa(i)))
	}
	n.Send(job(rcv.srv.URL, "live"))
	// The live alert's outcome comes first: the dead webhook's first try
	// cannot end before its 2 s timeout.
	got := rs.wait(t, 1)
	if got[0].Alert != "live" || got[0].Status != protocol.AlertDelivered {
		t.Fatalf("first result %+v; want the live webhook's delivery", got[0])
	}
	got = rs.wait(t, 2)
	if r := got[1]; r.Status != protocol.AlertPending || !strings.Contains(r.Err, "no answer within 2s") {
		t.Fatalf("a dead webhook's try: %+v", r)
	}
}

// TestAlertStormCoalesced: past a vault's limit in a minute its alerts are
// not sent one by one: each is told coalesced at once, and one digest
// naming them goes at the minute's end. Another vault keeps its own
// limit; retries do not count against it.
func TestAlertStormCoalesced(t *testing.T) {
	rcv := newReceiver(t)
	rs := newResults()
	clk := clock.NewFake(time.Unix(1_800_000_000, 0))
	n := start(t, Config{AllowPrivate: true, Post: rs.post, PerMinute: 3, Clock: clk})
	for i := 0; i < 8; i++ {
		n.Send(job(rcv.srv.URL, "storm-"+strconv.Itoa(i)))
	}
	other := job(rcv.srv.URL, "other")
	other.Vault = "0x00000000000000000000000000000000000000bb"
	n.Send(other)
	got := rs.wait(t, 9)
	count := map[string]int{}
	for _, r := range got {
		count[r.Status]++
	}
	if count[protocol.AlertDelivered] != 4 || count[protocol.AlertCoalesced] != 5 {
		t.Fatalf("outcomes %v; want 4 delivered (3 of the storm, the other vault's) and 5 coalesced", count)
	}
	for len(rcv.received()) < 4 {
		time.Sleep(time.Millisecond)
	}
	clk.Advance(time.Minute)
	got = rs.wait(t, 10)
	if d := got[9]; d.Status != protocol.AlertDelivered || !strings.HasPrefix(d.Alert, "digest-") {
		t.Fatalf("after the minute: %+v; want the digest delivered", d)
	}
	all := rcv.received()
	var p protocol.WebhookPayload
	if err := json.Unmarshal(all[len(all)-1].body, &p); err != nil || p.Alert.Kind != protocol.AlertDigest ||
		p.Alert.Title != "5 more alerts within a minute" || !strings.Contains(p.Alert.Detail, "dip fired") {
		t.Fatalf("digest %s: %v", all[len(all)-1].body, err)
	}
	// A new minute: the vault's alerts go alone again.
	n.Send(job(rcv.srv.URL, "after"))
	if got := rs.wait(t, 11); got[10].Status != protocol.AlertDelivered {
		t.Fatalf("after the storm: %+v", got[10])
	}
}
