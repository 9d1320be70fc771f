package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"time"

	"github.com/spells-dev/spells/protocol"
)

// A chat alert is one call of the Telegram Bot API's sendMessage from the
// node's bot to the vault's chat. The API's address is the operator's
// (--telegram-api, for a stand-in), so it is not held to the webhook's
// address guard; the bot's token is in its path and never in a message a
// vault or a log shows.

// TelegramConfig is the node's bot.
type TelegramConfig struct {
	Token string // the bot's token, from @BotFather
	API   string // the Bot API's base URL (default https://api.telegram.org)
}

var chatID = regexp.MustCompile(`^(-?[0-9]{1,20}|@[A-Za-z][A-Za-z0-9_]{4,31})$`)

// CheckChat says what is wrong with a chat id: a number (a user's or a
// group's, negative for a group) or a public channel's @name.
func CheckChat(id string) error {
	if !chatID.MatchString(id) {
		return errors.New("a Telegram chat id is a number (@userinfobot tells you yours) or a channel's @name")
	}
	return nil
}

// telegramAnswer is what the Bot API answers.
type telegramAnswer struct {
	OK          bool   `json:"ok"`
	ErrorCode   int    `json:"error_code"`
	Description string `json:"description"`
	Parameters  struct {
		RetryAfter int `json:"retry_after"`
	} `json:"parameters"`
}

// messageText is an alert as a chat message (or a mail's body).
func messageText(vault string, a protocol.Alert) string {
	var b strings.Builder
	b.WriteString(a.Title)
	if a.Detail != "" {
		b.WriteString("\n" + a.Detail)
	}
	b.WriteString("\nvault " + vault + ", " + time.UnixMilli(a.At).UTC().Format("2006-01-02 15:04:05 UTC"))
	return b.String()
}

func sendTelegram(ctx context.Context, c *http.Client, tg TelegramConfig, vault string, ch protocol.TelegramChannel, a protocol.Alert) outcome {
	body, _ := json.Marshal(map[string]any{"chat_id": ch.ChatID, "text": "✦ Spells: " + messageText(vault, a), "disable_web_page_preview": true})
	api := strings.TrimSuffix(tg.API, "/")
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, api+"/bot"+tg.Token+"/sendMessage", bytes.NewReader(body))
	if err != nil {
		return outcome{why: "the node's Telegram API address does not parse"}
	}
	req.Header.Set("Content-Type", "application/json")
	res, err := c.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL holds the bot's token
		}
		if isTimeout(err) {
			return outcome{retry: true, why: fmt.Sprintf("the Telegram API did not answer within %s", c.Timeout)}
		}
		return outcome{retry: true, why: "could not reach the Telegram API: " + err.Error()}
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(io.LimitReader(res.Body, 4096))
	var ans telegramAnswer
	_ = json.Unmarshal(raw, &ans)
	switch {
	case res.StatusCode == http.StatusOK && ans.OK:
		return outcome{delivered: true}
	case res.StatusCode == http.StatusTooManyRequests || res.StatusCode >= 500:
		return outcome{retry: true, why: fmt.Sprintf("the Telegram API answered %d %s", res.StatusCode, ans.Description)}
	default:
		why := ans.Description
		if why == "" {
			why = snippet(raw)
		}
		return outcome{why: fmt.Sprintf("Telegram refused the message (%d %s): check the chat id, and that you started a chat with the bot", res.StatusCode, why)}
	}
}
