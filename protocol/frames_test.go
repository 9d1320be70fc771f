package protocol

import (
	"testing"
)

func TestDecodeClientFrame(t *testing.T) {
	cases := map[string]Code{
		`{"type":"cmd","body":"{}","sig":"x"}`: "",
		`{"type":"signin","message":"m"}`:      "",
		`not json`:                             CodeBadFrame,
		`[]`:                                   CodeBadFrame,
		`{"type":5}`:                           CodeBadFrame,
		`{}`:                                   CodeBadFrame,
		`{"type":"launch"}`:                    CodeUnknownType,
	}
	for in, code := range cases {
		_, err := DecodeClientFrame([]byte(in))
		if code == "" {
			if err != nil {
				t.Errorf("%s: %v", in, err)
			}
			continue
		}
		pe, ok := err.(*Error)
		if !ok || pe.Code != code {
			t.Errorf("%s: err = %v, want %s", in, err, code)
		}
	}
}

func TestParseCommand(t *testing.T) {
	c, err := ParseCommand(`{"vault":"0xA","session":"s","seq":3,"op":"trigger.list","args":{}}`)
	if err != nil || c.Seq != 3 || c.Op != OpTriggerList {
		t.Fatalf("got %+v, %v", c, err)
	}
	for _, bad := range []string{`{`, `{"vault":"0xA","session":"s","op":"x"}`, `{"seq":1}`} {
		_, err := ParseCommand(bad)
		wantCode(t, err, CodeBadCommand)
	}
}

func TestNewErrorFrameHidesInternalDetail(t *testing.T) {
	f := NewErrorFrame(errString("disk on fire at /var/secret"), 7)
	if f.Code != CodeInternal || f.Message != "internal error" || !f.Retry || f.Seq != 7 {
		t.Fatalf("got %+v", f)
	}
}

type errString string

func (e errString) Error() string { return string(e) }

func FuzzDecodeClientFrame(f *testing.F) {
	for _, s := range []string{
		`{"type":"cmd","body":"{\"vault\":\"0x1\",\"session\":\"s\",\"seq\":1,\"op\":\"trigger.list\"}","sig":"AAAA"}`,
		`{"type":"signin","message":"x","signature":"0x00","since":3}`,
		`{"type":"resume","body":"{}","sig":""}`,
		`{"type":""}`, `null`, `{"type":"x","since":-1}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		fr, err := DecodeClientFrame(data)
		if err != nil {
			if _, ok := err.(*Error); !ok {
				t.Fatalf("error is not a protocol error: %v", err)
			}
			return
		}
		switch fr.Type {
		case TypeSignIn, TypeResume, TypeCmd:
		default:
			t.Fatalf("accepted unknown type %q", fr.Type)
		}
		if fr.Type == TypeCmd {
			_, _ = ParseCommand(fr.Body)
		}
	})
}

func FuzzParseMessage(f *testing.F) {
	f.Add("service.org wants you to sign in with your Ethereum account:\n0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2\n\nI accept the ServiceOrg Terms of Service: https://service.org/tos\n\nURI: https://service.org/login\nVersion: 1\nChain ID: 1\nNonce: 32891757\nIssued At: 2021-09-30T16:25:24.000Z\nResources:\n- ipfs://Qme7ss3ARVgxv6rXqVPiikMJ8u2NLgmgszg13pYrDKEoiu\n- https://example.com/my-web2-claim.json")
	f.Add("https://example.com wants you to sign in with your Ethereum account:\n0xC02aaA39b223FE8D0A0e5C4F27eAD9083C756Cc2\n\n\nURI: https://example.com/login\nVersion: 1\nChain ID: 1\nNonce: 32891756\nIssued At: 2021-09-30T16:25:24Z\nExpiration Time: 2100-01-01T00:00:00Z\nNot Before: 2021-01-01T00:00:00Z\nRequest ID: x")
	f.Add("")
	f.Fuzz(func(t *testing.T, text string) {
		m, err := ParseMessage(text)
		if err != nil {
			return
		}
		// Whatever parses must render back to the same bytes: the signed
		// text and the parsed fields can never disagree.
		if m.String() != text {
			t.Fatalf("round trip differs:\n%q\n%q", text, m.String())
		}
	})
}

func TestDecodeServerMessage(t *testing.T) {
	one, err := DecodeServerMessage([]byte(`{"type":"ack","seq":1,"version":2}`))
	if err != nil || len(one) != 1 || one[0].Type != TypeAck || one[0].Version != 2 {
		t.Fatalf("one frame: %v %v", one, err)
	}
	three, err := DecodeServerMessage([]byte(`{"type":"diff","version":3}` + "\n" + `{"type":"diff","version":4}` + "\n" + `{"type":"ack","seq":9,"version":4}`))
	if err != nil || len(three) != 3 || three[0].Version != 3 || three[1].Version != 4 || three[2].Type != TypeAck {
		t.Fatalf("three frames: %v %v", three, err)
	}
	for _, bad := range []string{"", "\n", `{"type":"ack"}` + "\n" + `nope`, `{"type":"ack"}` + "\n"} {
		if _, err := DecodeServerMessage([]byte(bad)); err == nil {
			t.Errorf("%q: decoded, want an error", bad)
		}
	}
}
