package protocol

import (
	"fmt"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/ethereum/go-ethereum/common"
)

// Message is a parsed Sign-In with Ethereum (EIP-4361) message. Times are
// kept as the exact strings that were signed; the parsed values are beside
// them.
type Message struct {
	Scheme         string // optional, before "://" in the first line
	Domain         string // RFC 3986 authority
	Address        common.Address
	Statement      string // optional, one line
	URI            string
	Version        string
	ChainID        uint64
	Nonce          string
	IssuedAt       string
	ExpirationTime string // optional
	NotBefore      string // optional
	RequestID      string // optional
	Resources      []string

	issuedAt, expirationTime, notBefore time.Time
}

const siweHeader = " wants you to sign in with your Ethereum account:"

var (
	schemeRe    = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9+.\-]*$`)
	nonceRe     = regexp.MustCompile(`^[A-Za-z0-9]{8,}$`)
	regNameRe   = regexp.MustCompile(`^(?:[A-Za-z0-9\-._~!$&'()*+,;=]|%[0-9A-Fa-f]{2})*$`)
	userinfoRe  = regexp.MustCompile(`^(?:[A-Za-z0-9\-._~!$&'()*+,;=:]|%[0-9A-Fa-f]{2})*$`)
	ipLiteralRe = regexp.MustCompile(`^\[[0-9A-Fa-f:.]+\]$`)
	portRe      = regexp.MustCompile(`^[0-9]*$`)
	dateTimeRe  = regexp.MustCompile(`^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt][0-9]{2}:[0-9]{2}:[0-9]{2}(?:\.[0-9]+)?(?:[Zz]|[+-][0-9]{2}:[0-9]{2})$`)
	requestIDRe = regexp.MustCompile(`^(?:[A-Za-z0-9\-._~!$&'()*+,;=:@]|%[0-9A-Fa-f]{2})*$`)
)

// ParseMessage parses an EIP-4361 message and validates every field's
// syntax. Errors are *Error with CodeSIWEMalformed.
func ParseMessage(text string) (*Message, error) {
	m, err := parseMessage(text)
	if err != nil {
		return nil, Errorf(CodeSIWEMalformed, "siwe: %v", err)
	}
	return m, nil
}

// lineReader walks the lines of a message in order.
type lineReader struct {
	lines []string
	i     int
}

func (r *lineReader) next() (string, bool) {
	if r.i >= len(r.lines) {
		return "", false
	}
	r.i++
	return r.lines[r.i-1], true
}

// field reads a required "Tag: value" line.
func (r *lineReader) field(tag string) (string, error) {
	line, ok := r.next()
	if !ok || !strings.HasPrefix(line, tag+": ") {
		return "", fmt.Errorf("expected %q line", tag+": ")
	}
	return strings.TrimPrefix(line, tag+": "), nil
}

// optional reads a "Tag: value" line if it is next.
func (r *lineReader) optional(tag string) (string, bool) {
	if r.i < len(r.lines) && strings.HasPrefix(r.lines[r.i], tag+": ") {
		line, _ := r.next()
		return strings.TrimPrefix(line, tag+": "), true
	}
	return "", false
}

func parseMessage(text string) (*Message, error) {
	r := &lineReader{lines: strings.Split(text, "\n")}
	m := &Message{}
	header, _ := r.next()
	if !strings.HasSuffix(header, siweHeader) {
		return nil, fmt.Errorf("first line must end with %q", siweHeader)
	}
	m.Domain = strings.TrimSuffix(header, siweHeader)
	if scheme, rest, ok := strings.Cut(m.Domain, "://"); ok {
		// "://" with nothing before it names no scheme: refused, or the
		// text would not render back to the bytes that were signed.
		if !schemeRe.MatchString(scheme) {
			return nil, fmt.Errorf("scheme %q is not a URI scheme", truncate(scheme, 50))
		}
		m.Scheme, m.Domain = scheme, rest
	}
	addr, _ := r.next()
	if err := m.parseHead(r, addr); err != nil {
		return nil, err
	}
	if err := m.parseFields(r); err != nil {
		return nil, err
	}
	if _, extra := r.next(); extra {
		return nil, fmt.Errorf("unexpected text after the last field")
	}
	if err := m.Validate(); err != nil {
		return nil, err
	}
	return m, nil
}

// parseHead reads the address, the blank line and the optional statement.
func (m *Message) parseHead(r *lineReader, addr string) error {
	a, err := parseChecksumAddress(addr)
	if err != nil {
		return err
	}
	m.Address = a
	if blank, _ := r.next(); blank != "" {
		return fmt.Errorf("expected an empty line after the address")
	}
	stmt, ok := r.next()
	if !ok {
		return fmt.Errorf("message ends after the address")
	}
	if stmt != "" {
		m.Statement = stmt
		if blank, _ := r.next(); blank != "" {
			return fmt.Errorf("expected an empty line after the statement")
		}
	}
	return nil
}

func (m *Message) parseFields(r *lineReader) error {
	var err error
	if m.URI, err = r.field("URI"); err != nil {
		return err
	}
	if m.Version, err = r.field("Version"); err != nil {
		return err
	}
	chain, err := r.field("Chain ID")
	if err != nil {
		return err
	}
	if m.ChainID, err = parseChainID(chain); err != nil {
		return err
	}
	if m.Nonce, err = r.field("Nonce"); err != nil {
		return err
	}
	if m.IssuedAt, err = r.field("Issued At"); err != nil {
		return err
	}
	for _, o := range [...]struct {
		tag string
		v   *string
	}{{"Expiration Time", &m.ExpirationTime}, {"Not Before", &m.NotBefore}, {"Request ID", &m.RequestID}} {
		if v, ok := r.optional(o.tag); ok {
			if v == "" {
				return fmt.Errorf("%s is present but empty", o.tag)
			}
			*o.v = v
		}
	}
	if r.i < len(r.lines) && r.lines[r.i] == "Resources:" {
		r.next()
		for r.i < len(r.lines) && strings.HasPrefix(r.lines[r.i], "- ") {
			line, _ := r.next()
			m.Resources = append(m.Resources, strings.TrimPrefix(line, "- "))
		}
		if len(m.Resources) == 0 {
			return fmt.Errorf("Resources: needs at least one \"- \" line")
		}
	}
	return nil
}

func parseChainID(s string) (uint64, error) {
	if s == "" || strings.TrimLeft(s, "0123456789") != "" {
		return 0, fmt.Errorf("chain id %q is not a decimal number", s)
	}
	id, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("chain id %q: %w", s, err)
	}
	return id, nil
}

