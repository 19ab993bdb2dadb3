package delivery

import (
	"crypto/ed25519"
	"crypto/hmac"
	"crypto/sha1"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"strconv"
	"unicode/utf8"
)

// SignEd25519 is the webhook-signature header of a delivery signed with
// Ed25519 keys: one "v1a,<base64 Ed25519(key, msgID.timestamp.body)>" per
// key, space separated, in the order given (Standard Webhooks; the framing
// of Sign). Each key is one tenant.Ed25519Key returned; no keys give "".
func SignEd25519(keys []ed25519.PrivateKey, msgID string, timestamp int64, body []byte) string {
	if len(keys) == 0 {
		return ""
	}
	// Ed25519 hashes the whole message twice, so it is built once.
	msg := make([]byte, 0, len(msgID)+1+20+1+len(body))
	msg = append(msg, msgID...)
	msg = append(msg, '.')
	msg = strconv.AppendInt(msg, timestamp, 10)
	msg = append(msg, '.')
	msg = append(msg, body...)

	b := make([]byte, 0, len(keys)*(len("v1a,")+base64.StdEncoding.EncodedLen(ed25519.SignatureSize)+1))
	for i, k := range keys {
		if i > 0 {
			b = append(b, ' ')
		}
		b = append(b, "v1a,"...)
		b = base64.StdEncoding.AppendEncode(b, ed25519.Sign(k, msg))
	}
	return string(b)
}

// AppendMetaBody appends the body of the meta format to dst: one event as
// Meta would have sent it had its Page been alone,
//
//	{"object":<object>,"entry":[{"id":<pageID>,"time":<time>,"<source>":[<item>]}]}
//
// object, pageID and source are written as JSON strings; source is
// messaging, standby or changes. time is entryTime verbatim (the entry's
// "time" as Meta sent it, seconds or milliseconds, even a string) or, when
// entryTime is empty, receivedMS. item is the event exactly as Meta sent
// it, copied byte for byte: for a changes[] item the whole
// {"field":...,"value":...} object. entryTime and item must each be one
// JSON value, as taken from Meta's body; they are not checked.
func AppendMetaBody(dst []byte, object, pageID string, entryTime []byte, receivedMS int64, source string, item []byte) []byte {
	dst = append(dst, `{"object":`...)
	dst = appendJSONString(dst, object)
	dst = append(dst, `,"entry":[{"id":`...)
	dst = appendJSONString(dst, pageID)
	dst = append(dst, `,"time":`...)
	if len(entryTime) > 0 {
		dst = append(dst, entryTime...)
	} else {
		dst = strconv.AppendInt(dst, receivedMS, 10)
	}
	dst = append(dst, ',')
	dst = appendJSONString(dst, source)
	dst = append(dst, ":["...)
	dst = append(dst, item...)
	return append(dst, "]}]}"...)
}

// MetaSignatures are the signature headers of a meta-format delivery, as
// Meta computes them over the exact body bytes with the app secret:
// X-Hub-Signature-256 "sha256=<hex HMAC-SHA256>" and X-Hub-Signature
// "sha1=<hex HMAC-SHA1>", hex in lower case. SHA-1 is there only because
// Meta sends it and some frameworks (bottender) check nothing else.
func MetaSignatures(appSecret, body []byte) (sha256Header, sha1Header string) {
	m := hmac.New(sha256.New, appSecret)
	m.Write(body)
	sha256Header = "sha256=" + hex.EncodeToString(m.Sum(nil))
	m = hmac.New(sha1.New, appSecret)
	m.Write(body)
	sha1Header = "sha1=" + hex.EncodeToString(m.Sum(nil))
	return sha256Header, sha1Header
}

// appendJSONString appends s as a JSON string. Printable ASCII other than
// the characters encoding/json escapes is copied as is (the ids, objects
// and sources this writes); anything else is escaped by encoding/json, as
// the event package's appendString would: the HTML characters, control
// characters, U+2028 and U+2029, and invalid UTF-8 as U+FFFD.
func appendJSONString(b []byte, s string) []byte {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < 0x20 || c >= utf8.RuneSelf || c == '"' || c == '\\' || c == '<' || c == '>' || c == '&' {
			q, _ := json.Marshal(s) // a string never fails to marshal
			return append(b, q...)
		}
	}
	b = append(b, '"')
	b = append(b, s...)
	return append(b, '"')
}
