package notify

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
)

// ErrPrivate refuses a destination in a loopback, private, link-local or
// other non-public range: a webhook must not reach the node's own network
// (server-side request forgery), unless the operator allowed it.
var ErrPrivate = errors.New("the webhook's address is not public (loopback, private or link-local): refused unless the node runs with --alerts-allow-private")

// public reports whether ip is an address a webhook may reach.
func public(ip netip.Addr) bool {
	ip = ip.Unmap()
	switch {
	case !ip.IsValid(), ip.IsLoopback(), ip.IsPrivate(), ip.IsLinkLocalUnicast(), ip.IsLinkLocalMulticast(),
		ip.IsInterfaceLocalMulticast(), ip.IsMulticast(), ip.IsUnspecified():
		return false
	}
	for _, p := range nonPublic {
		if p.Contains(ip) {
			return false
		}
	}
	return true
}

// nonPublic are the ranges netip does not name that are not the public
// internet: shared address space (carrier NAT), benchmarking, the
// documentation ranges, and IPv4 "this network" and reserved.
var nonPublic = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"),
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("192.0.2.0/24"),
	netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("198.51.100.0/24"),
	netip.MustParsePrefix("203.0.113.0/24"),
	netip.MustParsePrefix("240.0.0.0/4"),
	netip.MustParsePrefix("64:ff9b:1::/48"),
	netip.MustParsePrefix("2001:db8::/32"),
}

// dialGuard is a net.Dialer's Control: it refuses a connection to a
// non-public address after the name was resolved, so a name that
// resolves (or later rebinds) to one is refused too.
func dialGuard(_, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("webhook address %q: %w", address, err)
	}
	if !public(ap.Addr()) {
		return ErrPrivate
	}
	return nil
}

// CheckURL says what is wrong with a webhook URL, in the project's words:
// it must be http or https with a host, no user or password in it, and, if
// its host is an address, a public one (unless allowPrivate). A name is
// checked when it is resolved, at each delivery.
func CheckURL(raw string, allowPrivate bool) error {
	if len(raw) > 2048 {
		return errors.New("the webhook URL is longer than 2,048 characters")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return fmt.Errorf("the webhook URL does not parse: %v", err)
	}
	if u.Scheme != "https" && u.Scheme != "http" {
		return fmt.Errorf("the webhook URL must start with https:// (or http://), not %q", u.Scheme+":")
	}
	if u.Host == "" || u.Hostname() == "" {
		return errors.New("the webhook URL has no host")
	}
	if u.User != nil {
		return errors.New("the webhook URL must not hold a user or password: the vault signs each alert instead")
	}
	if u.Fragment != "" {
		return errors.New("the webhook URL must not hold a fragment (#…)")
	}
	host := strings.TrimSuffix(strings.ToLower(u.Hostname()), ".")
	if ip, err := netip.ParseAddr(host); err == nil && !allowPrivate && !public(ip) {
		return ErrPrivate
	}
	if (host == "localhost" || strings.HasSuffix(host, ".localhost")) && !allowPrivate {
		return ErrPrivate
	}
	return nil
}

// dialer is the webhook client's: the guard unless private addresses are
// allowed.
func dialer(allowPrivate bool) *net.Dialer {
	d := &net.Dialer{Timeout: connectTimeout}
	if !allowPrivate {
		d.Control = dialGuard
	}
	return d
}
