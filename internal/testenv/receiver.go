package testenv

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The checks a tenant's receiver makes, written from the specifications
// (Standard Webhooks v1a, Meta's X-Hub-Signature), not from the gateway's
// signer: tests verify deliveries with them.

// Ed25519PublicKey reads a "whpk_<base64>" key as a receiver would.
func Ed25519PublicKey(t testing.TB, whpk string) ed25519.PublicKey {
	t.Helper()
	b64, ok := strings.CutPrefix(whpk, "whpk_")
	if !ok {
		t.Fatalf("public key %q lacks whpk_", whpk)
	}
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(raw) != ed25519.PublicKeySize {
		t.Fatalf("public key %q: %d bytes, %v", whpk, len(raw), err)
	}
	return raw
}

// VerifyV1a reports whether some "v1a,<base64>" entry of a
// webhook-signature header is an Ed25519 signature, by one of the trusted
// keys, of "id.timestamp.body" built from what the receiver got.
func VerifyV1a(trusted []ed25519.PublicKey, msgID, timestamp string, body []byte, header string) bool {
	signed := []byte(msgID + "." + timestamp + "." + string(body))
	for _, entry := range strings.Split(header, " ") {
		version, b64, ok := strings.Cut(entry, ",")
		if !ok || version != "v1a" {
			continue
		}
		sig, err := base64.StdEncoding.DecodeString(b64)
		if err != nil {
			continue
		}
		for _, pub := range trusted {
			if ed25519.Verify(pub, signed, sig) {
				return true
			}
		}
	}
	return false
}

// VerifyV1aHeaders is VerifyV1a on a request's Standard Webhooks headers,
// which must carry exactly one signature and a timestamp of now.
func VerifyV1aHeaders(pub ed25519.PublicKey, h http.Header, body []byte) error {
	ts, err := strconv.ParseInt(h.Get("webhook-timestamp"), 10, 64)
	if err != nil || time.Since(time.Unix(ts, 0)).Abs() > time.Minute {
		return fmt.Errorf("webhook-timestamp %q is not Unix seconds of now", h.Get("webhook-timestamp"))
	}
	if sigs := strings.Fields(h.Get("webhook-signature")); len(sigs) != 1 {
		return fmt.Errorf("webhook-signature %q: want one signature", h.Get("webhook-signature"))
	}
	if !VerifyV1a([]ed25519.PublicKey{pub}, h.Get("webhook-id"), h.Get("webhook-timestamp"), body, h.Get("webhook-signature")) {
		return fmt.Errorf("webhook-signature %q: no v1a signature verifies with the endpoint's public key", h.Get("webhook-signature"))
	}
	return nil
}

// VerifyHubSignature checks an X-Hub-Signature-256 header (or, with
// sha1Header, X-Hub-Signature) as Meta's documentation tells a receiver
// to: the HMAC of the raw body with the app secret, compared in constant
// time with the hex after the "sha256=" (or "sha1=") prefix.
func VerifyHubSignature(appSecret, body []byte, header string, sha1Header bool) bool {
	prefix, h := "sha256=", sha256.New
	if sha1Header {
		prefix, h = "sha1=", sha1.New
	}
	hexSig, ok := strings.CutPrefix(header, prefix)
	if !ok {
		return false
	}
	got, err := hex.DecodeString(hexSig)
	if err != nil {
		return false
	}
	m := hmac.New(h, appSecret)
	m.Write(body)
	return hmac.Equal(got, m.Sum(nil))
}

// VerifyMetaHeaders checks both of a Meta-format request's signatures.
func VerifyMetaHeaders(appSecret []byte, h http.Header, body []byte) error {
	if !VerifyHubSignature(appSecret, body, h.Get("X-Hub-Signature-256"), false) {
		return fmt.Errorf("X-Hub-Signature-256 %q does not verify", h.Get("X-Hub-Signature-256"))
	}
	if !VerifyHubSignature(appSecret, body, h.Get("X-Hub-Signature"), true) {
		return fmt.Errorf("X-Hub-Signature %q does not verify", h.Get("X-Hub-Signature"))
	}
	return nil
}
