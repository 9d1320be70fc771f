package notify

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/spells-dev/spells/protocol"
)

// A webhook delivery is one POST of a JSON WebhookPayload with these
// headers (PROTOCOL.md §"Alerts"):
//
//	X-Spells-Alert: the alert's id (a repeat carries the same: drop it)
//	X-Spells-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256 of "<t>.<body>" under the secret>
//
// A receiver recomputes the HMAC, compares in constant time, and refuses
// a t too far from its clock (a replayed request).

const (
	connectTimeout = 5 * time.Second
	// defaultTimeout bounds one try, answer included (Config.Timeout).
	defaultTimeout = 10 * time.Second
	// answerLimit is what is read of an answer's body (to report it).
	answerLimit = 512
)

// Sign returns the X-Spells-Signature value for body at t.
func Sign(secret string, t time.Time, body []byte) string {
	ts := strconv.FormatInt(t.Unix(), 10)
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(ts))
	mac.Write([]byte{'.'})
	mac.Write(body)
	return "t=" + ts + ",v1=" + hex.EncodeToString(mac.Sum(nil))
}

// outcome is what one try came to.
type outcome struct {
	delivered bool
	retry     bool   // worth another try (a timeout, a 5xx, 408, 429, no connection)
	gone      bool   // the destination ended for good (a push subscription the service dropped)
	why       string // what went wrong, to show the owner
}

// newClient is the webhooks' HTTP client: redirects are not followed (a
// webhook answers where it was set up, and a redirect could lead past
// the address guard's first answer), and every connection is guarded.
func newClient(allowPrivate bool, timeout time.Duration) *http.Client {
	tr := &http.Transport{
		DialContext:           dialer(allowPrivate).DialContext,
		TLSHandshakeTimeout:   connectTimeout,
		ResponseHeaderTimeout: timeout,
		MaxIdleConnsPerHost:   2,
		IdleConnTimeout:       30 * time.Second,
	}
	return &http.Client{
		Transport:     tr,
		Timeout:       timeout,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

// postWebhook makes one try at delivering a to the vault's webhook.
func postWebhook(ctx context.Context, c *http.Client, vault string, ch protocol.WebhookChannel, a protocol.Alert, now time.Time) outcome {
	body, err := json.Marshal(protocol.WebhookPayload{Vault: vault, Alert: a})
	if err != nil {
		return outcome{why: "encode the alert: " + err.Error()}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, ch.URL, bytes.NewReader(body))
	if err != nil {
		return outcome{why: "the webhook URL: " + err.Error()}
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "spells-alerts/1")
	req.Header.Set("X-Spells-Alert", a.ID)
	req.Header.Set("X-Spells-Signature", Sign(ch.Secret, now, body))
	res, err := c.Do(req)
	if err != nil {
		switch {
		case errors.Is(err, ErrPrivate):
			return outcome{why: ErrPrivate.Error()}
		case errors.Is(err, context.DeadlineExceeded) || isTimeout(err):
			return outcome{retry: true, why: fmt.Sprintf("no answer within %s", c.Timeout)}
		}
		return outcome{retry: true, why: "could not reach the webhook: " + err.Error()}
	}
	defer res.Body.Close()
	head, _ := io.ReadAll(io.LimitReader(res.Body, answerLimit))
	_, _ = io.Copy(io.Discard, io.LimitReader(res.Body, 64<<10)) // lets the connection be reused
	switch code := res.StatusCode; {
	case code >= 200 && code < 300:
		return outcome{delivered: true}
	case code >= 300 && code < 400:
		return outcome{why: fmt.Sprintf("the webhook answered %d, a redirect to %q: not followed; set the URL it points to", code, res.Header.Get("Location"))}
	case code == http.StatusRequestTimeout || code == http.StatusTooManyRequests || code >= 500:
		return outcome{retry: true, why: fmt.Sprintf("the webhook answered %d %s", code, snippet(head))}
	default:
		return outcome{why: fmt.Sprintf("the webhook answered %d %s: refused for good", code, snippet(head))}
	}
}

func isTimeout(err error) bool {
	var t interface{ Timeout() bool }
	return errors.As(err, &t) && t.Timeout()
}

// snippet is the start of an answer's body, quoted, for the delivery log.
func snippet(b []byte) string {
	b = bytes.TrimSpace(b)
	if len(b) == 0 {
		return "(empty)"
	}
	if len(b) > 120 {
		b = append(b[:120:120], "…"...)
	}
	return strconv.Quote(string(b))
}
