package tenant

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"code.dny.dev/ssrf"
)

// Resolver looks up a host's addresses; *net.Resolver is one. Tests inject
// a map so that no test resolves a real name.
type Resolver interface {
	LookupNetIP(ctx context.Context, network, host string) ([]netip.Addr, error)
}

// MaxCallbackURLLength bounds a callback URL.
const MaxCallbackURLLength = 2048

// Addresses no callback may reach unless private callbacks are allowed,
// beyond ssrf's lists: the cloud metadata endpoints, named for the error.
var metadataAddrs = []netip.Addr{
	netip.MustParseAddr("169.254.169.254"), // AWS, GCP, Azure, OpenStack
	netip.MustParseAddr("fd00:ec2::254"),   // AWS IPv6
}

// guardian classifies addresses with ssrf's IANA special-purpose lists
// (every IPv4 special range; all of IPv6 outside global unicast and the
// special ranges inside it). Ports and networks are not its business here.
var guardian = ssrf.New(ssrf.WithAnyPort(), ssrf.WithAnyNetwork())

// CheckCallbackURL validates a tenant's callback URL: absolute, https (http
// only when allowPrivate), no user info, no fragment, and a host whose
// every address is public unless allowPrivate. It resolves the host with r
// (bounded to 5 s). Errors are *FieldError on callback_url wrapping
// ErrInvalid; they never repeat the URL, which could carry a credential.
//
// The delivery worker checks the connected address again (DNS can change
// between registration and delivery); this check makes the mistake visible
// when it is made.
func CheckCallbackURL(ctx context.Context, raw string, allowPrivate bool, r Resolver) error {
	bad := func(msg string) error { return invalid("callback_url", "%s", msg) }
	if raw == "" {
		return bad("is required")
	}
	if err := checkText("callback_url", raw); err != nil {
		return err
	}
	if len(raw) > MaxCallbackURLLength {
		return bad("is longer than " + strconv.Itoa(MaxCallbackURLLength) + " bytes")
	}
	if strings.ContainsAny(raw, " \t\r\n") {
		return bad("must not contain whitespace")
	}
	u, err := url.Parse(raw)
	if err != nil {
		return bad("is not a URL")
	}
	switch {
	case !u.IsAbs() || u.Host == "":
		return bad("must be an absolute URL")
	case u.Scheme != "https" && !(u.Scheme == "http" && allowPrivate):
		if u.Scheme == "http" {
			return bad("must use https (http is allowed only with CALLBACK_ALLOW_PRIVATE)")
		}
		return bad("must use https")
	case u.User != nil:
		return bad("must not contain user info; authenticate callbacks with the webhook-signature header")
	case u.Fragment != "" || strings.Contains(raw, "#"):
		return bad("must not contain a fragment")
	case u.Opaque != "":
		return bad("must be an absolute URL")
	}
	if p := u.Port(); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return bad("has an invalid port")
		}
	}
	host := u.Hostname()
	if host == "" {
		return bad("must name a host")
	}

	var addrs []netip.Addr
	if a, err := netip.ParseAddr(host); err == nil {
		addrs = []netip.Addr{a}
	} else {
		ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		addrs, err = r.LookupNetIP(ctx, "ip", host)
		if err != nil || len(addrs) == 0 {
			var dnsErr *net.DNSError
			if errors.As(err, &dnsErr) && dnsErr.IsNotFound {
				return bad("host does not exist (DNS lookup found no such host)")
			}
			return bad("host could not be resolved")
		}
	}
	if allowPrivate {
		return nil
	}
	for _, a := range addrs {
		if why := nonPublic(a); why != "" {
			return bad("host resolves to a " + why + " address; such callbacks are allowed only with CALLBACK_ALLOW_PRIVATE")
		}
	}
	return nil
}

// nonPublic says why a is not a public unicast address, or "" if it is.
func nonPublic(a netip.Addr) string {
	a = a.WithZone("")
	u := a.Unmap()
	for _, m := range metadataAddrs {
		if u == m {
			return "cloud metadata"
		}
	}
	switch {
	case u.IsLoopback():
		return "loopback"
	case u.IsUnspecified():
		return "unspecified"
	case u.IsLinkLocalUnicast(), u.IsLinkLocalMulticast():
		return "link-local"
	case u.IsMulticast():
		return "multicast"
	case u.IsPrivate():
		return "private"
	case u.Is4() && cgnat.Contains(u):
		return "carrier-grade NAT"
	}
	if guardian.SafeAddr(a) != nil {
		return "reserved"
	}
	return ""
}

var cgnat = netip.MustParsePrefix("100.64.0.0/10")
