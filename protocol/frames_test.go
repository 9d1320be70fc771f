package protocol

import (
	"encoding/json"
	"fmt"
	"strings"
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
	seven := uint64(7)
	f := NewErrorFrame(errString("disk on fire at /var/secret"), &seven)
	if f.Code != CodeInternal || f.Message != "internal error" || !f.Retry || *f.Seq != 7 {
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

// TestJSONErrorsInOwnWords: what a client sees about a body it got wrong
// names JSON fields and kinds, never Go's types or struct fields.
func TestJSONErrorsInOwnWords(t *testing.T) {
	for body, want := range map[string]string{
		`{"vault":"0xA","session":"s","seq":"1","op":"x"}`:    `command body: field "seq" must be an integer, not a string`,
		`{"vault":"0xA","session":"s","seq":1e+303,"op":"x"}`: `command body: field "seq" is out of range (1e+303)`,
		`{"vault":"0xA","session":"s","seq":-1,"op":"x"}`:     `command body: field "seq" is out of range (-1)`,
		`[1]`:     `command body: it must be an object, not a list`,
		`{"seq":`: `command body: it ends before the JSON value does`,
		`{"seq"}`: `command body: it is not valid JSON (at byte 7)`,
	} {
		_, err := ParseCommand(body)
		if pe := AsError(err); pe == nil || pe.Code != CodeBadCommand || pe.Message != want {
			t.Errorf("%s: %v, want bad_command %q", body, err, want)
		}
	}
	_, err := DecodeClientFrame([]byte(`{"type":"cmd","body":3}`))
	if pe := AsError(err); pe == nil || pe.Message != `frame: field "body" must be a string, not a number` {
		t.Errorf("frame with a numeric body: %v", err)
	}
}

// TestWrappedErrorKeepsItsCode: a code is read with errors.As, so an
// *Error wrapped on its way (fmt.Errorf %w) still reaches the client with
// its own code, not as internal.
func TestWrappedErrorKeepsItsCode(t *testing.T) {
	err := fmt.Errorf("open vault 0xabc: %w", Errorf(CodeUnavailable, "vault is closing; retry"))
	f := NewErrorFrame(err, nil)
	if f.Code != CodeUnavailable || !f.Retry || f.Message != "vault is closing; retry" {
		t.Fatalf("wrapped unavailable became %+v", f)
	}
}

// TestEntitiesOmitOnlyTheListedZeroFields: the fields PROTOCOL.md lists
// as left out at their zero value are, and every other field is written.
func TestEntitiesOmitOnlyTheListedZeroFields(t *testing.T) {
	b, _ := json.Marshal(Trigger{ID: "t_1"})
	for _, f := range []string{`"cooldownMs"`, `"maxFires"`, `"expiresAt"`, `"paused"`, `"lastFiredAt"`, `"nextDueAt"`} {
		if strings.Contains(string(b), f) {
			t.Errorf("a zero trigger carries %s: %s", f, b)
		}
	}
	for _, f := range []string{`"id"`, `"name"`, `"condition"`, `"action"`, `"status"`, `"fires":0`, `"createdAt":0`, `"updatedAt":0`} {
		if !strings.Contains(string(b), f) {
			t.Errorf("a trigger without %s: %s", f, b)
		}
	}
	b, _ = json.Marshal(Evaluation{ID: 1})
	if strings.Contains(string(b), `"detail"`) || strings.Contains(string(b), `"value"`) || !strings.Contains(string(b), `"outcome"`) {
		t.Errorf("evaluation %s: want detail and value only when set", b)
	}
}
