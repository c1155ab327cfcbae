package webhooks

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"os"
	"strconv"
	"syscall"
	"time"
)

// AllowPrivateEnv names the setting that lets subscriptions reach private, loopback
// and link-local addresses (HERALD_WEBHOOKS_ALLOW_PRIVATE=true): local development and
// the tests need it; a production Herald must not, or a subscription could make it
// POST to its own Redis, a metadata service or the office network.
const AllowPrivateEnv = "HERALD_WEBHOOKS_ALLOW_PRIVATE"

// AllowPrivate reports whether AllowPrivateEnv is set true.
func AllowPrivate() bool {
	v, _ := strconv.ParseBool(os.Getenv(AllowPrivateEnv))
	return v
}

// nonPublic are the ranges a receiver may not be in (beyond what netip's predicates
// say): shared address space (RFC 6598), "this network", benchmarking, IPv4/IPv6
// translation and documentation prefixes.
var nonPublic = []netip.Prefix{
	netip.MustParsePrefix("0.0.0.0/8"), netip.MustParsePrefix("100.64.0.0/10"), netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("198.18.0.0/15"), netip.MustParsePrefix("240.0.0.0/4"), netip.MustParsePrefix("64:ff9b::/96"),
	netip.MustParsePrefix("64:ff9b:1::/48"), netip.MustParsePrefix("2001:db8::/32"),
}

// PublicAddr reports whether a is an address a webhook may be delivered to: not
// loopback, private (RFC 1918, fc00::/7), link-local (169.254/16 with cloud metadata,
// fe80::/10), multicast, unspecified or one of the reserved ranges above.
func PublicAddr(a netip.Addr) bool {
	a = a.Unmap()
	if !a.IsValid() || a.IsLoopback() || a.IsPrivate() || a.IsLinkLocalUnicast() || a.IsLinkLocalMulticast() ||
		a.IsInterfaceLocalMulticast() || a.IsMulticast() || a.IsUnspecified() {
		return false
	}
	for _, p := range nonPublic {
		if p.Contains(a) {
			return false
		}
	}
	return true
}

// CheckTarget resolves a subscription URL's host (with resolver; nil: the default)
// and refuses it when any address is not public, unless AllowPrivate. The deliverer
// checks the address it connects to again (DialControl), so a name that resolves to a
// public address now and a private one later (DNS rebinding) is refused then.
func CheckTarget(ctx context.Context, rawURL string, resolver *net.Resolver) error {
	if AllowPrivate() {
		return nil
	}
	u, err := url.Parse(rawURL)
	if err != nil {
		return &FieldError{"url", "not a URL: " + err.Error()}
	}
	host := u.Hostname()
	if a, err := netip.ParseAddr(host); err == nil {
		if !PublicAddr(a) {
			return &FieldError{"url", fmt.Sprintf("%s is not a public address (private, loopback and link-local receivers need %s=true)", a, AllowPrivateEnv)}
		}
		return nil
	}
	if resolver == nil {
		resolver = net.DefaultResolver
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	addrs, err := resolver.LookupNetIP(ctx, "ip", host)
	if err != nil || len(addrs) == 0 {
		return &FieldError{"url", fmt.Sprintf("host %q does not resolve", host)}
	}
	for _, a := range addrs {
		if !PublicAddr(a) {
			return &FieldError{"url", fmt.Sprintf("host %q resolves to %s, not a public address (private, loopback and link-local receivers need %s=true)", host, a.Unmap(), AllowPrivateEnv)}
		}
	}
	return nil
}

// ErrPrivateAddress is a delivery refused because the receiver's address is not public.
var ErrPrivateAddress = fmt.Errorf("the receiver's address is not public (set %s=true to allow it)", AllowPrivateEnv)

// DialControl is a net.Dialer Control that refuses to connect to an address that is
// not public, unless AllowPrivate: checked on the address actually dialled, after DNS.
func DialControl(_, address string, _ syscall.RawConn) error {
	if AllowPrivate() {
		return nil
	}
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("dial %s: %w", address, ErrPrivateAddress)
	}
	if !PublicAddr(ap.Addr()) {
		return fmt.Errorf("dial %s: %w", address, ErrPrivateAddress)
	}
	return nil
}
