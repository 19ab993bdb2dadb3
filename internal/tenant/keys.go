package tenant

import (
	"bytes"
	"crypto/ed25519"
	"encoding/base64"
	"errors"
	"strings"
)

// Prefixes of the Standard Webhooks asymmetric (v1a, Ed25519) keys.
//
// A whsk_ secret is the prefix + base64 (standard, padded) of the 64-byte
// Ed25519 private key: the 32-byte RFC 8032 seed followed by the 32-byte
// public key. The spec says only "base64 encoded"; this is the form Svix,
// where the spec comes from, reads and writes (its server serialises the
// 64-byte ed25519_compact secret key), and it is Go's ed25519.PrivateKey as
// is. A whpk_ key is the prefix + base64 of the 32-byte public key.
const (
	// Ed25519SecretPrefix starts an endpoint's private signing key, which
	// only the gateway keeps.
	Ed25519SecretPrefix = "whsk_"
	// Ed25519PublicPrefix starts the public key a tenant verifies with.
	Ed25519PublicPrefix = "whpk_"
)

// NewEd25519Secret generates an Ed25519 key pair from crypto/rand and
// returns it as a whsk_ secret and the matching whpk_ public key.
func NewEd25519Secret() (secret, public string) {
	key := ed25519.NewKeyFromSeed(randomBytes(ed25519.SeedSize))
	return Ed25519SecretPrefix + base64.StdEncoding.EncodeToString(key),
		publicKeyString(key.Public().(ed25519.PublicKey))
}

// Ed25519Key is the private key of a whsk_ secret. It refuses a secret
// without the prefix, one whose rest is not base64 of 64 bytes, and one
// whose public half does not belong to its seed (it would sign with a key
// no whpk_ verifies). Errors never contain the secret.
func Ed25519Key(secret string) (ed25519.PrivateKey, error) {
	b64, ok := strings.CutPrefix(secret, Ed25519SecretPrefix)
	if !ok {
		return nil, errors.New("ed25519 secret lacks the whsk_ prefix")
	}
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return nil, errors.New("ed25519 secret is not whsk_ followed by base64")
	}
	if len(raw) != ed25519.PrivateKeySize {
		return nil, errors.New("ed25519 secret is not 64 bytes (seed and public key)")
	}
	key := ed25519.NewKeyFromSeed(raw[:ed25519.SeedSize])
	if !bytes.Equal(key[ed25519.SeedSize:], raw[ed25519.SeedSize:]) {
		return nil, errors.New("ed25519 secret's public key does not match its seed")
	}
	return key, nil
}

// PublicKeyOf is the whpk_ public key of a whsk_ secret, the one a tenant
// verifies v1a signatures with.
func PublicKeyOf(secret string) (string, error) {
	key, err := Ed25519Key(secret)
	if err != nil {
		return "", err
	}
	return publicKeyString(key.Public().(ed25519.PublicKey)), nil
}

func publicKeyString(pub ed25519.PublicKey) string {
	return Ed25519PublicPrefix + base64.StdEncoding.EncodeToString(pub)
}