func parseChecksumAddress(s string) (common.Address, error) {
	if !common.IsHexAddress(s) || !strings.HasPrefix(s, "0x") {
		return common.Address{}, fmt.Errorf("address %q is not a 0x-prefixed 20-byte hex address", truncate(s, 50))
	}
	a := common.HexToAddress(s)
	if a.Hex() != s {
		return common.Address{}, fmt.Errorf("address %q is not in EIP-55 checksum form", s)
	}
	return a, nil
}

// Validate checks every field of m for syntax, as the parser does. Use it
// on a Message built by hand before calling String.
func (m *Message) Validate() error {
	if m.Scheme != "" && !schemeRe.MatchString(m.Scheme) {
		return fmt.Errorf("scheme %q is not a URI scheme", m.Scheme)
	}
	if err := validateAuthority(m.Domain); err != nil {
		return err
	}
	if (m.Address == common.Address{}) {
		return fmt.Errorf("address is missing")
	}
	if strings.ContainsAny(m.Statement, "\n\r") {
		return fmt.Errorf("statement must be one line")
	}
	if err := validateURI(m.URI); err != nil {
		return fmt.Errorf("uri: %w", err)
	}
	if m.Version != "1" {
		return fmt.Errorf("version %q is not 1", m.Version)
	}
	if !nonceRe.MatchString(m.Nonce) {
		return fmt.Errorf("nonce must be at least 8 letters or digits")
	}
	return m.validateRest()
}

func (m *Message) validateRest() error {
	var err error
	if m.issuedAt, err = parseTimestamp("Issued At", m.IssuedAt); err != nil {
		return err
	}
	if m.ExpirationTime != "" {
		if m.expirationTime, err = parseTimestamp("Expiration Time", m.ExpirationTime); err != nil {
			return err
		}
	}
	if m.NotBefore != "" {
		if m.notBefore, err = parseTimestamp("Not Before", m.NotBefore); err != nil {
			return err
		}
	}
	if !requestIDRe.MatchString(m.RequestID) {
		return fmt.Errorf("request id has characters outside RFC 3986 pchar")
	}
	for i, res := range m.Resources {
		if err := validateURI(res); err != nil {
			return fmt.Errorf("resource %d: %w", i, err)
		}
	}
	return nil
}

func parseTimestamp(name, s string) (time.Time, error) {
	t, err := time.Parse(time.RFC3339Nano, s)
	if err != nil || !dateTimeRe.MatchString(s) {
		return time.Time{}, fmt.Errorf("%s %q is not an RFC 3339 date-time", name, truncate(s, 50))
	}
	return t, nil
}

// validateAuthority checks an RFC 3986 authority: [userinfo@]host[:port].
func validateAuthority(s string) error {
	if s == "" {
		return fmt.Errorf("domain is missing")
	}
	hostport := s
	if at := strings.LastIndex(s, "@"); at >= 0 {
		if !userinfoRe.MatchString(s[:at]) {
			return fmt.Errorf("domain %q has an invalid userinfo", s)
		}
		hostport = s[at+1:]
	}
	host, port := hostport, ""
	if strings.HasPrefix(hostport, "[") {
		end := strings.Index(hostport, "]")
		if end < 0 {
			return fmt.Errorf("domain %q has an unclosed IP literal", s)
		}
		host, port = hostport[:end+1], strings.TrimPrefix(hostport[end+1:], ":")
		if !ipLiteralRe.MatchString(host) || (hostport[end+1:] != "" && !strings.HasPrefix(hostport[end+1:], ":")) {
			return fmt.Errorf("domain %q has an invalid IP literal", s)
		}
	} else if i := strings.LastIndex(hostport, ":"); i >= 0 {
		host, port = hostport[:i], hostport[i+1:]
	}
	if host == "" || !portRe.MatchString(port) || (!strings.HasPrefix(host, "[") && !regNameRe.MatchString(host)) {
		return fmt.Errorf("domain %q is not an RFC 3986 authority", s)
	}
	return nil
}

