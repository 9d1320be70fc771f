package client

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync"

	"github.com/coder/websocket"

	"github.com/spells-dev/spells/protocol"
)

// DialOptions configure Dial. The zero value works for a non-browser
// client (no Origin header).
type DialOptions struct {
	Origin    string // sent as the Origin header when set
	ReadLimit int64  // default 16 MiB: the largest frame a node sends (PROTOCOL.md §1)
	Buffer    int    // frames buffered from the server (default 4096)
	// HTTPClient makes the upgrade request (default http.DefaultClient);
	// tests use it to shape the socket.
	HTTPClient *http.Client
	// OnMessage, when set, sees each message as read, before it is
	// decoded, on the connection's reading goroutine; returning true
	// consumes it (Next never sees its frames). For a client that wants
	// some frames at a high rate (a live price) with no decoding or
	// hand-off of its own.
	OnMessage func(data []byte) bool
}

// Conn is one WebSocket session with a node. A background goroutine reads
// frames into a buffer; Next, SignIn, Resume and Command consume them. A
// Conn is meant for one goroutine at a time, except Close.
type Conn struct {
	ws        *websocket.Conn
	Challenge protocol.ServerFrame

	frames    chan protocol.ServerFrame
	onMessage func([]byte) bool
	pending   []protocol.ServerFrame
	done      chan struct{}
	closing   chan struct{}
	once      sync.Once
	mu        sync.Mutex
	readErr   error
}

// Dial connects to url (ws://host:port/v1/ws) and reads the challenge.
func Dial(ctx context.Context, url string, opts *DialOptions) (*Conn, error) {
	if opts == nil {
		opts = &DialOptions{}
	}
	h := http.Header{}
	if opts.Origin != "" {
		h.Set("Origin", opts.Origin)
	}
	ws, resp, err := websocket.Dial(ctx, url, &websocket.DialOptions{Subprotocols: []string{protocol.Subprotocol}, HTTPHeader: h, HTTPClient: opts.HTTPClient})
	if err != nil {
		if resp != nil {
			return nil, &DialError{Status: resp.StatusCode, Err: err}
		}
		return nil, fmt.Errorf("dial %s: %w", url, err)
	}
	limit, buf := opts.ReadLimit, opts.Buffer
	if limit <= 0 {
		limit = 16 << 20
	}
	if buf <= 0 {
		buf = 4096
	}
	ws.SetReadLimit(limit)
	c := &Conn{ws: ws, frames: make(chan protocol.ServerFrame, buf), onMessage: opts.OnMessage, done: make(chan struct{}), closing: make(chan struct{})}
	go c.readLoop()
	ch, err := c.Next(ctx)
	if err != nil {
		c.Close()
		return nil, fmt.Errorf("dial %s: read challenge: %w", url, err)
	}
	if ch.Type != protocol.TypeChallenge {
		c.Close()
		return nil, fmt.Errorf("dial %s: first frame is %q, not a challenge", url, ch.Type)
	}
	c.Challenge = ch
	return c, nil
}

// DialError is a refused upgrade, with the HTTP status (403 for a refused
// Origin).
type DialError struct {
	Status int
	Err    error
}

func (e *DialError) Error() string {
	return fmt.Sprintf("websocket upgrade refused with HTTP %d: %v", e.Status, e.Err)
}
func (e *DialError) Unwrap() error { return e.Err }

func (c *Conn) readLoop() {
	defer close(c.done)
	for {
		_, data, err := c.ws.Read(context.Background())
		if err != nil {
			c.mu.Lock()
			c.readErr = err
			c.mu.Unlock()
			close(c.frames)
			return
		}
		if c.onMessage != nil && c.onMessage(data) {
			continue
		}
		frames, _ := protocol.DecodeServerMessage(data) // frames before a malformed one still count
		for _, f := range frames {
			select {
			case c.frames <- f:
			case <-c.closing:
				// Closed by us while the buffer was full: stop reading.
				c.mu.Lock()
				c.readErr = net.ErrClosed
				c.mu.Unlock()
				close(c.frames)
				return
			}
		}
	}
}

func (c *Conn) stopReading() { c.once.Do(func() { close(c.closing) }) }

// Err returns why the connection's reading ended (nil while open).
// websocket.CloseStatus(c.Err()) gives the close code.
func (c *Conn) Err() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.readErr
}

// Next returns the next frame from the server.
func (c *Conn) Next(ctx context.Context) (protocol.ServerFrame, error) {
	if len(c.pending) > 0 {
		f := c.pending[0]
		c.pending = c.pending[1:]
		return f, nil
	}
	select {
	case f, ok := <-c.frames:
		if !ok {
			return protocol.ServerFrame{}, fmt.Errorf("connection closed: %w", c.Err())
		}
		return f, nil
	case <-ctx.Done():
		return protocol.ServerFrame{}, ctx.Err()
	}
}

// await reads frames until match accepts one; the frames it skips stay
// queued for Next, in order.
func (c *Conn) await(ctx context.Context, match func(protocol.ServerFrame) bool) (protocol.ServerFrame, error) {
	var skipped []protocol.ServerFrame
	defer func() { c.pending = append(c.pending, skipped...) }()
	for {
		var f protocol.ServerFrame
		select {
		case ff, ok := <-c.frames:
			if !ok {
				return protocol.ServerFrame{}, fmt.Errorf("connection closed: %w", c.Err())
			}
			f = ff
		case <-ctx.Done():
			return protocol.ServerFrame{}, ctx.Err()
		}
		if match(f) {
			return f, nil
		}
		skipped = append(skipped, f)
	}
}

