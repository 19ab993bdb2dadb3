package webhook_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/postgate/postgate/internal/webhook"
)

// TestSHA1OnlyNamesTheMissingHeader: Meta sends both signature headers; a
// request with only X-Hub-Signature (SHA-1) to an app without legacy_sha1
// lacks the SHA-256 one, and the 401 must say so rather than claim a
// signature mismatch, which sends the operator hunting for a wrong secret.
func TestSHA1OnlyNamesTheMissingHeader(t *testing.T) {
	e := newEnv(t)
	a := e.standard()
	e.addApp(a, "3003", "legacy-secret")
	e.exec(`UPDATE apps SET legacy_sha1 = true WHERE app_id = '3003'`)
	e.reload()
	body := fixture(t, "01-postback-basic.json")
	tests := []struct {
		name, app, sig256, sig1 string
		want                    string
	}{
		{"app path, sha1 only, no fallback", "1001", "", sign1(fixtureSecret, body), "missing X-Hub-Signature-256"},
		{"shared, sha1 only, no fallback", "", "", sign1(fixtureSecret, body), "missing X-Hub-Signature-256"},
		{"app path, wrong sha1, fallback", "3003", "", sign1("nope", body), "signature does not match"},
		{"app path, wrong sha256", "1001", sign256("nope", body), "", "signature does not match"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := e.ing.Ingest(context.Background(), webhook.Request{AppID: tt.app, Body: body, Signature256: tt.sig256, Signature1: tt.sig1, ReceivedAt: time.Now()})
			if got.Outcome != webhook.OutcomeBadSignature {
				t.Fatalf("got outcome %d (%q), want a 401", got.Outcome, got.Message)
			}
			if !strings.Contains(got.Message, tt.want) {
				t.Errorf("got message %q, want it to contain %q", got.Message, tt.want)
			}
			if tt.want != "signature does not match" && !strings.Contains(got.Message, "legacy_sha1") {
				t.Errorf("got message %q, want it to say SHA-1 alone needs legacy_sha1", got.Message)
			}
		})
	}
}