func validateURI(s string) error {
	if s == "" {
		return fmt.Errorf("missing")
	}
	if strings.ContainsAny(s, " \t\r\n") {
		return fmt.Errorf("%q contains white space", truncate(s, 50))
	}
	u, err := url.Parse(s)
	if err != nil || !schemeRe.MatchString(u.Scheme) {
		return fmt.Errorf("%q is not an RFC 3986 URI", truncate(s, 50))
	}
	return nil
}

// String renders m in the exact EIP-4361 layout: these are the bytes a
// wallet signs.
func (m *Message) String() string {
	var b strings.Builder
	if m.Scheme != "" {
		b.WriteString(m.Scheme + "://")
	}
	b.WriteString(m.Domain + siweHeader + "\n")
	b.WriteString(m.Address.Hex() + "\n\n")
	if m.Statement != "" {
		b.WriteString(m.Statement + "\n")
	}
	b.WriteString("\n")
	fmt.Fprintf(&b, "URI: %s\nVersion: %s\nChain ID: %d\nNonce: %s\nIssued At: %s",
		m.URI, m.Version, m.ChainID, m.Nonce, m.IssuedAt)
	for _, f := range [...]struct{ tag, v string }{
		{"Expiration Time", m.ExpirationTime}, {"Not Before", m.NotBefore}, {"Request ID", m.RequestID},
	} {
		if f.v != "" {
			b.WriteString("\n" + f.tag + ": " + f.v)
		}
	}
	if len(m.Resources) > 0 {
		b.WriteString("\nResources:")
		for _, r := range m.Resources {
			b.WriteString("\n- " + r)
		}
	}
	return b.String()
}

// IssuedAtTime, ExpirationTimeValue and NotBeforeTime return the parsed
// times; the zero time means the optional field is absent.
func (m *Message) IssuedAtTime() time.Time        { return m.issuedAt }
func (m *Message) ExpirationTimeValue() time.Time { return m.expirationTime }
func (m *Message) NotBeforeTime() time.Time       { return m.notBefore }

// VerifyOptions are what a verifier checks a message against. Empty fields
// are not checked, so a caller states exactly the policy it wants.
type VerifyOptions struct {
	Domains           []string      // the message's domain must be one of these
	ChainID           uint64        // 0: any chain
	Nonce             string        // the message's nonce must equal this
	Now               time.Time     // zero: time.Now()
	MaxFutureIssuedAt time.Duration // >0: refuse Issued At further in the future than this
}

// Verify checks the message against opts and that sig (65 bytes, EIP-191
// personal_sign) was made by m.Address over m.String(). Errors are *Error.
func (m *Message) Verify(sig []byte, opts VerifyOptions) error {
	if err := m.checkPolicy(opts); err != nil {
		return err
	}
	signer, err := RecoverPersonal([]byte(m.String()), sig)
	if err != nil {
		return err
	}
	if signer != m.Address {
		return Errorf(CodeBadSignature, "signature is from %s, not %s", signer.Hex(), m.Address.Hex())
	}
	return nil
}

func (m *Message) checkPolicy(opts VerifyOptions) error {
	if len(opts.Domains) > 0 && !contains(opts.Domains, m.Domain) {
		return Errorf(CodeSIWEDomain, "domain %q is not served here", m.Domain)
	}
	if len(opts.Domains) > 0 {
		if u, err := url.Parse(m.URI); err != nil || u.Host != m.Domain {
			return Errorf(CodeSIWEURI, "uri %q does not belong to domain %q", m.URI, m.Domain)
		}
	}
	if opts.ChainID != 0 && m.ChainID != opts.ChainID {
		return Errorf(CodeSIWEChain, "chain id %d is not %d", m.ChainID, opts.ChainID)
	}
	if opts.Nonce != "" && m.Nonce != opts.Nonce {
		return Errorf(CodeNonceUnknown, "nonce %q is not the one issued", m.Nonce)
	}
	return m.checkTimes(opts)
}

func (m *Message) checkTimes(opts VerifyOptions) error {
	now := opts.Now
	if now.IsZero() {
		now = time.Now()
	}
	if !m.expirationTime.IsZero() && !now.Before(m.expirationTime) {
		return Errorf(CodeSIWEExpired, "message expired at %s", m.ExpirationTime)
	}
	if !m.notBefore.IsZero() && now.Before(m.notBefore) {
		return Errorf(CodeSIWENotYetValid, "message is not valid before %s", m.NotBefore)
	}
	if opts.MaxFutureIssuedAt > 0 && m.issuedAt.After(now.Add(opts.MaxFutureIssuedAt)) {
		return Errorf(CodeSIWEIssuedAt, "issued at %s is in the future", m.IssuedAt)
	}
	return nil
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}
