package exec

import (
	"math/big"
	"strings"
	"testing"
	"time"

	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/crypto"

	"github.com/spells-dev/spells/protocol"
	"github.com/spells-dev/spells/vault/rules"
)

// An ERC-20 Transfer filtered on its recipient resolves to the topics a
// node's eth_getLogs takes: the event's hash and the address in 32 bytes;
// its logs read back in words.
func TestResolveATransferFilter(t *testing.T) {
	to := common.HexToAddress("0x00000000000000000000000000000000000000b0")
	c := &protocol.Condition{Event: &protocol.ChainEvent{Contract: "0x00000000000000000000000000000000000000aa",
		Signature: "event Transfer(address indexed from, address indexed to, uint256 value)", Topics: []string{"", to.Hex()}}}
	if err := ResolveEvents(c, &protocol.ChainInfo{}, 41); err != nil {
		t.Fatal(err)
	}
	contract, sig, topics, ok := rules.ParseEventKey(c.Event.Key)
	if !ok || contract != "0x00000000000000000000000000000000000000aa" || sig != "Transfer(address indexed,address indexed,uint256)" {
		t.Fatalf("key %q", c.Event.Key)
	}
	if topics[0] != "" || topics[1] != strings.ToLower(common.BytesToHash(to.Bytes()).Hex()) || topics[2] != "" {
		t.Fatalf("topics %q", topics)
	}
	if c.Signal != rules.EventSignal(c.Event.Key) || c.Event.FromBlock != 42 {
		t.Fatalf("signal %q fromBlock %d", c.Signal, c.Event.FromBlock)
	}
	spec := protocol.TriggerSpec{Name: "in", Condition: *c, Action: protocol.Action{Kind: "notify"}}
	if err := rules.Validate(&spec, time.Now()); err != nil {
		t.Fatalf("the resolved condition does not validate: %v", err)
	}
	ev, _ := ParseEvent(sig)
	if ev.Topic != crypto.Keccak256Hash([]byte("Transfer(address,address,uint256)")) {
		t.Fatal("wrong event topic")
	}
	from := common.HexToAddress("0x00000000000000000000000000000000000000c0")
	data := common.LeftPadBytes(big.NewInt(1500).Bytes(), 32)
	got := ev.Describe([]common.Hash{ev.Topic, common.BytesToHash(from.Bytes()), common.BytesToHash(to.Bytes())}, data)
	if want := "Transfer(" + from.Hex() + ", " + to.Hex() + ", 1500)"; got != want {
		t.Fatalf("described %q, want %q", got, want)
	}
	if got := ev.Describe([]common.Hash{ev.Topic}, data); !strings.Contains(got, "fewer topics") {
		t.Fatalf("a log short of topics: %q", got)
	}
	// Anyone's bytes: a log whose data claims more than it holds is
	// described as not decoding, never a panic.
	dyn, _ := ParseEvent("Note(uint256[] xs, string s)")
	lying := append(common.LeftPadBytes([]byte{0x40}, 32), common.LeftPadBytes([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 32)...)
	lying = append(lying, common.LeftPadBytes([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, 32)...)
	if got := dyn.Describe([]common.Hash{dyn.Topic}, lying); !strings.Contains(got, "does not decode") {
		t.Fatalf("a lying log: %q", got)
	}
	if got := dyn.Describe([]common.Hash{dyn.Topic}, make([]byte, maxLogData+1)); !strings.Contains(got, "not decoded") {
		t.Fatalf("a huge log: %q", got)
	}
}

// Each filter a vault cannot read is refused, saying why.
func TestBadEventFilters(t *testing.T) {
	good := protocol.ChainEvent{Contract: "0x00000000000000000000000000000000000000aa", Signature: "Ping(uint256 indexed i, string note)"}
	for _, c := range []struct {
		mod  func(e *protocol.ChainEvent)
		want string
	}{
		{func(e *protocol.ChainEvent) { e.Contract = "0x12" }, "contract must be an address"},
		{func(e *protocol.ChainEvent) { e.Signature = "Ping" }, "is not Name("},
		{func(e *protocol.ChainEvent) { e.Signature = "Ping(uint257 i)" }, "parameter 1"},
		{func(e *protocol.ChainEvent) { e.Signature = "Ping((uint256,address) p)" }, "tuple"},
		{func(e *protocol.ChainEvent) {
			e.Signature = "Ping(uint8 indexed a, uint8 indexed b, uint8 indexed c, uint8 indexed d)"
		}, "at most 3"},
		{func(e *protocol.ChainEvent) { e.Topics = []string{"1", "2"} }, "1 indexed parameters: 2 topic filters"},
		{func(e *protocol.ChainEvent) { e.Topics = []string{"-1"} }, "negative"},
		{func(e *protocol.ChainEvent) { e.Topics = []string{"x"} }, "not an integer"},
		{func(e *protocol.ChainEvent) { e.FromBlock = 1002 }, "past the chain's next block"},
		{func(e *protocol.ChainEvent) { e.Signature = "Ping(uint256 i)"; e.Topics = []string{"1"} }, "0 indexed parameters"},
		{func(e *protocol.ChainEvent) { e.Signature = "Ping(uint256[99999999999] a)" }, "at most 256 elements"},
		{func(e *protocol.ChainEvent) { e.Signature = "Ping(uint256[][][] a)" }, "nest at most twice"},
	} {
		e := good
		c.mod(&e)
		err := ResolveEvents(&protocol.Condition{Event: &e}, &protocol.ChainInfo{}, 1000)
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: err = %v, want %q", e, err, c.want)
		}
	}
	far := good
	far.FromBlock = 1
	if err := ResolveEvents(&protocol.Condition{Event: &far}, &protocol.ChainInfo{}, protocol.MaxEventBackfill+10); err == nil || !strings.Contains(err.Error(), "blocks back") {
		t.Errorf("a fromBlock too far back: %v", err)
	}
	e := good
	if err := ResolveEvents(&protocol.Condition{Event: &e}, nil, 1000); protocol.AsError(err).Code != protocol.CodeNoChain {
		t.Errorf("without a chain: %v", err)
	}
	if err := ResolveEvents(&protocol.Condition{Event: &e}, &protocol.ChainInfo{}, 0); protocol.AsError(err).Code != protocol.CodeUnavailable {
		t.Errorf("before the head is known: %v", err)
	}
	// A string's filter is its hash; a topic given as such is taken as is.
	e.Topics = []string{"7"}
	e.Signature = "Note(string indexed s, uint256 indexed n)"
	e.Topics = []string{"hello"}
	if err := ResolveEvents(&protocol.Condition{Event: &e}, &protocol.ChainInfo{}, 1000); err != nil {
		t.Fatal(err)
	}
	if _, _, topics, _ := rules.ParseEventKey(e.Key); topics[0] != strings.ToLower(crypto.Keccak256Hash([]byte("hello")).Hex()) {
		t.Fatalf("a string's topic: %q", topics[0])
	}
}

// FuzzDescribe: no log, whatever its topics and data, stops its reader;
// the seeds run with every go test.
func FuzzDescribe(f *testing.F) {
	f.Add("Transfer(address indexed from, address indexed to, uint256 value)", []byte{}, 3)
	f.Add("Note(uint256[] xs, string s, bytes b)", common.LeftPadBytes([]byte{0x60}, 32), 1)
	f.Add("Many(uint256[2][] a, bool indexed b, int8 c)", make([]byte, 96), 2)
	f.Fuzz(func(t *testing.T, sig string, data []byte, topics int) {
		ev, err := ParseEvent(sig)
		if err != nil {
			return
		}
		hs := make([]common.Hash, 1+(topics%4+4)%4)
		for i := range hs {
			copy(hs[i][:], data)
		}
		if out := ev.Describe(hs, data); out == "" {
			t.Fatal("an empty description")
		}
	})
}
