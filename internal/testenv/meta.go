package testenv

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// FixtureSecret is the app secret that signs every body in the Messenger
// fixtures (internal/webhook/testdata/messenger).
const FixtureSecret = "gateway-test-secret-not-real"

// FixtureDir is the folder of the Messenger fixtures, wherever the test
// that asks runs from.
func FixtureDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "webhook", "testdata", "messenger")
}

// Fixture returns the exact bytes of one Messenger fixture.
func Fixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(FixtureDir(), name))
	if err != nil {
		t.Fatalf("testenv: read fixture: %v", err)
	}
	return b
}

// SignMeta returns the X-Hub-Signature-256 value Meta would send for body
// signed with an app's secret.
func SignMeta(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return "sha256=" + hex.EncodeToString(m.Sum(nil))
}
