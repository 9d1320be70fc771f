package chain

import (
	"context"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/hexutil"
	"github.com/ethereum/go-ethereum/crypto"
	"github.com/ethereum/go-ethereum/rpc"
)

// stubEth is a JSON-RPC node that knows only what these tests ask: its
// chain id, and receipts it never has (or an error).
type stubEth struct {
	id         *big.Int
	receiptErr error
}

func (s *stubEth) ChainId() *hexutil.Big { return (*hexutil.Big)(s.id) }

func (s *stubEth) GetTransactionReceipt(common.Hash) (map[string]any, error) {
	return nil, s.receiptErr // null, no error: not mined yet
}

// serveStub serves s over HTTP on loopback. Like a provider, it answers
// only at a path and query that carry an API key, and with basic
// authentication when the URL it returns has user information (withUser).
func serveStub(t *testing.T, s *stubEth, withUser bool) string {
	t.Helper()
	srv := rpc.NewServer()
	if err := srv.RegisterName("eth", s); err != nil {
		t.Fatal(err)
	}
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, pass, ok := r.BasicAuth()
		if r.URL.Path != "/v3/SECRETKEY" || r.URL.Query().Get("apikey") != "SECRETKEY" || withUser != (ok && user == "me" && pass == "SECRETPASS") {
			http.Error(w, "no such key", http.StatusUnauthorized)
			return
		}
		srv.ServeHTTP(w, r)
	}))
	t.Cleanup(func() {
		hs.Close()
		srv.Stop()
	})
	url := hs.URL + "/v3/SECRETKEY?apikey=SECRETKEY"
	if withUser {
		url = strings.Replace(url, "http://", "http://me:SECRETPASS@", 1)
	}
	return url
}

// TestDialChecksTheChainID: the chain's id is read and compared; the
// URL's path, query and user information reach the node, and none of them
// appears in an error.
func TestDialChecksTheChainID(t *testing.T) {
	ctx := context.Background()
	url := serveStub(t, &stubEth{id: big.NewInt(42)}, false)
	c, err := Dial(ctx, url, 0, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if c.ID() != 42 {
		t.Fatalf("chain id %d, want 42", c.ID())
	}
	c.Close()
	_, err = Dial(ctx, url, 7, 5*time.Second)
	if !errors.Is(err, ErrChainID) || !strings.Contains(err.Error(), "serves chain 42") {
		t.Fatalf("naming chain 7: %v", err)
	}
	if strings.Contains(err.Error(), "SECRETKEY") {
		t.Fatalf("the error shows the URL's key: %v", err)
	}
	// User information in the URL is sent as basic authentication.
	c, err = Dial(ctx, serveStub(t, &stubEth{id: big.NewInt(5)}, true), 5, 5*time.Second)
	if err != nil {
		t.Fatalf("a URL with user information: %v", err)
	}
	c.Close()
	huge := new(big.Int).Lsh(big.NewInt(1), 70)
	if _, err := Dial(ctx, serveStub(t, &stubEth{id: huge}, false), 0, 5*time.Second); err == nil || !strings.Contains(err.Error(), "out of range") {
		t.Fatalf("a chain id past 64 bits: %v", err)
	}
}

// TestDialRefusesWhatIsNotAChain: a server that does not speak JSON-RPC,
// or nothing listening, is an error naming the URL without its secrets,
// within the timeout.
func TestDialRefusesWhatIsNotAChain(t *testing.T) {
	ctx := context.Background()
	web := httptest.NewServer(http.NotFoundHandler())
	defer web.Close()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + l.Addr().String()
	l.Close()
	for _, url := range []string{web.URL + "/rpc?key=SECRETKEY", closed + "/SECRETKEY", "ftp://user:SECRETKEY@example.org/", strings.Replace(web.URL, "http://", "http://me:SECRETPASS@", 1) + "/x"} {
		began := time.Now()
		_, err := Dial(ctx, url, 0, 2*time.Second)
		if err == nil {
			t.Fatalf("%s: dialled", url)
		}
		if strings.Contains(err.Error(), "SECRET") {
			t.Fatalf("the error shows the URL's key: %v", err)
		}
		if d := time.Since(began); d > 5*time.Second {
			t.Fatalf("%s: gave up after %s", url, d)
		}
	}
}

func TestRedact(t *testing.T) {
	for in, want := range map[string]string{
		"https://mainnet.example.org/v3/KEY":          "https://mainnet.example.org/…",
		"wss://user:pass@node.example.org:8546/ws":    "wss://node.example.org:8546/…",
		"http://127.0.0.1:8545":                       "http://127.0.0.1:8545",
		"https://rpc.example.org?apikey=KEY":          "https://rpc.example.org/…",
		"/var/run/geth.ipc":                           "/var/run/geth.ipc",
		"https://a:b@c@rpc.example.org/path?x=y#frag": "https://rpc.example.org/…",
	} {
		if got := redact(in); got != want {
			t.Errorf("redact(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestIsNotFound(t *testing.T) {
	for err, want := range map[error]bool{
		ethereum.NotFound:                                 true,
		fmt.Errorf("read: %w", ethereum.NotFound):         true,
		errors.New("transaction indexing is in progress"): true,
		errors.New("connection refused"):                  false,
		nil:                                               false,
	} {
		if got := IsNotFound(err); got != want {
			t.Errorf("IsNotFound(%v) = %v, want %v", err, got, want)
		}
	}
}

// TestWaitMined: a receipt that never comes ends with the context, naming
// the transaction; an error other than "not found" ends the wait at once.
func TestWaitMined(t *testing.T) {
	c, err := Dial(context.Background(), serveStub(t, &stubEth{id: big.NewInt(1)}, false), 1, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	hash := common.HexToHash("0xabc")
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if _, err := WaitMined(ctx, c, hash, 10*time.Millisecond); !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), hash.Hex()) {
		t.Fatalf("a receipt that never comes: %v", err)
	}

	bad, err := Dial(context.Background(), serveStub(t, &stubEth{id: big.NewInt(1), receiptErr: errors.New("the node is syncing")}, false), 1, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer bad.Close()
	began := time.Now()
	if _, err := WaitMined(context.Background(), bad, hash, time.Hour); err == nil || !strings.Contains(err.Error(), "syncing") {
		t.Fatalf("a failing node: %v", err)
	}
	if time.Since(began) > 5*time.Second {
		t.Fatal("a failing node was polled again")
	}
}

// TestDevKey: a key is made once and read back the same; a damaged key
// file is refused, naming the file, and left as it was.
func TestDevKey(t *testing.T) {
	p := filepath.Join(t.TempDir(), "faucet.key")
	k1, err := devKey(p)
	if err != nil {
		t.Fatal(err)
	}
	k2, err := devKey(p)
	if err != nil || crypto.PubkeyToAddress(k1.PublicKey) != crypto.PubkeyToAddress(k2.PublicKey) {
		t.Fatalf("read back another key (%v)", err)
	}
	if err := os.WriteFile(p, []byte("not a key\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := devKey(p); err == nil || !strings.Contains(err.Error(), p) {
		t.Fatalf("a damaged key file: %v", err)
	}
	if b, _ := os.ReadFile(p); string(b) != "not a key\n" {
		t.Fatalf("the damaged file was changed: %q", b)
	}
}
