package webhook

import (
	"crypto/hmac"
	"crypto/sha1" //nolint:gosec // Meta's legacy X-Hub-Signature, only for apps that opt in
	"crypto/sha256"
	"encoding/hex"
	"hash"
	"sync"
)

// Signature is a parsed X-Hub-Signature-256 (or legacy X-Hub-Signature)
// header: the algorithm and the expected digest.
type Signature struct {
	sha1   bool
	digest [sha256.Size]byte
	n      int
}

// ParseSignature256 parses "sha256=<64 hex>". ok is false for anything else.
func ParseSignature256(h string) (Signature, bool) {
	return parseSig(h, "sha256=", sha256.Size, false)
}

// ParseSignature1 parses the legacy "sha1=<40 hex>".
func ParseSignature1(h string) (Signature, bool) {
	return parseSig(h, "sha1=", sha1.Size, true)
}

func parseSig(h, prefix string, size int, isSHA1 bool) (Signature, bool) {
	if len(h) != len(prefix)+2*size || h[:len(prefix)] != prefix {
		return Signature{}, false
	}
	s := Signature{sha1: isSHA1, n: size}
	if _, err := hex.Decode(s.digest[:size], []byte(h[len(prefix):])); err != nil {
		return Signature{}, false
	}
	return s, true
}

// macPools keeps one pool of keyed MACs per (algorithm, secret): keying an
// HMAC costs two block compressions and allocations, and Reset on a keyed
// MAC reuses them.
type macPools struct {
	mu    sync.RWMutex
	pools map[string]*sync.Pool
}

func (m *macPools) get(secret []byte, isSHA1 bool) *sync.Pool {
	key := string(secret)
	if isSHA1 {
		key = "\x01" + key
	}
	m.mu.RLock()
	p := m.pools[key]
	m.mu.RUnlock()
	if p != nil {
		return p
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if p = m.pools[key]; p != nil {
		return p
	}
	if m.pools == nil || len(m.pools) > 10000 {
		// Rotated-away secrets would otherwise accumulate forever.
		m.pools = map[string]*sync.Pool{}
	}
	k := append([]byte(nil), secret...)
	p = &sync.Pool{New: func() any {
		if isSHA1 {
			return hmac.New(sha1.New, k)
		}
		return hmac.New(sha256.New, k)
	}}
	m.pools[key] = p
	return p
}

// Matches reports, in constant time, whether body signed with secret gives
// the expected digest.
func (m *macPools) Matches(sig Signature, secret, body []byte) bool {
	p := m.get(secret, sig.sha1)
	mac := p.Get().(hash.Hash)
	mac.Reset()
	mac.Write(body)
	var sum [sha256.Size]byte
	got := mac.Sum(sum[:0])
	p.Put(mac)
	return hmac.Equal(got, sig.digest[:sig.n])
}
