package bottest

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"
)

// API is a running stand-in.
type API struct {
	URL   string // what the node's --telegram-api takes
	mu    sync.Mutex
	token string
	chats map[string]bool
	sent  []Message
	busy  int // answers of 429 to give first
}

// Message is one message the bot sent.
type Message struct {
	ChatID string
	Text   string
}

// Start runs a stand-in for the bot with token, whose chats are those
// that started it; it stops when the test ends.
func Start(t testing.TB, token string, chats ...string) *API {
	a := &API{token: token, chats: map[string]bool{}}
	for _, c := range chats {
		a.chats[c] = true
	}
	srv := httptest.NewServer(http.HandlerFunc(a.serve))
	t.Cleanup(srv.Close)
	a.URL = srv.URL
	return a
}

// Busy makes the next n calls answer 429 Too Many Requests.
func (a *API) Busy(n int) {
	a.mu.Lock()
	a.busy = n
	a.mu.Unlock()
}

func (a *API) serve(w http.ResponseWriter, r *http.Request) {
	raw, _ := io.ReadAll(r.Body)
	var m struct {
		ChatID string `json:"chat_id"`
		Text   string `json:"text"`
	}
	_ = json.Unmarshal(raw, &m)
	a.mu.Lock()
	defer a.mu.Unlock()
	w.Header().Set("Content-Type", "application/json")
	switch {
	case a.busy > 0:
		a.busy--
		w.WriteHeader(http.StatusTooManyRequests)
		_, _ = w.Write([]byte(`{"ok":false,"error_code":429,"description":"Too Many Requests: retry after 1","parameters":{"retry_after":1}}`))
	case r.Method != http.MethodPost || r.URL.Path != "/bot"+a.token+"/sendMessage":
		w.WriteHeader(http.StatusNotFound)
		_, _ = w.Write([]byte(`{"ok":false,"error_code":404,"description":"Not Found"}`))
	case !a.chats[m.ChatID]:
		w.WriteHeader(http.StatusForbidden)
		_, _ = w.Write([]byte(`{"ok":false,"error_code":403,"description":"Forbidden: bot can't initiate conversation with a user"}`))
	default:
		a.sent = append(a.sent, Message{ChatID: m.ChatID, Text: m.Text})
		_, _ = w.Write([]byte(`{"ok":true,"result":{"message_id":1}}`))
	}
}

// Sent returns the messages sent so far.
func (a *API) Sent() []Message {
	a.mu.Lock()
	defer a.mu.Unlock()
	return append([]Message(nil), a.sent...)
}

// Wait waits until the bot sent at least n messages and returns them.
func (a *API) Wait(t testing.TB, n int) []Message {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		if s := a.Sent(); len(s) >= n {
			return s
		}
		if time.Now().After(deadline) {
			t.Fatalf("the bot sent %d messages after 15s; want %d", len(a.Sent()), n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
