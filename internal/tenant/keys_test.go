package tenant

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"encoding/hex"
	"strings"
	"testing"
)

// RFC 8032 section 7.1, TEST 1: a key pair and its signature of the empty
// message.
const (
	rfcSeed = "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60"
	rfcPub  = "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a"
	rfcSig  = "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
)

func unhex(t testing.TB, s string) []byte {
	t.Helper()
	b, err := hex.DecodeString(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// rfcSecret is the RFC 8032 key pair as a whsk_ secret.
func rfcSecret(t testing.TB) string {
	t.Helper()
	raw := append(unhex(t, rfcSeed), unhex(t, rfcPub)...)
	return Ed25519SecretPrefix + base64.StdEncoding.EncodeToString(raw)
}

// parsePublic reads a whpk_ key the way a tenant's receiver would.
func parsePublic(t *testing.T, public string) ed25519.PublicKey {
	t.Helper()
	b64, ok := strings.CutPrefix(public, Ed25519PublicPrefix)
	if !ok {
		t.Fatalf("public key %q lacks %q", public, Ed25519PublicPrefix)
	}
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(raw) != ed25519.PublicKeySize {
		t.Fatalf("public key %q: got %d bytes, err %v; want %d bytes", public, len(raw), err, ed25519.PublicKeySize)
	}
	return raw
}

// TestNewEd25519Secret: a fresh pair has the prefixes and lengths of the
// spec, parses back, and what its secret signs its public key verifies.
func TestNewEd25519Secret(t *testing.T) {
	secret, public := NewEd25519Secret()
	if got, want := len(secret), len(Ed25519SecretPrefix)+88; got != want {
		t.Errorf("secret length: got %d, want %d", got, want)
	}
	if got, want := len(public), len(Ed25519PublicPrefix)+44; got != want {
		t.Errorf("public key length: got %d, want %d", got, want)
	}
	key, err := Ed25519Key(secret)
	if err != nil {
		t.Fatalf("Ed25519Key of a new secret: %v", err)
	}
	if got, err := PublicKeyOf(secret); err != nil || got != public {
		t.Errorf("PublicKeyOf: got %q, %v; want %q", got, err, public)
	}
	msg := []byte("evt_1.1767225601.{}")
	if !ed25519.Verify(parsePublic(t, public), msg, ed25519.Sign(key, msg)) {
		t.Error("the public key does not verify what the secret signed")
	}

	secret2, public2 := NewEd25519Secret()
	if secret2 == secret || public2 == public {
		t.Error("two calls gave the same key")
	}
}

// TestEd25519KeyRFC8032: the secret holds the RFC's key pair exactly: the
// public key and the signature are the RFC's.
func TestEd25519KeyRFC8032(t *testing.T) {
	secret := rfcSecret(t)
	key, err := Ed25519Key(secret)
	if err != nil {
		t.Fatal(err)
	}
	if got, want := hex.EncodeToString(key.Seed()), rfcSeed; got != want {
		t.Errorf("seed: got %s, want %s", got, want)
	}
	if got, want := hex.EncodeToString(ed25519.Sign(key, nil)), rfcSig; got != want {
		t.Errorf("signature of the empty message: got %s, want %s", got, want)
	}
	got, err := PublicKeyOf(secret)
	if want := Ed25519PublicPrefix + base64.StdEncoding.EncodeToString(unhex(t, rfcPub)); err != nil || got != want {
		t.Errorf("PublicKeyOf: got %q, %v; want %q", got, err, want)
	}
}

// badEd25519Secrets are secrets Ed25519Key must refuse.
func badEd25519Secrets(t testing.TB) map[string]string {
	seed, pub := unhex(t, rfcSeed), unhex(t, rfcPub)
	key := append(append([]byte{}, seed...), pub...)
	b64 := base64.StdEncoding.EncodeToString
	otherPub := ed25519.NewKeyFromSeed(bytes.Repeat([]byte{7}, 32)).Public().(ed25519.PublicKey)
	return map[string]string{
		"empty":                 "",
		"prefix only":           Ed25519SecretPrefix,
		"no prefix":             b64(key),
		"upper-case prefix":     "WHSK_" + b64(key),
		"hmac prefix":           SigningSecretPrefix + b64(key),
		"public prefix":         Ed25519PublicPrefix + b64(key),
		"not base64":            Ed25519SecretPrefix + "not*base64!",
		"url-safe base64":       Ed25519SecretPrefix + base64.URLEncoding.EncodeToString(append(bytes.Repeat([]byte{0xfb}, 32), pub...)),
		"unpadded":              Ed25519SecretPrefix + base64.RawStdEncoding.EncodeToString(key[:63]),
		"seed only":             Ed25519SecretPrefix + b64(seed),
		"public key only":       Ed25519SecretPrefix + b64(pub),
		"63 bytes":              Ed25519SecretPrefix + b64(key[:63]),
		"65 bytes":              Ed25519SecretPrefix + b64(append(append([]byte{}, key...), 0)),
		"foreign public half":   Ed25519SecretPrefix + b64(append(append([]byte{}, seed...), otherPub...)),
		"space before":          Ed25519SecretPrefix + " " + b64(key),
		"trailing garbage":      Ed25519SecretPrefix + b64(key) + "A",
		"doubled prefix":        Ed25519SecretPrefix + Ed25519SecretPrefix + b64(key),
		"zero public half":      Ed25519SecretPrefix + b64(append(append([]byte{}, seed...), make([]byte, 32)...)),
		"hex instead of base64": Ed25519SecretPrefix + rfcSeed + rfcPub,
	}
}

// ed25519KeyErrors are every message Ed25519Key can return: none depends
// on the input, so none can repeat the secret.
var ed25519KeyErrors = map[string]bool{
	"ed25519 secret lacks the whsk_ prefix":                true,
	"ed25519 secret is not whsk_ followed by base64":       true,
	"ed25519 secret is not 64 bytes (seed and public key)": true,
	"ed25519 secret's public key does not match its seed":  true,
}

// TestEd25519KeyRefuses: wrong prefix, encoding or length, or a public half
// of another seed, is an error that does not repeat the secret, from both
// Ed25519Key and PublicKeyOf.
func TestEd25519KeyRefuses(t *testing.T) {
	for name, secret := range badEd25519Secrets(t) {
		t.Run(name, func(t *testing.T) {
			key, err := Ed25519Key(secret)
			if err == nil {
				t.Fatalf("got key %x, want an error", key)
			}
			if !ed25519KeyErrors[err.Error()] {
				t.Errorf("got error %q, want one of the fixed messages", err)
			}
			if b64 := strings.TrimPrefix(secret, Ed25519SecretPrefix); len(b64) > 8 && strings.Contains(err.Error(), b64) {
				t.Errorf("error %q repeats the secret", err)
			}
			if pub, err := PublicKeyOf(secret); err == nil || pub != "" {
				t.Errorf("PublicKeyOf: got %q, %v; want an error", pub, err)
			}
		})
	}
}

// FuzzEd25519Key: any string is refused with a fixed message, or is a key
// whose public half belongs to its seed and which reads back from its own
// canonical whsk_ form.
func FuzzEd25519Key(f *testing.F) {
	f.Add(rfcSecret(f))
	secret, _ := NewEd25519Secret()
	f.Add(secret)
	for _, s := range badEd25519Secrets(f) {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, secret string) {
		key, err := Ed25519Key(secret)
		if err != nil {
			if !ed25519KeyErrors[err.Error()] {
				t.Fatalf("error %q is not one of the fixed messages", err)
			}
			return
		}
		if len(key) != ed25519.PrivateKeySize {
			t.Fatalf("key of %d bytes", len(key))
		}
		if !bytes.Equal(ed25519.NewKeyFromSeed(key.Seed()), key) {
			t.Fatal("public half does not belong to the seed")
		}
		again, err := Ed25519Key(Ed25519SecretPrefix + base64.StdEncoding.EncodeToString(key))
		if err != nil || !bytes.Equal(again, key) {
			t.Fatalf("canonical form: got %x, %v", again, err)
		}
		if _, err := PublicKeyOf(secret); err != nil {
			t.Fatalf("PublicKeyOf: %v", err)
		}
	})
}
