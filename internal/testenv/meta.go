package testenv

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/postgate/postgate/internal/secrets"
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

// Resolver answers DNS lookups from a map of host to addresses, so no test
// resolves a real name; an unknown host is "no such host".
type Resolver map[string][]string

// LookupNetIP implements the resolver interfaces of tenant and delivery.
func (r Resolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	addrs, ok := r[host]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	out := make([]netip.Addr, len(addrs))
	for i, a := range addrs {
		out[i] = netip.MustParseAddr(a)
	}
	return out, nil
}

// Keyring is a keyring with a fresh random key, for a test's secrets at
// rest.
func Keyring(t testing.TB) *secrets.Keyring {
	t.Helper()
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		t.Fatal(err)
	}
	keys, err := secrets.NewKeyring(k, nil)
	if err != nil {
		t.Fatal(err)
	}
	return keys
}