// Send writes one client frame.
func (c *Conn) Send(ctx context.Context, f protocol.ClientFrame) error {
	b, err := json.Marshal(f)
	if err != nil {
		return fmt.Errorf("encode frame: %w", err)
	}
	return c.SendRaw(ctx, websocket.MessageText, b)
}

// SendRaw writes bytes as one frame, as they are (tests send bad frames).
func (c *Conn) SendRaw(ctx context.Context, typ websocket.MessageType, b []byte) error {
	if err := c.ws.Write(ctx, typ, b); err != nil {
		return fmt.Errorf("send: %w", err)
	}
	return nil
}

// SignIn signs in with w. Nonce and, when empty, Domain and ChainID come
// from the challenge; a fresh delegate is made when p.Delegate is nil. With
// since, the server sends the diffs after that version instead of a
// snapshot. It returns once the server sent ready.
func (c *Conn) SignIn(ctx context.Context, w *Wallet, p SignInParams, since *uint64) (*Session, error) {
	p.Nonce = c.Challenge.Nonce
	if p.Domain == "" && len(c.Challenge.Domains) > 0 {
		p.Domain = c.Challenge.Domains[0]
	}
	if p.ChainID == 0 {
		p.ChainID = c.Challenge.ChainID
	}
	if p.Delegate == nil {
		d, err := protocol.NewDelegate()
		if err != nil {
			return nil, err
		}
		p.Delegate = d
	}
	msg, sig, err := w.SignIn(p)
	if err != nil {
		return nil, err
	}
	if err := c.Send(ctx, protocol.ClientFrame{Type: protocol.TypeSignIn, Message: msg, Signature: sig, Since: since}); err != nil {
		return nil, err
	}
	ready, err := c.awaitReady(ctx)
	if err != nil {
		return nil, err
	}
	return &Session{Vault: ready.Vault, ID: ready.Session, Delegate: p.Delegate, Seq: ready.LastSeq}, nil
}

// Revoke ends every session of w's vault, signed with w (the vault's
// owner): a sign-in message that names protocol.RevokeResource and no
// delegate key, with this socket's nonce. The socket must not be signed
// in. It returns how many sessions ended.
func (c *Conn) Revoke(ctx context.Context, w *Wallet, p SignInParams) (int, error) {
	p.Nonce, p.Delegate = c.Challenge.Nonce, nil
	if p.Domain == "" && len(c.Challenge.Domains) > 0 {
		p.Domain = c.Challenge.Domains[0]
	}
	if p.ChainID == 0 {
		p.ChainID = c.Challenge.ChainID
	}
	if p.Statement == "" {
		p.Statement = "Sign out of every Spells session of this vault."
	}
	m := w.Message(p)
	m.Resources = []string{protocol.RevokeResource}
	text := m.String()
	sig, err := w.Sign(text)
	if err != nil {
		return 0, err
	}
	if err := c.Send(ctx, protocol.ClientFrame{Type: protocol.TypeRevoke, Message: text, Signature: sig}); err != nil {
		return 0, err
	}
	f, err := c.await(ctx, func(f protocol.ServerFrame) bool {
		return f.Type == protocol.TypeRevoked || (f.Type == protocol.TypeError && f.Seq == 0)
	})
	if err != nil {
		return 0, err
	}
	if e := f.Err(); e != nil {
		return 0, e
	}
	return f.Sessions, nil
}

// Resume binds this connection to an existing session, receiving the diffs
// after since (or a snapshot if the node's log no longer reaches back).
func (c *Conn) Resume(ctx context.Context, s *Session, since uint64) error {
	f, err := s.SignResume(c.Challenge.Nonce, since)
	if err != nil {
		return err
	}
	if err := c.Send(ctx, f); err != nil {
		return err
	}
	ready, err := c.awaitReady(ctx)
	if err != nil {
		return err
	}
	if ready.LastSeq > s.Seq {
		s.Seq = ready.LastSeq
	}
	return nil
}

func (c *Conn) awaitReady(ctx context.Context) (protocol.ServerFrame, error) {
	f, err := c.await(ctx, func(f protocol.ServerFrame) bool {
		return f.Type == protocol.TypeReady || (f.Type == protocol.TypeError && f.Seq == 0)
	})
	if err != nil {
		return f, err
	}
	if e := f.Err(); e != nil {
		return f, e
	}
	return f, nil
}

// Command signs op with args as the session's next command, sends it and
// waits for its ack. A refusal is returned as *protocol.Error.
func (c *Conn) Command(ctx context.Context, s *Session, op string, args any) (protocol.ServerFrame, error) {
	f, seq, err := s.SignCommand(op, args)
	if err != nil {
		return protocol.ServerFrame{}, err
	}
	return c.SendCommand(ctx, f, seq)
}

// SendCommand sends a signed command frame and waits for the ack or error
// carrying seq.
func (c *Conn) SendCommand(ctx context.Context, f protocol.ClientFrame, seq uint64) (protocol.ServerFrame, error) {
	if err := c.Send(ctx, f); err != nil {
		return protocol.ServerFrame{}, err
	}
	ack, err := c.await(ctx, func(f protocol.ServerFrame) bool {
		return (f.Type == protocol.TypeAck || f.Type == protocol.TypeError) && f.Seq == seq
	})
	if err != nil {
		return ack, err
	}
	if e := ack.Err(); e != nil {
		return ack, e
	}
	return ack, nil
}

// Close closes the connection normally.
func (c *Conn) Close() error {
	c.stopReading()
	err := c.ws.Close(websocket.StatusNormalClosure, "")
	<-c.done
	if err != nil && !errors.Is(err, net.ErrClosed) {
		return err
	}
	return nil
}

// CloseNow drops the connection without a close handshake.
func (c *Conn) CloseNow() {
	c.stopReading()
	c.ws.CloseNow()
	<-c.done
}
