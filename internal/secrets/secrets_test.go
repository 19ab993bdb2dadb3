package secrets

import (
	"bytes"
	"crypto/rand"
	"errors"
	"testing"
)

func newRawKey(t *testing.T) []byte {
	t.Helper()
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return b
}

func TestSealOpen(t *testing.T) {
	k1, k2 := newRawKey(t), newRawKey(t)
	old, err := NewKeyring(k1, nil)
	if err != nil {
		t.Fatal(err)
	}
	sealed := old.Seal([]byte("app-secret"), "apps.secret:1")

	rotated, err := NewKeyring(k2, k1)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		ring    *Keyring
		binding string
		ct      []byte
		wantErr bool
	}{
		{"same key", old, "apps.secret:1", sealed, false},
		{"previous key during rotation", rotated, "apps.secret:1", sealed, false},
		{"other row", old, "apps.secret:2", sealed, true},
		{"tampered", old, "apps.secret:1", flip(sealed, len(sealed)-1), true},
		{"key id swapped", old, "apps.secret:1", flip(sealed, 2), true},
		{"short", old, "apps.secret:1", sealed[:5], true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := tt.ring.Open(tt.ct, tt.binding)
			if tt.wantErr {
				if !errors.Is(err, ErrDecrypt) {
					t.Fatalf("Open: got err %v, want ErrDecrypt", err)
				}
				return
			}
			if err != nil || string(got) != "app-secret" {
				t.Fatalf("Open: got %q, %v; want app-secret", got, err)
			}
		})
	}

	withoutOld, _ := NewKeyring(k2, nil)
	if _, err := withoutOld.Open(sealed, "apps.secret:1"); !errors.Is(err, ErrDecrypt) {
		t.Fatalf("Open after the previous key is dropped: got %v, want ErrDecrypt", err)
	}
	if rotated.IsCurrent(sealed) || !rotated.IsCurrent(rotated.Seal([]byte("x"), "b")) {
		t.Fatal("IsCurrent does not tell the current key from the previous one")
	}
	if bytes.Contains(sealed, []byte("app-secret")) {
		t.Fatal("ciphertext contains the plaintext")
	}
}

func TestNewKeyringRejectsBadKeys(t *testing.T) {
	if _, err := NewKeyring(make([]byte, 12), nil); err == nil {
		t.Fatal("a 12-byte key was accepted")
	}
	k := newRawKey(t)
	if _, err := NewKeyring(k, k); err == nil {
		t.Fatal("the same key as current and previous was accepted")
	}
}

func flip(b []byte, i int) []byte {
	c := bytes.Clone(b)
	c[i] ^= 0x01
	return c
}
