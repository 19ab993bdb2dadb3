package tenant

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"net/url"
	"slices"
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
// (bounded to 5 s). Errors are one *FieldError on callback_url wrapping
// ErrInvalid; they never repeat the URL, which could carry a credential.
// Once the URL parses, its message gives every reason it is refused
// ("must use https; host resolves to a cloud metadata address"), so that
// fixing one does not only reveal the next.
//
// The delivery worker checks the connected address again (DNS can change
// between registration and delivery); this check makes the mistake visible
// when it is made.
func CheckCallbackURL(ctx context.Context, raw string, allowPrivate bool, r Resolver) error {
	bad := func(msg string) error { return invalid("callback_url", "%s", msg) }
	// After any of these nothing else can be checked.
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
	if !u.IsAbs() || u.Host == "" || u.Opaque != "" {
		return bad("must be an absolute URL")
	}

	var why []string
	switch {
	case u.Scheme == "https", u.Scheme == "http" && allowPrivate:
	case u.Scheme == "http":
		why = append(why, "must use https (http is allowed only with CALLBACK_ALLOW_PRIVATE)")
	default:
		why = append(why, "must use https")
	}
	if u.User != nil {
		why = append(why, "must not contain user info; authenticate callbacks with the webhook-signature header")
	}
	if u.Fragment != "" || strings.Contains(raw, "#") {
		why = append(why, "must not contain a fragment")
	}
	if p := u.Port(); p != "" {
		if n, err := strconv.Atoi(p); err != nil || n < 1 || n > 65535 {
			why = append(why, "has an invalid port")
		}
	}
	if host := u.Hostname(); host == "" {
		why = append(why, "must name a host")
	} else if msg := checkHost(ctx, host, allowPrivate, r); msg != "" {
		why = append(why, msg)
	}
	if len(why) > 0 {
		return bad(strings.Join(why, "; "))
	}
	return nil
}

// checkHost says what is wrong with a callback's host (it does not
// resolve, or to an address that is not public while !allowPrivate), or ""
// when nothing is.
func checkHost(ctx context.Context, host string, allowPrivate bool, r Resolver) string {
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
				return "host does not exist (DNS lookup found no such host)"
			}
			return "host could not be resolved"
		}
	}
	if allowPrivate {
		return ""
	}
	var kinds []string
	for _, a := range addrs {
		if why := nonPublic(a); why != "" && !slices.Contains(kinds, why) {
			kinds = append(kinds, why)
		}
	}
	if len(kinds) == 0 {
		return ""
	}
	return "host resolves to a " + strings.Join(kinds, " and a ") + " address; such callbacks are allowed only with CALLBACK_ALLOW_PRIVATE"
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
