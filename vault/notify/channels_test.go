package notify

import (
	"net"
	"strings"
	"testing"
	"time"

	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/vault/notify/bottest"
	"github.com/spells-dev/spells/vault/notify/smtptest"
)

func chatJob(chat, id string) Job {
	j := job("", id)
	j.Settings = protocol.AlertSettings{Telegram: &protocol.TelegramChannel{ChatID: chat}}
	j.Alert.Channel = protocol.ChannelTelegram
	return j
}

// TestTelegramChannel: an alert reaches a chat that started the bot; a
// 429 is tried again; a chat that did not start the bot is refused for
// good, saying what to do; the bot's token is never in what the vault is
// told.
func TestTelegramChannel(t *testing.T) {
	api := bottest.Start(t, "123:SECRET", "4242")
	api.Busy(1)
	rs := newResults()
	n := start(t, Config{Post: rs.post, RetryBase: 5 * time.Millisecond, Telegram: TelegramConfig{Token: "123:SECRET", API: api.URL}})
	n.Send(chatJob("4242", "c-1"))
	got := rs.wait(t, 2)
	if got[0].Status != protocol.AlertPending || !strings.Contains(got[0].Err, "429") || got[1].Status != protocol.AlertDelivered {
		t.Fatalf("results %+v %+v", got[0], got[1])
	}
	text := api.Sent()[0].Text
	if !strings.Contains(text, "dip fired") || !strings.Contains(text, "0x00000000000000000000000000000000000000AA") {
		t.Fatalf("the chat got %q", text)
	}
	n.Send(chatJob("999", "c-2"))
	r := rs.wait(t, 3)[2]
	if r.Status != protocol.AlertFailed || !strings.Contains(r.Err, "started a chat with the bot") || strings.Contains(r.Err, "SECRET") {
		t.Fatalf("a chat that did not start the bot: %+v", r)
	}
	// The API gone: tried again, and the error names no token.
	dead := New(Config{Post: rs.post, RetryBase: time.Hour, Telegram: TelegramConfig{Token: "123:SECRET", API: "http://127.0.0.1:1"}})
	dead.Start()
	t.Cleanup(dead.Close)
	dead.Send(chatJob("4242", "c-3"))
	r = rs.wait(t, 4)[3]
	if r.Status != protocol.AlertPending || strings.Contains(r.Err, "SECRET") {
		t.Fatalf("the API unreachable: %+v", r)
	}
	for _, c := range []string{"4242", "-1001234567890", "@spells_alerts"} {
		if err := CheckChat(c); err != nil {
			t.Errorf("CheckChat(%q): %v", c, err)
		}
	}
	for _, c := range []string{"", "abc", "@ab", "12 34", "@x;drop"} {
		if CheckChat(c) == nil {
			t.Errorf("CheckChat(%q) accepted", c)
		}
	}
}

func mailJob(to, id string) Job {
	j := job("", id)
	j.Settings = protocol.AlertSettings{Email: &protocol.EmailChannel{To: to, Confirmed: true}}
	j.Alert.Channel = protocol.ChannelEmail
	j.Alert.Title = "Buy the dip fired\r\nBcc: victim@example.com"
	return j
}

// TestMailChannel: an alert is mailed through a real mail server, its
// id in Message-ID and X-Spells-Alert, its title kept to the subject line
// (no header injection); a confirmation mail carries the code; a server
// that refuses for good fails the alert, one that refuses for now is
// tried again.
func TestMailChannel(t *testing.T) {
	srv := smtptest.Start(t)
	rs := newResults()
	n := start(t, Config{Post: rs.post, RetryBase: 5 * time.Millisecond, SMTP: SMTPConfig{Server: srv.URL(), From: "alerts@spells.example"}})
	n.Send(mailJob("owner@example.org", "m-1:email"))
	if r := rs.wait(t, 1)[0]; r.Status != protocol.AlertDelivered {
		t.Fatalf("mail: %+v", r)
	}
	confirm := mailJob("owner@example.org", "confirm-1:email")
	confirm.Code = "493027"
	n.Send(confirm)
	rs.wait(t, 2)
	ms := srv.Wait(t, 2)
	var m, c smtptest.Message
	for _, x := range ms {
		if x.Header.Get("X-Spells-Alert") == "m-1:email" {
			m = x
		} else {
			c = x
		}
	}
	if m.To != "owner@example.org" || m.Header.Get("X-Spells-Alert") != "m-1:email" || m.Header.Get("Message-ID") != "<m-1:email@spells.example>" {
		t.Fatalf("mail headers %v", m.Header)
	}
	if m.Header.Get("Bcc") != "" || !strings.Contains(m.Header.Get("Subject"), "Bcc: victim@example.com") {
		t.Fatalf("the title broke out of the subject: %v", m.Header)
	}
	if !strings.Contains(m.Body, "0x00000000000000000000000000000000000000AA") {
		t.Fatalf("mail body %q", m.Body)
	}
	if !strings.Contains(c.Body, "Confirmation code: 493027") {
		t.Fatalf("confirmation mail %q", c.Body)
	}

	for _, c := range []struct {
		name, greeting string
		status         string
	}{
		{"refused for good", "554 no mail here", protocol.AlertFailed},
		{"refused for now", "421 try later", protocol.AlertPending},
	} {
		t.Run(c.name, func(t *testing.T) {
			l, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { l.Close() })
			go func() {
				for {
					conn, err := l.Accept()
					if err != nil {
						return
					}
					_, _ = conn.Write([]byte(c.greeting + "\r\n"))
					conn.Close()
				}
			}()
			rs := newResults()
			n := start(t, Config{Post: rs.post, RetryBase: time.Hour, SMTP: SMTPConfig{Server: "smtp://" + l.Addr().String(), From: "alerts@spells.example"}})
			n.Send(mailJob("owner@example.org", "m-x:email"))
			r := rs.wait(t, 1)[0]
			if r.Status != c.status || !strings.Contains(r.Err, "refused") {
				t.Fatalf("%s: %+v", c.greeting, r)
			}
		})
	}
	if CheckAddress("a@b.example") != nil || CheckAddress("a@b.example\r\nBcc: x@y") == nil || CheckAddress("Name <a@b.example>") == nil {
		t.Error("CheckAddress")
	}
}
