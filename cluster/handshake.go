package cluster

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"

	"github.com/coder/websocket"
)

// A link's handshake: an HMAC-SHA256 challenge-response both ways under a
// key derived from the cluster secret.

// proof is HMAC-SHA256 under the cluster secret over who proves (role),
// the other end's challenge, and both ids.
func (l *Links) proof(role, challenge, dialer, listener string) string {
	m := hmac.New(sha256.New, l.cfg.Secret)
	fmt.Fprintf(m, "spells node link v1\x00%s\x00%s\x00%s\x00%s", role, challenge, dialer, listener)
	return hex.EncodeToString(m.Sum(nil))
}

func readHello(ctx context.Context, ws *websocket.Conn) (hello, error) {
	var h hello
	typ, data, err := ws.Read(ctx)
	if err != nil {
		return h, err
	}
	if typ != websocket.MessageText || json.Unmarshal(data, &h) != nil || h.Node == "" && h.Proof == "" {
		return h, errors.New("not a node link handshake")
	}
	return h, nil
}

func writeHello(ctx context.Context, ws *websocket.Conn, h hello) error {
	b, _ := json.Marshal(h)
	return ws.Write(ctx, websocket.MessageText, b)
}

// The handshake: the listener sends its id and a challenge; the dialer
// answers with its id, its own challenge and its proof over the
// listener's; the listener answers with its proof over the dialer's.
// Each end has then shown it holds the secret, on a challenge it could
// not have seen before.
func (l *Links) listenerHandshake(ctx context.Context, ws *websocket.Conn) (string, error) {
	ws.SetReadLimit(1 << 10)
	mine := challenge()
	if err := writeHello(ctx, ws, hello{Node: l.me, Challenge: mine}); err != nil {
		return "", err
	}
	h, err := readHello(ctx, ws)
	if err != nil {
		return "", err
	}
	if h.Node == l.me || len(h.Challenge) != 64 {
		return "", errors.New("not a node link handshake")
	}
	if !hmac.Equal([]byte(h.Proof), []byte(l.proof("dialer", mine, h.Node, l.me))) {
		return "", fmt.Errorf("node %q does not hold the cluster secret", h.Node)
	}
	if err := writeHello(ctx, ws, hello{Node: l.me, Proof: l.proof("listener", h.Challenge, h.Node, l.me)}); err != nil {
		return "", err
	}
	return h.Node, nil
}

func (l *Links) dialerHandshake(ctx context.Context, ws *websocket.Conn, peer string) error {
	ws.SetReadLimit(1 << 10)
	h, err := readHello(ctx, ws)
	if err != nil {
		return err
	}
	if h.Node != peer {
		return fmt.Errorf("dialed node %s, reached %q", peer, h.Node)
	}
	mine := challenge()
	if err := writeHello(ctx, ws, hello{Node: l.me, Challenge: mine, Proof: l.proof("dialer", h.Challenge, l.me, peer)}); err != nil {
		return err
	}
	h, err = readHello(ctx, ws)
	if err != nil {
		return err
	}
	if !hmac.Equal([]byte(h.Proof), []byte(l.proof("listener", mine, l.me, peer))) {
		l.m.AuthFailed.Inc()
		return fmt.Errorf("node %s does not hold the cluster secret", peer)
	}
	return nil
}
