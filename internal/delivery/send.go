package delivery

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"code.dny.dev/ssrf"

	"github.com/postgate/postgate/internal/tenant"
)

// Limits of what is read from an endpoint's answer.
const (
	// SnippetBytes of the response are kept in the attempt log.
	SnippetBytes = 1024
	// maxDrain bytes are read (and discarded) after the snippet so the
	// connection can be reused; a longer answer closes it.
	maxDrain = 64 << 10
)

// Outcome classes of an attempt: the metric label and the attempt log's
// error_class. A small fixed set.
const (
	ClassOK         = "ok"
	Class3xx        = "http_3xx"
	Class4xx        = "http_4xx"
	Class410        = "http_410"
	Class429        = "http_429"
	Class5xx        = "http_5xx"
	ClassTimeout    = "timeout"
	ClassDNS        = "dns"
	ClassRefused    = "refused"
	ClassTLS        = "tls"
	ClassBlocked    = "blocked"
	ClassConnection = "connection"
)

// request is one attempt to send: the body and the headers of its
// format, signed (see build.go).
type request struct {
	url    string
	body   []byte
	header [][2]string
	at     time.Time
}

// result is what came of an attempt.
type result struct {
	status     int
	class      string
	err        string // without the URL
	snippet    string
	latency    time.Duration
	retryAfter time.Duration // from a 429 or 503; 0 if none
	canceled   bool          // the worker gave up (shutdown): not an attempt
}

// sender makes the HTTP attempts.
type sender struct {
	client    *http.Client
	userAgent string
	timeout   time.Duration
	maxRA     time.Duration
}

func newSender(cfg *Config) *sender {
	d := &dialer{
		resolver: cfg.Resolver,
		dialer:   &net.Dialer{Timeout: min(cfg.Timeout, 5*time.Second), KeepAlive: 30 * time.Second},
	}
	if d.resolver == nil {
		d.resolver = net.DefaultResolver
	}
	if !cfg.AllowPrivate {
		// Checked on the address actually connected to, after DNS: a name
		// that resolves (or rebinds) to a private address is refused.
		d.dialer.Control = ssrf.New(ssrf.WithAnyPort()).Safe
	}
	transport := &http.Transport{
		Proxy:                 nil, // a proxy would connect for us, past the dial-time check
		DialContext:           d.dial,
		TLSClientConfig:       &tls.Config{MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:   min(cfg.Timeout, 5*time.Second),
		ResponseHeaderTimeout: cfg.Timeout,
		ExpectContinueTimeout: 0,
		ForceAttemptHTTP2:     true,
		// A tenant may have up to the worker's whole Concurrency in flight
		// (its own limit can exceed TENANT_CONCURRENCY); fewer idle slots
		// would close and redial connections under steady load.
		MaxIdleConns:           max(512, cfg.Concurrency),
		MaxIdleConnsPerHost:    max(cfg.Concurrency, 2),
		IdleConnTimeout:        60 * time.Second,
		MaxResponseHeaderBytes: 64 << 10,
	}
	return &sender{
		client: &http.Client{
			Transport: transport,
			// Never follow a redirect: the 3xx is the answer (a failure).
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
			Timeout:       cfg.Timeout,
		},
		userAgent: cfg.UserAgent,
		timeout:   cfg.Timeout,
		maxRA:     cfg.MaxRetryAfter,
	}
}

// dialer resolves with an injectable resolver and dials each address with
// the guarded net.Dialer.
type dialer struct {
	resolver tenant.Resolver
	dialer   *net.Dialer
}

func (d *dialer) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, err
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("bad port %q", portStr)
	}
	var ips []netip.Addr
	if ip, err := netip.ParseAddr(host); err == nil {
		ips = []netip.Addr{ip}
	} else {
		ips, err = d.resolver.LookupNetIP(ctx, "ip", host)
		if err != nil {
			return nil, err
		}
		if len(ips) == 0 {
			return nil, &net.DNSError{Err: "no addresses", Name: host, IsNotFound: true}
		}
	}
	var first error
	for _, ip := range ips {
		c, err := d.dialer.DialContext(ctx, network, netip.AddrPortFrom(ip.Unmap(), uint16(port)).String())
		if err == nil {
			return c, nil
		}
		if first == nil {
			first = err
		}
		if ctx.Err() != nil {
			break
		}
	}
	return nil, first
}

