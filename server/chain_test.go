package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum"
	"github.com/ethereum/go-ethereum/common"

	"github.com/spells-dev/spells/chain"
	"github.com/spells-dev/spells/chain/gethtest"
	"github.com/spells-dev/spells/contracts"
	"github.com/spells-dev/spells/protocol"
)

func getChainInfo(t *testing.T, tn *testNode) (int, protocol.ChainInfo) {
	t.Helper()
	resp, err := http.Get("http://" + tn.addr + "/v1/chain")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var info protocol.ChainInfo
	_ = json.NewDecoder(resp.Body).Decode(&info)
	return resp.StatusCode, info
}

func tokenBalance(t *testing.T, c *chain.Client, token, who common.Address) *big.Int {
	t.Helper()
	abi := contracts.MustGet(contracts.DemoToken).ABI
	data, _ := abi.Pack("balanceOf", who)
	out, err := c.CallContract(context.Background(), ethereum.CallMsg{To: &token, Data: data}, nil)
	if err != nil {
		t.Fatal(err)
	}
	return new(big.Int).SetBytes(out)
}

// TestNodeOnTheDevChain: by default a node runs the embedded dev chain:
// sign-ins name its chain id, GET /v1/chain describes its contracts, and
// the faucet funds a new vault's owner and session key. A restart keeps
// the chain; a -chain-id that is not the dev chain's is refused.
func TestNodeOnTheDevChain(t *testing.T) {
	o := testOptions(t)
	o.ChainRPC, o.ChainID, o.DevChainRPC, o.DevChainBlockInterval, o.ChainPoll = chainDev, 0, "127.0.0.1:0", 1e9, 200*time.Millisecond
	o.Demo = true // the demo trader moves the pool and its feed
	tn := startNode(t, o, nil)
	code, info := getChainInfo(t, tn)
	if code != http.StatusOK || !info.Dev || info.ChainID != chain.DevChainID || info.RPC == "" || info.Pool == nil {
		t.Fatalf("GET /v1/chain: %d %+v", code, info)
	}
	c := tn.dial(t)
	if c.Challenge.ChainID != chain.DevChainID {
		t.Fatalf("challenge names chain %d", c.Challenge.ChainID)
	}
	c.CloseNow()
	s := tn.signIn(t, nil)
	if s.mirror.Account == nil || !common.IsHexAddress(s.mirror.Account.SessionKey) {
		t.Fatalf("account %+v", s.mirror.Account)
	}
	// ETH/USD is the dev chain's price feed, read at each block, with its
	// source: a new round every block, as the trader moves it.
	f := s.until(t, "ETH/USD from the feed", func(f protocol.ServerFrame) bool {
		return f.Type == protocol.TypeSignal && f.Name == "ETH/USD" && f.Source != nil
	})
	if len(info.Feeds) != 1 || f.Source.Feed != info.Feeds[0].Address || f.Source.Round == "" || f.Source.Block == 0 || f.Value < 2000 || f.Value > 3000 {
		t.Fatalf("ETH/USD %v from %+v; the chain's feeds %+v", f.Value, f.Source, info.Feeds)
	}
	key := common.HexToAddress(s.mirror.Account.SessionKey)
	cl := tn.n.chain.client
	dETH := common.HexToAddress(info.Tokens[0].Address)
	waitFor(t, "the faucet to fund the vault", func() bool {
		kb, _ := cl.BalanceAt(context.Background(), key, nil)
		return kb != nil && kb.Cmp(faucetKeyWei) == 0 && tokenBalance(t, cl, dETH, s.w.Address()).Cmp(faucetTokens["dETH"]) == 0
	})
	tn = tn.restart()
	if _, again := getChainInfo(t, tn); again.Pool == nil || again.Pool.Address != info.Pool.Address {
		t.Fatalf("after a restart the pool is %+v, was %s", again.Pool, info.Pool.Address)
	}
	if tokenBalance(t, tn.n.chain.client, dETH, s.w.Address()).Sign() == 0 {
		t.Fatal("the owner's tokens are gone after a restart")
	}
	if err := tn.shutdown(); err != nil {
		t.Fatal(err)
	}
	o.ChainID = 5
	if err := tryNode(t, o); !errors.Is(err, chain.ErrChainID) {
		t.Fatalf("-chain-id 5 on the dev chain: err = %v, want %v", err, chain.ErrChainID)
	}
}

