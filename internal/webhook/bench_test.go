package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"testing"
)

// batchBody is a Messenger envelope of n postbacks, one entry each.
func batchBody(n int) []byte {
	var b strings.Builder
	b.WriteString(`{"object":"page","entry":[`)
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `{"id":"10483295771%04d","time":1767225601284,"messaging":[{"sender":{"id":"7081529936124401"},"recipient":{"id":"10483295771%04d"},"timestamp":1767225601234,"postback":{"mid":"m_bench_%d","title":"Caf\u00e9 menu","payload":"MENU_MAIN","referral":{"ref":"ad-1","source":"ADS","type":"OPEN_THREAD","ads_context_data":{"photo_url":"https:\/\/example.com\/a.png"}}}}]}`, i, i, i)
	}
	b.WriteString(`]}`)
	return []byte(b.String())
}

func BenchmarkParse(b *testing.B) {
	for _, n := range []int{1, 50} {
		body := batchBody(n)
		b.Run(fmt.Sprintf("events=%d", n), func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := Parse(body); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

func BenchmarkSignature(b *testing.B) {
	for _, n := range []int{1, 50} {
		body := batchBody(n)
		secret := []byte("gateway-test-secret-not-real")
		m := hmac.New(sha256.New, secret)
		m.Write(body)
		sig, _ := ParseSignature256("sha256=" + hex.EncodeToString(m.Sum(nil)))
		var pools macPools
		b.Run(fmt.Sprintf("events=%d", n), func(b *testing.B) {
			b.SetBytes(int64(len(body)))
			b.ReportAllocs()
			for b.Loop() {
				if !pools.Matches(sig, secret, body) {
					b.Fatal("no match")
				}
			}
		})
	}
}