// Sign is the webhook-signature header of a delivery: one
// "v1,<base64 HMAC-SHA256(key, msgID.timestamp.body)>" per key, space
// separated (Standard Webhooks).
func Sign(keys [][]byte, msgID string, timestamp int64, body []byte) string {
	var b []byte
	ts := strconv.AppendInt(nil, timestamp, 10)
	for i, k := range keys {
		m := hmac.New(sha256.New, k)
		m.Write([]byte(msgID))
		m.Write([]byte{'.'})
		m.Write(ts)
		m.Write([]byte{'.'})
		m.Write(body)
		if i > 0 {
			b = append(b, ' ')
		}
		b = append(b, "v1,"...)
		b = base64.StdEncoding.AppendEncode(b, m.Sum(nil))
	}
	return string(b)
}

// send makes one attempt. ctx is the worker's: when it is canceled the
// attempt is abandoned and reported canceled (not an attempt).
func (s *sender) send(ctx context.Context, r request) result {
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.url, bytes.NewReader(r.body))
	if err != nil {
		return result{class: ClassConnection, err: "callback URL is not usable"}
	}
	h := req.Header
	for _, kv := range r.header {
		h[kv[0]] = []string{kv[1]}
	}
	h["Content-Type"] = []string{"application/json"}
	h["User-Agent"] = []string{s.userAgent}

	start := time.Now()
	resp, err := s.client.Do(req)
	var res result
	if err != nil {
		res.latency = time.Since(start)
		if errors.Is(ctx.Err(), context.Canceled) {
			return result{canceled: true, latency: res.latency}
		}
		res.class, res.err = classifyErr(err)
		return res
	}
	res.status = resp.StatusCode
	snippet := make([]byte, SnippetBytes)
	n, _ := io.ReadFull(resp.Body, snippet)
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, maxDrain))
	_ = resp.Body.Close()
	res.latency = time.Since(start)
	res.snippet = cleanText(snippet[:n])
	res.class = classifyStatus(resp.StatusCode)
	if resp.StatusCode == http.StatusTooManyRequests || resp.StatusCode == http.StatusServiceUnavailable {
		res.retryAfter = parseRetryAfter(resp.Header.Get("Retry-After"), r.at, s.maxRA)
	}
	if res.class != ClassOK {
		res.err = "HTTP " + strconv.Itoa(resp.StatusCode)
	}
	return res
}

func classifyStatus(code int) string {
	switch {
	case code >= 200 && code < 300:
		return ClassOK
	case code == http.StatusGone:
		return Class410
	case code == http.StatusTooManyRequests:
		return Class429
	case code >= 300 && code < 400:
		return Class3xx
	case code >= 500:
		return Class5xx
	}
	return Class4xx
}

// classifyErr names why no answer came, and describes it without the URL
// (it may carry a credential in its query).
func classifyErr(err error) (string, string) {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	msg := err.Error()
	if len(msg) > 300 {
		msg = msg[:300]
	}
	var (
		dnsErr  *net.DNSError
		netErr  net.Error
		certErr *tls.CertificateVerificationError
		recErr  tls.RecordHeaderError
		unkErr  x509.UnknownAuthorityError
		hostErr x509.HostnameError
	)
	switch {
	case errors.Is(err, ssrf.ErrProhibitedIP), errors.Is(err, ssrf.ErrProhibitedPort), errors.Is(err, ssrf.ErrProhibitedNetwork):
		return ClassBlocked, msg
	case errors.As(err, &dnsErr):
		return ClassDNS, msg
	case errors.Is(err, context.DeadlineExceeded), errors.As(err, &netErr) && netErr.Timeout():
		return ClassTimeout, msg
	case errors.Is(err, syscall.ECONNREFUSED):
		return ClassRefused, msg
	case errors.As(err, &certErr), errors.As(err, &recErr), errors.As(err, &unkErr), errors.As(err, &hostErr),
		strings.Contains(msg, "tls: "):
		return ClassTLS, msg
	}
	return ClassConnection, msg
}

// parseRetryAfter reads a Retry-After header (seconds or an HTTP date),
// capped at max; 0 when absent or unreadable.
func parseRetryAfter(v string, now time.Time, maxWait time.Duration) time.Duration {
	v = strings.TrimSpace(v)
	if v == "" {
		return 0
	}
	var d time.Duration
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n <= 0 {
			return 0
		}
		if n > int64(maxWait/time.Second) {
			return maxWait
		}
		d = time.Duration(n) * time.Second
	} else if t, err := http.ParseTime(v); err == nil {
		d = t.Sub(now)
	} else {
		return 0
	}
	return min(max(d, 0), maxWait)
}

// cleanText makes response bytes storable as text: valid UTF-8, no NULs,
// at most SnippetBytes.
func cleanText(b []byte) string {
	if len(b) == 0 {
		return ""
	}
	s := strings.ToValidUTF8(string(b), "\uFFFD")
	s = strings.ReplaceAll(s, "\x00", "")
	for len(s) > SnippetBytes {
		_, size := utf8.DecodeLastRuneInString(s)
		s = s[:len(s)-size]
	}
	return s
}
