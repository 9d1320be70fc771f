package delegation

import (
	"context"
	"crypto/ecdsa"
	"encoding/json"
	"fmt"
	"math/big"
	"strings"
	"testing"

	"github.com/ethereum/go-ethereum"
	"github.com/ethereum/go-ethereum/common"
	"github.com/ethereum/go-ethereum/common/math"
	"github.com/ethereum/go-ethereum/core/types"
	"github.com/ethereum/go-ethereum/crypto"

	"github.com/spells-dev/spells/chain"
	"github.com/spells-dev/spells/contracts"
)

type world struct {
	t     *testing.T
	d     *chain.Dev
	c     *chain.Client
	dom   Domain
	owner *ecdsa.PrivateKey
	key   *ecdsa.PrivateKey // the vault's session key
	dUSD  common.Address
}

func newWorld(t *testing.T) *world {
	t.Helper()
	d, err := chain.StartDev(context.Background(), chain.DevConfig{Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	w := &world{t: t, d: d, c: d.Client(), dom: Domain{ChainID: d.Client().ID(), Manager: common.HexToAddress(d.Info().DelegationManager)},
		dUSD: common.HexToAddress(d.Info().Tokens[1].Address)}
	w.owner, _ = crypto.GenerateKey()
	w.key, _ = crypto.GenerateKey()
	ctx := context.Background()
	if err := d.Fund(ctx, addr(w.owner), chain.Ether, map[string]*big.Int{"dUSD": chain.Units(1000)}); err != nil {
		t.Fatal(err)
	}
	if err := d.Fund(ctx, addr(w.key), chain.Ether, nil); err != nil {
		t.Fatal(err)
	}
	return w
}

func addr(k *ecdsa.PrivateKey) common.Address { return crypto.PubkeyToAddress(k.PublicKey) }

// send signs and sends a transaction and mines it, returning its receipt.
func (w *world) send(key *ecdsa.PrivateKey, inner types.TxData) *types.Receipt {
	w.t.Helper()
	tx, err := types.SignNewTx(key, types.LatestSignerForChainID(new(big.Int).SetUint64(w.c.ID())), inner)
	if err != nil {
		w.t.Fatal(err)
	}
	if err := w.c.SendTransaction(context.Background(), tx); err != nil {
		w.t.Fatal(err)
	}
	w.d.Mine()
	r, err := w.c.TransactionReceipt(context.Background(), tx.Hash())
	if err != nil {
		w.t.Fatal(err)
	}
	return r
}

// upgrade makes the owner's address a smart account: an EIP-7702
// authorization, by the owner, to the DeleGator.
func (w *world) upgrade() {
	w.t.Helper()
	deleGator := common.HexToAddress(w.d.Info().DeleGator)
	if err := Upgrade(context.Background(), w.c, w.owner, deleGator, w.d.Mine); err != nil {
		w.t.Fatal(err)
	}
	code, _ := w.c.CodeAt(context.Background(), addr(w.owner), nil)
	if string(code) != string(DelegatedCode(deleGator)) {
		w.t.Fatalf("the owner's code is %x, want %x", code, DelegatedCode(deleGator))
	}
}

// redeemData is DelegationManager.redeemDelegations for one single call.
func redeemData(t *testing.T, d Delegation, target common.Address, data []byte) []byte {
	t.Helper()
	ctx, err := PermissionContext(d)
	if err != nil {
		t.Fatal(err)
	}
	out, err := contracts.MustGet(contracts.DelegationManager).ABI.Pack("redeemDelegations",
		[][]byte{ctx}, [][32]byte{{}}, [][]byte{SingleCall(target, nil, data)})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// TestDelegationRedeemsOnTheDevChain: a delegation this package hashes,
// signs and encodes is the one the DelegationManager checks: its hash is
// the contract's getDelegationHash, and after the owner's 7702 upgrade the
// session key moves the owner's tokens within the caveats and is refused,
// with the enforcer's reason, outside them.
func TestDelegationRedeemsOnTheDevChain(t *testing.T) {
	w := newWorld(t)
	ctx := context.Background()
	w.upgrade()
	enf := w.d.Info().Enforcers
	transfer := contracts.MustGet(contracts.DemoToken).ABI.Methods["transfer"].ID
	d := Delegation{Delegate: addr(w.key), Delegator: addr(w.owner), Authority: RootAuthority, Salt: (*math.HexOrDecimal256)(big.NewInt(7)),
		Caveats: []Caveat{
			{Enforcer: common.HexToAddress(enf[contracts.AllowedTargetsEnforcer]), Terms: w.dUSD.Bytes()},
			{Enforcer: common.HexToAddress(enf[contracts.AllowedMethodsEnforcer]), Terms: transfer},
			{Enforcer: common.HexToAddress(enf[contracts.ValueLteEnforcer]), Terms: common.LeftPadBytes(nil, 32)},
		}}
	if err := d.SignWith(w.dom, func(h []byte) ([]byte, error) { return crypto.Sign(h, w.owner) }); err != nil {
		t.Fatal(err)
	}
	if who, err := d.Signer(w.dom); err != nil || who != addr(w.owner) {
		t.Fatalf("signer %s (%v), want the owner", who.Hex(), err)
	}
	// The contract's own hash of the delegation.
	mgr := contracts.MustGet(contracts.DelegationManager).ABI
	call, err := mgr.Pack("getDelegationHash", abiDelegationOf(d))
	if err != nil {
		t.Fatal(err)
	}
	out, err := w.c.CallContract(ctx, ethereum.CallMsg{To: &w.dom.Manager, Data: call}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if h, _ := d.Hash(); common.BytesToHash(out) != h {
		t.Fatalf("hash %s, the contract says %x", h.Hex(), out)
	}
	// Within the caveats: 100 dUSD from the owner to a stranger.
	stranger := common.HexToAddress("0x00000000000000000000000000000000000a11ce")
	erc20 := contracts.MustGet(contracts.DemoToken).ABI
	pay, _ := erc20.Pack("transfer", stranger, chain.Units(100))
	nonce, _ := w.c.NonceAt(ctx, addr(w.key), nil)
	data := redeemData(t, d, w.dUSD, pay)
	gas, err := w.c.EstimateGas(ctx, ethereum.CallMsg{From: addr(w.key), To: &w.dom.Manager, Data: data})
	if err != nil {
		t.Fatalf("estimate a redemption within the caveats: %v", err)
	}
	r := w.send(w.key, &types.DynamicFeeTx{ChainID: new(big.Int).SetUint64(w.c.ID()), Nonce: nonce, GasTipCap: big.NewInt(1e9),
		GasFeeCap: big.NewInt(1e11), Gas: gas * 2, To: &w.dom.Manager, Data: data})
	if r.Status != types.ReceiptStatusSuccessful {
		t.Fatal("the redemption reverted")
	}
	bal, _ := erc20.Pack("balanceOf", stranger)
	got, _ := w.c.CallContract(ctx, ethereum.CallMsg{To: &w.dUSD, Data: bal}, nil)
	if new(big.Int).SetBytes(got).Cmp(chain.Units(100)) != 0 {
		t.Fatalf("the stranger holds %s, want 100 dUSD", new(big.Int).SetBytes(got))
	}
	// Outside them: another target, another method, a tampered caveat.
	dETH := common.HexToAddress(w.d.Info().Tokens[0].Address)
	_, err = w.c.EstimateGas(ctx, ethereum.CallMsg{From: addr(w.key), To: &w.dom.Manager, Data: redeemData(t, d, dETH, pay)})
	if err == nil || !strings.Contains(err.Error(), "AllowedTargetsEnforcer:target-address-not-allowed") {
		t.Fatalf("another target: %v", err)
	}
	approve, _ := erc20.Pack("approve", stranger, chain.Units(1))
	_, err = w.c.EstimateGas(ctx, ethereum.CallMsg{From: addr(w.key), To: &w.dom.Manager, Data: redeemData(t, d, w.dUSD, approve)})
	if err == nil || !strings.Contains(err.Error(), "AllowedMethodsEnforcer:method-not-allowed") {
		t.Fatalf("another method: %v", err)
	}
	tampered := d
	tampered.Caveats = d.Caveats[:2]
	if who, _ := tampered.Signer(w.dom); who == addr(w.owner) {
		t.Fatal("a delegation with a caveat removed still recovers the owner")
	}
	_, err = w.c.EstimateGas(ctx, ethereum.CallMsg{From: addr(w.key), To: &w.dom.Manager, Data: redeemData(t, tampered, w.dUSD, pay)})
	if err == nil {
		t.Fatal("a tampered delegation was redeemed")
	}
}

func abiDelegationOf(d Delegation) abiDelegation {
	cs := make([]abiCaveat, len(d.Caveats))
	for i, c := range d.Caveats {
		cs[i] = abiCaveat{Enforcer: c.Enforcer, Terms: c.Terms, Args: c.Args}
	}
	return abiDelegation{Delegate: d.Delegate, Delegator: d.Delegator, Authority: d.Authority, Caveats: cs, Salt: (*big.Int)(d.Salt), Signature: d.Signature}
}

// TestRulesMatchTheEnforcers: every caveat Rules writes is read back by
// the enforcer's own getTermsInfo as the same rule, and ReadRules reads it
// back whole; unknown enforcers and malformed terms are refused.
func TestRulesMatchTheEnforcers(t *testing.T) {
	w := newWorld(t)
	enf := ParseEnforcers(w.d.Info().Enforcers)
	r := Rules{Targets: []common.Address{w.dUSD, w.dom.Manager}, Methods: []string{"0xa9059cbb", "0x095ea7b3"},
		MaxValue: big.NewInt(5), MaxCalls: 9, NotBefore: 1_800_000_000, NotAfter: 1_900_000_000,
		Token:  &TokenPeriod{Token: w.dUSD, Period: Period{Amount: chain.Units(300), Duration: 86400, Start: 1_800_000_001}},
		Native: &Period{Amount: chain.Ether, Duration: 3600, Start: 1_800_000_002},
		Batch:  []Execution{{Target: w.dUSD, Value: big.NewInt(0), Data: []byte{1, 2, 3}}, {Target: w.dom.Manager, Value: big.NewInt(7), Data: []byte{}}},
		Feed:   &FeedCondition{Feed: w.dUSD, Above: true, Threshold: big.NewInt(-5), MaxAge: 120}}
	cs, err := r.Caveats(enf)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]string{
		contracts.AllowedTargetsEnforcer:            fmt.Sprint([]common.Address{w.dUSD, w.dom.Manager}),
		contracts.AllowedMethodsEnforcer:            "[[169 5 156 187] [9 94 167 179]]",
		contracts.ValueLteEnforcer:                  "5",
		contracts.LimitedCallsEnforcer:              "9",
		contracts.TimestampEnforcer:                 "1800000000 1900000000",
		contracts.ERC20PeriodTransferEnforcer:       fmt.Sprint(w.dUSD, " ", chain.Units(300), " 86400 1800000001"),
		contracts.NativeTokenPeriodTransferEnforcer: fmt.Sprint(chain.Ether, " 3600 1800000002"),
		contracts.ExactExecutionBatchEnforcer:       fmt.Sprintf("{%s 0 [1 2 3]} {%s 7 []}", w.dUSD.Hex(), w.dom.Manager.Hex()),
		contracts.FeedConditionEnforcer:             fmt.Sprint(w.dUSD, " true -5 120"),
	}
	if len(cs) != len(want) {
		t.Fatalf("%d caveats, want %d", len(cs), len(want))
	}
	for _, c := range cs {
		name := enf.name(c.Enforcer)
		a := contracts.MustGet(name).ABI
		data, _ := a.Pack("getTermsInfo", []byte(c.Terms))
		out, err := w.c.CallContract(context.Background(), ethereum.CallMsg{To: &c.Enforcer, Data: data}, nil)
		if err != nil {
			t.Fatalf("%s.getTermsInfo: %v", name, err)
		}
		vals, err := a.Unpack("getTermsInfo", out)
		if err != nil {
			t.Fatal(err)
		}
		got := strings.Trim(fmt.Sprint(vals), "[]")
		if name == contracts.AllowedTargetsEnforcer || name == contracts.AllowedMethodsEnforcer {
			got = fmt.Sprint(vals[0])
		}
		if name == contracts.ExactExecutionBatchEnforcer {
			got = strings.Trim(fmt.Sprintf("%+v", vals[0]), "[]")
			got = strings.NewReplacer("Target:", "", "Value:+", "", "Value:", "", "CallData:", "").Replace(got)
		}
		if got != want[name] {
			t.Errorf("%s reads %s, want %s", name, got, want[name])
		}
	}
	back, err := ReadRules(cs, enf)
	if err != nil {
		t.Fatal(err)
	}
	if a, b := mustJSON(t, back), mustJSON(t, r); a != b {
		t.Fatalf("read back\n %s\nwant\n %s", a, b)
	}
	stranger := append([]Caveat{}, cs...)
	stranger[0].Enforcer = common.HexToAddress("0x1234")
	if _, err := ReadRules(stranger, enf); err == nil || !strings.Contains(err.Error(), "not one this node knows") {
		t.Fatalf("an unknown enforcer: %v", err)
	}
	short := append([]Caveat{}, cs...)
	short[2].Terms = short[2].Terms[:31]
	if _, err := ReadRules(short, enf); err == nil || !strings.Contains(err.Error(), "terms are 31 bytes") {
		t.Fatalf("short terms: %v", err)
	}
	if _, err := ReadRules(append(cs, cs[0]), enf); err == nil || !strings.Contains(err.Error(), "a second") {
		t.Fatalf("a caveat twice: %v", err)
	}
}

func mustJSON(t *testing.T, x any) string {
	b, err := json.Marshal(x)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestSaltForms: a salt may come as hex with leading zeros (as browser
// libraries write it) or as decimal.
func TestSaltForms(t *testing.T) {
	for _, in := range []string{`"0x0abc"`, `"2748"`, `"0xabc"`} {
		var d Delegation
		if err := json.Unmarshal([]byte(`{"salt":`+in+`}`), &d); err != nil || (*big.Int)(d.Salt).Int64() != 2748 {
			t.Errorf("salt %s: %v %v", in, d.Salt, err)
		}
	}
}

// TestPermissionContextRoundTrip: a permission context decodes to the
// delegations it encodes.
func TestPermissionContextRoundTrip(t *testing.T) {
	d := Delegation{Delegate: common.HexToAddress("0x01"), Delegator: common.HexToAddress("0x02"), Authority: RootAuthority,
		Caveats: []Caveat{{Enforcer: common.HexToAddress("0x03"), Terms: []byte{1, 2}, Args: []byte{}}}, Salt: (*math.HexOrDecimal256)(big.NewInt(9)), Signature: []byte{7}}
	ctx, err := PermissionContext(d)
	if err != nil {
		t.Fatal(err)
	}
	back, err := ParsePermissionContext(ctx)
	if err != nil || len(back) != 1 || mustJSON(t, back[0]) != mustJSON(t, d) {
		t.Fatalf("decoded %v (%v), want %v", back, err, d)
	}
	if _, err := ParsePermissionContext([]byte("nonsense")); err == nil {
		t.Fatal("nonsense decoded")
	}
}