// TestNodeWithoutAChain: -chain-rpc none serves everything but execution.
func TestNodeWithoutAChain(t *testing.T) {
	tn := startNode(t, testOptions(t), nil)
	if code, _ := getChainInfo(t, tn); code != http.StatusNotFound {
		t.Fatalf("GET /v1/chain without a chain: %d, want 404", code)
	}
}

// deployOnGeth deploys the contracts a node uses on geth --dev from its
// dev account.
func deployOnGeth(t *testing.T, g *gethtest.Node) protocol.ChainInfo {
	t.Helper()
	ctx := context.Background()
	c, err := chain.Dial(ctx, g.URL, gethtest.ChainID, 5e9)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	info, err := chain.Deploy(ctx, c, gethtest.DevKey, nil)
	if err != nil {
		t.Fatal(err)
	}
	return info
}

// TestNodeOnGeth: a node pointed at a real geth --dev over JSON-RPC checks
// the chain id and the deployment file at start.
func TestNodeOnGeth(t *testing.T) {
	g := gethtest.Start(t)
	info := deployOnGeth(t, g)
	file := filepath.Join(t.TempDir(), "deployment.json")
	b, _ := json.Marshal(info)
	os.WriteFile(file, b, 0o600)
	o := testOptions(t)
	o.ChainRPC, o.ChainID, o.ChainDeployment = g.URL, 0, file
	tn := startNode(t, o, nil)
	code, got := getChainInfo(t, tn)
	if code != http.StatusOK || got.Dev || got.ChainID != gethtest.ChainID || got.DelegationManager != info.DelegationManager {
		t.Fatalf("GET /v1/chain: %d %+v", code, got)
	}
	if ch := tn.dial(t).Challenge.ChainID; ch != gethtest.ChainID {
		t.Fatalf("challenge names chain %d", ch)
	}
	if err := tn.shutdown(); err != nil {
		t.Fatal(err)
	}
	wrong := o
	wrong.ChainID = 1
	if err := tryNode(t, wrong); !errors.Is(err, chain.ErrChainID) {
		t.Fatalf("-chain-id 1 against geth --dev: err = %v", err)
	}
	// A feed whose decimals are not the deployment's is refused at start.
	wrongFeed := info
	wrongFeed.Feeds = []protocol.Feed{info.Feeds[0]}
	wrongFeed.Feeds[0].Decimals = 18
	b, _ = json.Marshal(wrongFeed)
	os.WriteFile(file, b, 0o600)
	if err := tryNode(t, o); err == nil || !strings.Contains(err.Error(), "answers with 8 decimals, the deployment says 18") {
		t.Fatalf("a feed with other decimals: err = %v", err)
	}
	info.ChainID = 10
	b, _ = json.Marshal(info)
	os.WriteFile(file, b, 0o600)
	if err := tryNode(t, o); !errors.Is(err, chain.ErrChainID) {
		t.Fatalf("a deployment for chain 10: err = %v", err)
	}
	os.WriteFile(file, []byte(`{"chainId":1337,"surprise":1}`), 0o600)
	if err := tryNode(t, o); err == nil {
		t.Fatal("a deployment file with an unknown field was accepted")
	}
	down := o
	down.ChainRPC = "http://127.0.0.1:1"
	if err := tryNode(t, down); err == nil {
		t.Fatal("a chain that does not answer was accepted")
	}
}

