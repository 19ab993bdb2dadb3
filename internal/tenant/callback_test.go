package tenant

import (
	"context"
	"errors"
	"github.com/postgate/postgate/internal/testenv"
	"strings"
	"testing"
)

var testResolver = testenv.Resolver{
	"hooks.example.com":     {"93.184.215.14"},
	"v6.example.com":        {"2606:2800:21f:cb07:6820:80da:af6b:8b2c"},
	"localhost":             {"127.0.0.1", "::1"},
	"ten.example.com":       {"10.0.0.5"},
	"oneseventwo.example":   {"172.20.1.1"},
	"oneninetwo.example":    {"192.168.1.1"},
	"linklocal.example":     {"169.254.10.10"},
	"metadata.example":      {"169.254.169.254"},
	"metadata6.example":     {"fd00:ec2::254"},
	"cgnat.example":         {"100.64.1.1"},
	"unspecified.example":   {"0.0.0.0"},
	"multicast.example":     {"239.1.2.3"},
	"ula.example":           {"fd12:3456::1"},
	"mapped.example":        {"::ffff:127.0.0.1"},
	"mixed.example":         {"93.184.215.14", "10.0.0.1"},
	"empty.example":         {},
	"v6linklocal.example":   {"fe80::1"},
	"documentation.example": {"192.0.2.10"},
}

func TestCheckCallbackURL(t *testing.T) {
	tests := []struct {
		url          string
		allowPrivate bool
		wantMsg      string // "" means valid
	}{
		{"https://hooks.example.com/meta", false, ""},
		{"https://hooks.example.com:8443/meta?x=1", false, ""},
		{"https://v6.example.com/", false, ""},
		{"https://93.184.215.14/hook", false, ""},
		{"https://[2606:2800:21f:cb07:6820:80da:af6b:8b2c]/hook", false, ""},
		{"http://hooks.example.com/", false, "must use https"},
		{"ftp://hooks.example.com/", true, "must use https"},
		{"https://user:pass@hooks.example.com/", false, "user info"},
		{"https://user@hooks.example.com/", false, "user info"},
		{"https://hooks.example.com/#frag", false, "fragment"},
		{"https://hooks.example.com/#", false, "fragment"},
		{"/relative", false, "absolute"},
		{"hooks.example.com/x", false, "absolute"},
		{"https:///nohost", false, "absolute"},
		{"https://hooks.example.com:99999/", false, "port"},
		{"https://hooks.example.com/a b", false, "whitespace"},
		{"", false, "required"},
		{"https://" + strings.Repeat("a", 2050) + ".com/", false, "longer"},
		{"https://nowhere.example/", false, "does not exist"},
		{"https://empty.example/", false, "could not be resolved"},
		{"https://localhost/", false, "loopback"},
		{"https://127.0.0.1/", false, "loopback"},
		{"https://[::1]/", false, "loopback"},
		{"https://ten.example.com/", false, "private"},
		{"https://oneseventwo.example/", false, "private"},
		{"https://oneninetwo.example/", false, "private"},
		{"https://ula.example/", false, "private"},
		{"https://linklocal.example/", false, "link-local"},
		{"https://v6linklocal.example/", false, "link-local"},
		{"https://metadata.example/", false, "cloud metadata"},
		{"https://169.254.169.254/latest/meta-data", false, "cloud metadata"},
		{"https://metadata6.example/", false, "cloud metadata"},
		{"https://cgnat.example/", false, "carrier-grade NAT"},
		{"https://unspecified.example/", false, "unspecified"},
		{"https://multicast.example/", false, "multicast"},
		{"https://mapped.example/", false, "loopback"},
		{"https://mixed.example/", false, "private"},
		{"https://documentation.example/", false, "reserved"},
		// With CALLBACK_ALLOW_PRIVATE: http and private addresses pass, but
		// the URL must still be well-formed and resolve.
		{"http://localhost:3000/hook", true, ""},
		{"https://metadata.example/", true, ""},
		{"https://ten.example.com/", true, ""},
		{"http://user:pw@localhost/", true, "user info"},
		{"https://nowhere.example/", true, "does not exist"},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			err := CheckCallbackURL(context.Background(), tt.url, tt.allowPrivate, testResolver)
			if tt.wantMsg == "" {
				if err != nil {
					t.Fatalf("got %v, want valid", err)
				}
				return
			}
			var fe *FieldError
			if !errors.As(err, &fe) || !errors.Is(err, ErrInvalid) || fe.Field != "callback_url" {
				t.Fatalf("got %v, want a *FieldError on callback_url wrapping ErrInvalid", err)
			}
			if !strings.Contains(fe.Message, tt.wantMsg) {
				t.Errorf("got message %q, want it to contain %q", fe.Message, tt.wantMsg)
			}
			if strings.Contains(err.Error(), "pass") || (len(tt.url) > 10 && strings.Contains(err.Error(), tt.url)) {
				t.Errorf("error repeats the URL: %v", err)
			}
		})
	}
}

func TestSigningKey(t *testing.T) {
	if k, err := SigningKey(newSigningSecret()); err != nil || len(k) != 24 {
		t.Errorf("SigningKey of a new secret: got %d bytes, %v; want 24", len(k), err)
	}
	for _, bad := range []string{"", "whsec_", "whsec_%%%", "secret"} {
		if _, err := SigningKey(bad); err == nil {
			t.Errorf("SigningKey(%q): got no error", bad)
		}
	}
}

// TestCheckCallbackURLEveryReason: a URL wrong in several ways is refused
// with every reason at once, in one *FieldError on callback_url, so that
// fixing one does not just reveal the next.
func TestCheckCallbackURLEveryReason(t *testing.T) {
	tests := []struct {
		url  string
		want []string
	}{
		{"http://169.254.169.254/latest/meta-data", []string{"must use https", "cloud metadata"}},
		{"http://metadata.example/", []string{"must use https", "cloud metadata"}},
		{"http://user:pw@ten.example.com/#x", []string{"must use https", "user info", "fragment", "private"}},
		{"ftp://localhost:99999/", []string{"must use https", "port", "loopback"}},
		{"http://nowhere.example/", []string{"must use https", "does not exist"}},
	}
	for _, tt := range tests {
		t.Run(tt.url, func(t *testing.T) {
			err := CheckCallbackURL(context.Background(), tt.url, false, testResolver)
			var fe *FieldError
			if !errors.As(err, &fe) || !errors.Is(err, ErrInvalid) || fe.Field != "callback_url" {
				t.Fatalf("got %v, want a *FieldError on callback_url wrapping ErrInvalid", err)
			}
			for _, w := range tt.want {
				if !strings.Contains(fe.Message, w) {
					t.Errorf("got message %q, want it to contain %q", fe.Message, w)
				}
			}
			if strings.Contains(err.Error(), "pw") {
				t.Errorf("error repeats the URL: %v", err)
			}
		})
	}
}
