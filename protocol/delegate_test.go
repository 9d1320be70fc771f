package protocol

import (
	"testing"
	"time"
)

func TestDelegateRoundTrip(t *testing.T) {
	d, err := NewDelegate()
	if err != nil {
		t.Fatal(err)
	}
	pub, err := DelegateFromResources([]string{"https://example.com", d.Resource()})
	if err != nil {
		t.Fatal(err)
	}
	body := `{"vault":"0x1","session":"s","seq":1,"op":"trigger.list"}`
	sig, err := d.Sign(body)
	if err != nil {
		t.Fatal(err)
	}
	if err := VerifyBody(pub, body, sig); err != nil {
		t.Fatalf("valid signature refused: %v", err)
	}
	wantCode(t, VerifyBody(pub, body+" ", sig), CodeBadCmdSignature)
	other, _ := NewDelegate()
	osig, _ := other.Sign(body)
	wantCode(t, VerifyBody(pub, body, osig), CodeBadCmdSignature)
	wantCode(t, VerifyBody(pub, body, "not-base64!"), CodeBadCmdSignature)
	wantCode(t, VerifyBody(pub, body, sig[:20]), CodeBadCmdSignature)
}

func TestDelegateFromResourcesRefuses(t *testing.T) {
	d, _ := NewDelegate()
	for name, res := range map[string][]string{
		"none":         {"https://example.com"},
		"two":          {d.Resource(), d.Resource()},
		"not b64":      {DelegateResourcePrefix + "***"},
		"not on curve": {DelegateResourcePrefix + b64.EncodeToString(append([]byte{4}, make([]byte, 64)...))},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := DelegateFromResources(res)
			wantCode(t, err, CodeDelegateMissing)
		})
	}
}

func TestNonceIssuer(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	n := NewNonceIssuer([]byte("0123456789abcdef0123456789abcdef"))
	nonce := n.Issue(now)
	if len(nonce) != NonceLen || !nonceRe.MatchString(nonce) {
		t.Fatalf("nonce %q is not a valid SIWE nonce", nonce)
	}
	if nonce == n.Issue(now) {
		t.Fatal("two nonces are equal")
	}
	if _, err := n.Check(nonce, now.Add(time.Minute), 5*time.Minute); err != nil {
		t.Fatalf("fresh nonce refused: %v", err)
	}
	_, err := n.Check(nonce, now.Add(6*time.Minute), 5*time.Minute)
	wantCode(t, err, CodeNonceExpired)
	other := NewNonceIssuer([]byte("another key, another node........"))
	_, err = other.Check(nonce, now, 5*time.Minute)
	wantCode(t, err, CodeNonceUnknown)
	_, err = n.Check("12345678", now, 5*time.Minute)
	wantCode(t, err, CodeNonceUnknown)
	flipped := []byte(nonce)
	flipped[3] ^= 1
	_, err = n.Check(string(flipped), now, 5*time.Minute)
	wantCode(t, err, CodeNonceUnknown)
}