func relayCall(t *testing.T, tn *testNode, body string) (int, map[string]any) {
	t.Helper()
	resp, err := http.Post("http://"+tn.addr+"/v1/chain/rpc", "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

// TestChainRelay: the dashboard's narrow door to the chain relays the
// methods it needs, refuses others and batches, and limits each address.
func TestChainRelay(t *testing.T) {
	o := testOptions(t)
	o.ChainRPC, o.ChainID, o.DevChainRPC = chainDev, 0, ""
	tn := startNode(t, o, nil)
	if code, out := relayCall(t, tn, `{"jsonrpc":"2.0","id":1,"method":"eth_chainId","params":[]}`); code != 200 || out["result"] != "0x539" {
		t.Fatalf("eth_chainId: %d %v", code, out)
	}
	if _, out := relayCall(t, tn, `{"jsonrpc":"2.0","id":2,"method":"admin_peers","params":[]}`); !strings.Contains(fmt.Sprint(out["error"]), "does not relay admin_peers") {
		t.Fatalf("admin_peers: %v", out)
	}
	if _, out := relayCall(t, tn, `[{"jsonrpc":"2.0","id":3,"method":"eth_chainId"}]`); !strings.Contains(fmt.Sprint(out["error"]), "batches") {
		t.Fatalf("a batch: %v", out)
	}
	limited := false
	for i := 0; i < 400 && !limited; i++ {
		code, _ := relayCall(t, tn, `{"jsonrpc":"2.0","id":4,"method":"eth_blockNumber","params":[]}`)
		limited = code == http.StatusTooManyRequests
	}
	if !limited {
		t.Fatal("400 requests at once from one address were all relayed")
	}
	// A simulation costs five: a fresh source address (127.0.0.2) gets 12
	// at once.
	from2 := &http.Client{Transport: &http.Transport{DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP("127.0.0.2")}}).DialContext}}
	calls, began := 0, time.Now()
	for i := 0; i < 40; i++ {
		resp, err := from2.Post("http://"+tn.addr+"/v1/chain/rpc", "application/json",
			strings.NewReader(`{"jsonrpc":"2.0","id":5,"method":"eth_call","params":[{"to":"0x0000000000000000000000000000000000000001","data":"0x"},"latest"]}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode == http.StatusTooManyRequests {
			break
		}
		calls++
	}
	// The burst, and what the budget refilled while they ran.
	most := relayBurst/relayEVMCost + int(time.Since(began).Seconds()*relayRate/relayEVMCost) + 1
	if calls < relayBurst/relayEVMCost || calls > most {
		t.Fatalf("%d eth_calls at once from a fresh address, want %d to %d", calls, relayBurst/relayEVMCost, most)
	}
	plain := startNode(t, testOptions(t), nil)
	resp, err := http.Post("http://"+plain.addr+"/v1/chain/rpc", "application/json", strings.NewReader(`{}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound && resp.StatusCode != http.StatusMethodNotAllowed {
		t.Fatalf("a node without a chain answers the relay with %d", resp.StatusCode)
	}
}

// A relayed simulation runs with at most relayGasCap gas, whatever it asks.
func TestRelayCapsGas(t *testing.T) {
	for _, c := range []struct{ in, gas string }{
		{`{"to":"0x01"}`, "0x2dc6c0"},
		{`{"to":"0x01","gas":"0xffffffffff"}`, "0x2dc6c0"},
		{`{"to":"0x01","gas":"0x5208"}`, "0x5208"},
	} {
		out, ok := capGas(json.RawMessage(c.in))
		var m map[string]any
		if !ok || json.Unmarshal(out, &m) != nil || m["gas"] != c.gas {
			t.Errorf("%s: %s (%v), want gas %s", c.in, out, ok, c.gas)
		}
	}
	if _, ok := capGas(json.RawMessage(`"nonsense"`)); ok {
		t.Error("a string taken as a call object")
	}
}
