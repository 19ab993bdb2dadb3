package delivery

import (
	"bytes"
	"errors"
	"net"
	"net/http"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"code.dny.dev/ssrf"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// TestSignMatchesLibrary: our signer and the Standard Webhooks library
// agree, for one key and for two (rotation).
func TestSignMatchesLibrary(t *testing.T) {
	keys := [][]byte{[]byte("first-key-0123456789"), []byte("second-key-9876543210")}
	body := []byte(`{"id":"evt_1","event":{"text":"caf\u00e9 \/ <b>"}}`)
	at := time.Now()
	for n := 1; n <= 2; n++ {
		sig := Sign(keys[:n], "evt_1", at.Unix(), body)
		if got := len(strings.Fields(sig)); got != n {
			t.Errorf("%d keys: got %d signatures in %q", n, got, sig)
		}
		h := http.Header{}
		h.Set("webhook-id", "evt_1")
		h.Set("webhook-timestamp", strconv.FormatInt(at.Unix(), 10))
		h.Set("webhook-signature", sig)
		for i := range n {
			wh, _ := standardwebhooks.NewWebhookRaw(keys[i])
			if err := wh.Verify(body, h); err != nil {
				t.Errorf("%d keys, key %d: %v", n, i, err)
			}
			want, _ := wh.Sign("evt_1", at, body)
			if !strings.Contains(sig, want) {
				t.Errorf("%d keys, key %d: got %q, want it to contain %q", n, i, sig, want)
			}
		}
	}
}

func TestJitter(t *testing.T) {
	d := time.Second
	for range 1000 {
		got := jitter(d, 0.2)
		if got < 800*time.Millisecond || got > 1200*time.Millisecond {
			t.Fatalf("jitter(1s, 0.2): got %s, want within ±20%%", got)
		}
	}
	if got := jitter(d, 0); got != d {
		t.Errorf("jitter(1s, 0): got %s, want 1s", got)
	}
}

func TestParseRetryAfter(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	tests := []struct {
		in   string
		want time.Duration
	}{
		{"", 0},
		{"0", 0},
		{"-5", 0},
		{"30", 30 * time.Second},
		{"999999", time.Hour},
		{"soon", 0},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{now.Add(-time.Minute).Format(http.TimeFormat), 0},
		{now.Add(48 * time.Hour).Format(http.TimeFormat), time.Hour},
	}
	for _, tt := range tests {
		if got := parseRetryAfter(tt.in, now, time.Hour); got != tt.want {
			t.Errorf("parseRetryAfter(%q): got %s, want %s", tt.in, got, tt.want)
		}
	}
}

func TestClassify(t *testing.T) {
	statuses := []struct {
		code int
		want string
	}{
		{200, ClassOK}, {204, ClassOK}, {301, Class3xx}, {400, Class4xx}, {404, Class4xx},
		{410, Class410}, {429, Class429}, {500, Class5xx}, {503, Class5xx},
	}
	for _, tt := range statuses {
		if got := classifyStatus(tt.code); got != tt.want {
			t.Errorf("classifyStatus(%d): got %s, want %s", tt.code, got, tt.want)
		}
	}
	errs := []struct {
		err  error
		want string
	}{
		{&net.DNSError{Err: "no such host", Name: "x.test", IsNotFound: true}, ClassDNS},
		{&net.OpError{Op: "dial", Err: syscall.ECONNREFUSED}, ClassRefused},
		{&net.OpError{Op: "dial", Err: ssrf.ErrProhibitedIP}, ClassBlocked},
		{errors.New("tls: handshake failure"), ClassTLS},
		{errors.New("EOF"), ClassConnection},
	}
	for _, tt := range errs {
		if got, _ := classifyErr(tt.err); got != tt.want {
			t.Errorf("classifyErr(%v): got %s, want %s", tt.err, got, tt.want)
		}
	}
}

func TestCleanText(t *testing.T) {
	long := bytes.Repeat([]byte("é"), 600) // 1200 bytes
	tests := []struct {
		in   []byte
		want string
	}{
		{[]byte("ok"), "ok"},
		{[]byte("a\x00b"), "ab"},
		{[]byte{'a', 0xff, 'b'}, "a\uFFFDb"},
		{long, strings.Repeat("é", 512)},
	}
	for _, tt := range tests {
		if got := cleanText(tt.in); got != tt.want {
			t.Errorf("cleanText(%q): got %q (%d bytes), want %q", tt.in[:min(len(tt.in), 20)], got[:min(len(got), 20)], len(got), tt.want[:min(len(tt.want), 20)])
		}
	}
}
