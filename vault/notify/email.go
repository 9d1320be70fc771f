package notify

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"mime"
	"net"
	"net/mail"
	"net/smtp"
	"net/textproto"
	"net/url"
	"strings"
	"time"

	"github.com/spells-dev/spells/protocol"
)

// A mail alert goes through the node's SMTP server (--smtp), from its
// address (--smtp-from), to the vault's confirmed address. The address is
// confirmed first with a code mailed to it, so a vault cannot make the
// node mail anyone.

// SMTPConfig is the node's mail server.
type SMTPConfig struct {
	Server string // smtp://[user:password@]host:port (STARTTLS when offered) or smtps:// (TLS from the start)
	From   string // the sender's address
}

// ParseSMTP checks the --smtp URL and the sender's address.
func ParseSMTP(server, from string) error {
	u, err := url.Parse(server)
	if err != nil || (u.Scheme != "smtp" && u.Scheme != "smtps") || u.Hostname() == "" || u.Port() == "" {
		return errors.New("--smtp must be smtp://[user:password@]host:port or smtps://…")
	}
	if _, err := mail.ParseAddress(from); err != nil {
		return fmt.Errorf("--smtp-from %q is not a mail address", from)
	}
	return nil
}

// CheckAddress says what is wrong with an alert address.
func CheckAddress(to string) error {
	a, err := mail.ParseAddress(to)
	if err != nil || a.Address != to || strings.ContainsAny(to, "\r\n") {
		return fmt.Errorf("%q is not a mail address (name@example.com)", to)
	}
	return nil
}

// oneLine keeps a header value on one line.
func oneLine(s string) string { return strings.Join(strings.Fields(s), " ") }

// mailMessage is the alert as an RFC 5322 message; code, if set, is the
// address's confirmation code.
func mailMessage(from, to, vault string, a protocol.Alert, code string, now time.Time) []byte {
	subject, body := "Spells: "+a.Title, messageText(vault, a)
	if code != "" {
		subject = "Spells: confirm this address for your vault's alerts"
		body = "Your Spells vault " + vault + " asks to send its alerts to this address.\n\nConfirmation code: " + code +
			"\n\nEnter it under Alerts on your dashboard. If you did not ask for this, ignore this mail: nothing is sent here without it."
	}
	domain := "spells.invalid"
	if _, d, ok := strings.Cut(from, "@"); ok {
		domain = d
	}
	var b strings.Builder
	b.WriteString("From: " + oneLine(from) + "\r\n")
	b.WriteString("To: " + oneLine(to) + "\r\n")
	b.WriteString("Subject: " + mime.QEncoding.Encode("utf-8", oneLine(subject)) + "\r\n")
	b.WriteString("Date: " + now.UTC().Format(time.RFC1123Z) + "\r\n")
	b.WriteString("Message-ID: <" + oneLine(a.ID) + "@" + domain + ">\r\n")
	b.WriteString("X-Spells-Alert: " + oneLine(a.ID) + "\r\n")
	b.WriteString("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Transfer-Encoding: 8bit\r\n\r\n")
	b.WriteString(strings.ReplaceAll(strings.ReplaceAll(body, "\r", ""), "\n", "\r\n") + "\r\n")
	return []byte(b.String())
}

// sendMail makes one try at mailing msg to to.
func sendMail(ctx context.Context, cfg SMTPConfig, timeout time.Duration, to string, msg []byte) outcome {
	u, err := url.Parse(cfg.Server)
	if err != nil {
		return outcome{why: "the node's --smtp does not parse"}
	}
	deadline := time.Now().Add(timeout)
	d := &net.Dialer{Timeout: connectTimeout, Deadline: deadline}
	var conn net.Conn
	if u.Scheme == "smtps" {
		conn, err = (&tls.Dialer{NetDialer: d, Config: &tls.Config{ServerName: u.Hostname()}}).DialContext(ctx, "tcp", u.Host)
	} else {
		conn, err = d.DialContext(ctx, "tcp", u.Host)
	}
	if err != nil {
		return outcome{retry: true, why: "could not reach the node's mail server: " + err.Error()}
	}
	defer conn.Close()
	_ = conn.SetDeadline(deadline)
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	c, err := smtp.NewClient(conn, u.Hostname())
	if err != nil {
		return smtpOutcome("greeting", err)
	}
	defer c.Close()
	if err := c.Hello("spells"); err != nil {
		return smtpOutcome("HELO", err)
	}
	if ok, _ := c.Extension("STARTTLS"); ok && u.Scheme == "smtp" {
		if err := c.StartTLS(&tls.Config{ServerName: u.Hostname()}); err != nil {
			return smtpOutcome("STARTTLS", err)
		}
	}
	if u.User != nil {
		pw, _ := u.User.Password()
		if err := c.Auth(smtp.PlainAuth("", u.User.Username(), pw, u.Hostname())); err != nil {
			return smtpOutcome("AUTH", err)
		}
	}
	if err := c.Mail(cfg.From); err != nil {
		return smtpOutcome("MAIL FROM", err)
	}
	if err := c.Rcpt(to); err != nil {
		return smtpOutcome("RCPT TO", err)
	}
	w, err := c.Data()
	if err != nil {
		return smtpOutcome("DATA", err)
	}
	if _, err := w.Write(msg); err != nil {
		return smtpOutcome("the message", err)
	}
	if err := w.Close(); err != nil {
		return smtpOutcome("the message", err)
	}
	_ = c.Quit()
	return outcome{delivered: true}
}

// smtpOutcome reads a mail server's refusal: 4xx is tried again, 5xx is
// final; anything else (a dropped connection) is tried again.
func smtpOutcome(step string, err error) outcome {
	var te *textproto.Error
	if errors.As(err, &te) {
		why := fmt.Sprintf("the mail server refused %s: %d %s", step, te.Code, oneLine(te.Msg))
		return outcome{retry: te.Code < 500, why: why}
	}
	if isTimeout(err) {
		return outcome{retry: true, why: "the mail server did not answer at " + step}
	}
	return outcome{retry: true, why: "the mail server at " + step + ": " + err.Error()}
}
