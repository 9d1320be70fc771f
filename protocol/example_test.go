package protocol_test

import (
	"fmt"

	"github.com/ethereum/go-ethereum/common"

	"github.com/spells-dev/spells/protocol"
)

// A SIWE message renders in the exact layout the wallet signs, and parses
// back to the same fields.
func ExampleMessage_String() {
	m := &protocol.Message{
		Domain:    "localhost:8080",
		Address:   common.HexToAddress("0x2c7536E3605D9C16a7a3D7b1898e529396a65c23"),
		Statement: "Sign in to your Spells vault.",
		URI:       "http://localhost:8080",
		Version:   "1",
		ChainID:   1,
		Nonce:     "abcdef0123456789",
		IssuedAt:  "2026-11-27T12:00:00.000Z",
		Resources: []string{"urn:spells:delegate:p256:BLWp"},
	}
	text := m.String()
	fmt.Println(text)
	back, err := protocol.ParseMessage(text)
	fmt.Println(err, back.Nonce)
	// Output:
	// localhost:8080 wants you to sign in with your Ethereum account:
	// 0x2c7536E3605D9C16a7a3D7b1898e529396a65c23
	//
	// Sign in to your Spells vault.
	//
	// URI: http://localhost:8080
	// Version: 1
	// Chain ID: 1
	// Nonce: abcdef0123456789
	// Issued At: 2026-11-27T12:00:00.000Z
	// Resources:
	// - urn:spells:delegate:p256:BLWp
	// <nil> abcdef0123456789
}

// Every command body is signed by the session's delegate key; the vault
// verifies the signature over the exact bytes before parsing them.
func ExampleVerifyBody() {
	d, _ := protocol.NewDelegate()
	body := `{"vault":"0x2c7536E3605D9C16a7a3D7b1898e529396a65c23","session":"s","seq":1,"op":"trigger.list","args":{}}`
	sig, _ := d.Sign(body)
	fmt.Println(protocol.VerifyBody(d.Public(), body, sig))
	fmt.Println(protocol.VerifyBody(d.Public(), body+" ", sig))
	// Output:
	// <nil>
	// bad_cmd_signature: sig does not verify over body with the session's delegate key
}
