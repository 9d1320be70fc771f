package chain

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	neturl "net/url"
	"strings"
	"time"

	"github.com/ethereum/go-ethereum"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/ethclient"
	"github.com/ethereum/go-ethereum/rpc"
)

// Client is a connection to a chain whose id was checked. It is safe for
// concurrent use.
type Client struct {
	*ethclient.Client
	id uint64
}

// ID is the chain's id.
func (c *Client) ID() uint64 { return c.id }

// ErrChainID is returned by Dial when the node serves another chain than
// the one asked for.
var ErrChainID = errors.New("chain id mismatch")

// Dial connects to a JSON-RPC node (http, https, ws, wss or an IPC path)
// and reads its chain id; want, if not 0, is the id it must have. It gives
// up after timeout.
func Dial(ctx context.Context, url string, want uint64, timeout time.Duration) (*Client, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	rc, err := dialRPC(ctx, url)
	if err != nil {
		return nil, fmt.Errorf("chain %s: %w", redact(url), err)
	}
	c, err := attach(ctx, rc, want)
	if err != nil {
		rc.Close()
		return nil, fmt.Errorf("chain %s: %w", redact(url), err)
	}
	return c, nil
}

func attach(ctx context.Context, rc *rpc.Client, want uint64) (*Client, error) {
	ec := ethclient.NewClient(rc)
	id, err := ec.ChainID(ctx)
	if err != nil {
		return nil, fmt.Errorf("read its chain id: %w", err)
	}
	if !id.IsUint64() {
		return nil, fmt.Errorf("chain id %s is out of range", id)
	}
	if want != 0 && id.Uint64() != want {
		return nil, fmt.Errorf("%w: the node serves chain %d, the configuration names %d", ErrChainID, id.Uint64(), want)
	}
	return &Client{Client: ec, id: id.Uint64()}, nil
}

// dialRPC dials url. An http(s) client is given the URL without its
// path, query and user information, and a transport that puts them back
// on each request: net/http names the request's URL in every error it
// returns, and those errors reach the logs, so this keeps a provider's
// API key out of them.
func dialRPC(ctx context.Context, raw string) (*rpc.Client, error) {
	u, err := neturl.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return rpc.DialContext(ctx, raw)
	}
	public := neturl.URL{Scheme: u.Scheme, Host: u.Host, Path: "/"}
	hc := &http.Client{Transport: secretURL{u: u, next: http.DefaultTransport}}
	return rpc.DialOptions(ctx, public.String(), rpc.WithHTTPClient(hc))
}

// secretURL sends every request to u, with u's user information as basic
// authentication.
type secretURL struct {
	u    *neturl.URL
	next http.RoundTripper
}

func (s secretURL) RoundTrip(r *http.Request) (*http.Response, error) {
	r = r.Clone(r.Context())
	u := *s.u
	u.User = nil
	r.URL, r.Host = &u, u.Host
	if s.u.User != nil && r.Header.Get("Authorization") == "" {
		pass, _ := s.u.User.Password()
		r.SetBasicAuth(s.u.User.Username(), pass)
	}
	return s.next.RoundTrip(r)
}

// redact drops what could be a credential from an RPC URL (user
// information, and the path and query, where providers put API keys).
func redact(url string) string {
	scheme, rest, ok := strings.Cut(url, "://")
	if !ok {
		return url
	}
	if at := strings.LastIndex(rest, "@"); at >= 0 {
		rest = rest[at+1:]
	}
	if i := strings.IndexAny(rest, "/?"); i >= 0 {
		rest = rest[:i] + "/…"
	}
	return scheme + "://" + rest
}

// IsNotFound reports whether err means "no such receipt yet": go-ethereum
// answers ethereum.NotFound, or, while it indexes transactions, an error
// saying so (go-ethereum issues 28703, 29956).
func IsNotFound(err error) bool {
	return errors.Is(err, ethereum.NotFound) || (err != nil && strings.Contains(err.Error(), "indexing is in progress"))
}

// WaitMined polls for the receipt of hash until it exists or ctx ends.
func WaitMined(ctx context.Context, c *Client, hash common.Hash, every time.Duration) (*types.Receipt, error) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		r, err := c.TransactionReceipt(ctx, hash)
		if err == nil {
			return r, nil
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("transaction %s not mined: %w", hash.Hex(), ctx.Err())
		}
		if !IsNotFound(err) {
			return nil, err
		}
		select {
		case <-ctx.Done():
			return nil, fmt.Errorf("transaction %s not mined: %w", hash.Hex(), ctx.Err())
		case <-t.C:
		}
	}
}
