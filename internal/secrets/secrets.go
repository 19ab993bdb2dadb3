package secrets

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
)

// ErrDecrypt means a ciphertext could not be opened: no key with its id, a
// wrong row binding, or tampering. The message never says which.
var ErrDecrypt = errors.New("secret cannot be decrypted with SECRET_KEY or SECRET_KEY_PREVIOUS")

const (
	version   = 1
	idLen     = 4
	nonceLen  = 12
	headerLen = 1 + idLen + nonceLen
)

type key struct {
	id   [idLen]byte
	aead cipher.AEAD
}

// Keyring seals with the current key and opens with any key it holds.
type Keyring struct {
	current  key
	previous *key
}

// NewKeyring builds a keyring from the current 32-byte key and an optional
// previous one (nil when no rotation is in progress).
func NewKeyring(current, previous []byte) (*Keyring, error) {
	cur, err := newKey(current)
	if err != nil {
		return nil, fmt.Errorf("SECRET_KEY: %w", err)
	}
	k := &Keyring{current: cur}
	if len(previous) > 0 {
		prev, err := newKey(previous)
		if err != nil {
			return nil, fmt.Errorf("SECRET_KEY_PREVIOUS: %w", err)
		}
		if prev.id == cur.id {
			return nil, errors.New("SECRET_KEY_PREVIOUS is the same key as SECRET_KEY")
		}
		k.previous = &prev
	}
	return k, nil
}

func newKey(raw []byte) (key, error) {
	if len(raw) != 32 {
		return key{}, fmt.Errorf("must be 32 bytes, got %d", len(raw))
	}
	block, err := aes.NewCipher(raw)
	if err != nil {
		return key{}, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return key{}, err
	}
	sum := sha256.Sum256(append([]byte("postgate key id\x00"), raw...))
	var k key
	copy(k.id[:], sum[:idLen])
	k.aead = aead
	return k, nil
}

// Seal encrypts plaintext under the current key, bound to binding (the
// row it belongs to).
func (k *Keyring) Seal(plaintext []byte, binding string) []byte {
	out := make([]byte, headerLen, headerLen+len(plaintext)+k.current.aead.Overhead())
	out[0] = version
	copy(out[1:], k.current.id[:])
	if _, err := rand.Read(out[1+idLen : headerLen]); err != nil {
		panic("secrets: crypto/rand failed: " + err.Error())
	}
	return k.current.aead.Seal(out, out[1+idLen:headerLen], plaintext, ad(out[:1+idLen], binding))
}

// Open decrypts a ciphertext made by Seal with the same binding.
func (k *Keyring) Open(ciphertext []byte, binding string) ([]byte, error) {
	if len(ciphertext) < headerLen || ciphertext[0] != version {
		return nil, ErrDecrypt
	}
	kk := k.find(ciphertext[1 : 1+idLen])
	if kk == nil {
		return nil, ErrDecrypt
	}
	pt, err := kk.aead.Open(nil, ciphertext[1+idLen:headerLen], ciphertext[headerLen:], ad(ciphertext[:1+idLen], binding))
	if err != nil {
		return nil, ErrDecrypt
	}
	return pt, nil
}

// IsCurrent reports whether ciphertext is sealed under the current key, so
// a re-encryption pass can skip it.
func (k *Keyring) IsCurrent(ciphertext []byte) bool {
	return len(ciphertext) >= headerLen && bytes.Equal(ciphertext[1:1+idLen], k.current.id[:])
}

func (k *Keyring) find(id []byte) *key {
	if bytes.Equal(id, k.current.id[:]) {
		return &k.current
	}
	if k.previous != nil && bytes.Equal(id, k.previous.id[:]) {
		return k.previous
	}
	return nil
}

// ad is the associated data: the version and key id (so neither can be
// swapped) and the row binding.
func ad(header []byte, binding string) []byte {
	b := make([]byte, 0, len(header)+len(binding))
	b = append(b, header...)
	return append(b, binding...)
}
