package event

import (
	"strconv"
	"time"
	"unicode/utf8"
)

// Payload is the body of the standard format, what the tenant receives,
// built once at ingest and stored as the event's body:
//
//	{"id","type","test","tenant_id","app_id","page_id","object","source",
//	 "sender","timestamp","received_at","postback"?,"event"}
//
// Event and Postback are Meta's bytes, copied verbatim.
type Payload struct {
	ID       [16]byte // the event row's id; the body carries FormatID of it
	Type     string
	Test     bool
	TenantID string
	AppID    string
	PageID   string
	Object   string
	Source   string // messaging, standby or changes
	// SenderID is sender.id when HasSenderID; else SenderRef is
	// sender.user_ref when HasSenderRef; else the sender is null.
	SenderID     string
	HasSenderID  bool
	SenderRef    string
	HasSenderRef bool
	TimestampMS  int64
	ReceivedAt   time.Time
	Postback     []byte
	Event        []byte
}

// AppendJSON appends the payload's JSON document to b.
func (d *Payload) AppendJSON(b []byte) []byte {
	b = append(b, `{"id":"`...)
	b = AppendID(b, d.ID)
	b = append(b, '"')
	b = append(b, `,"type":`...)
	b = appendString(b, d.Type)
	b = append(b, `,"test":`...)
	b = strconv.AppendBool(b, d.Test)
	b = append(b, `,"tenant_id":`...)
	b = appendString(b, d.TenantID)
	b = append(b, `,"app_id":`...)
	b = appendString(b, d.AppID)
	b = append(b, `,"page_id":`...)
	b = appendString(b, d.PageID)
	b = append(b, `,"object":`...)
	b = appendString(b, d.Object)
	b = append(b, `,"source":`...)
	b = appendString(b, d.Source)
	b = append(b, `,"sender":`...)
	switch {
	case d.HasSenderID:
		b = append(b, `{"id":`...)
		b = appendString(b, d.SenderID)
		b = append(b, '}')
	case d.HasSenderRef:
		b = append(b, `{"user_ref":`...)
		b = appendString(b, d.SenderRef)
		b = append(b, '}')
	default:
		b = append(b, "null"...)
	}
	b = append(b, `,"timestamp":`...)
	b = strconv.AppendInt(b, d.TimestampMS, 10)
	b = append(b, `,"received_at":"`...)
	b = d.ReceivedAt.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, '"')
	if d.Postback != nil {
		b = append(b, `,"postback":`...)
		b = append(b, d.Postback...)
	}
	b = append(b, `,"event":`...)
	b = append(b, d.Event...)
	return append(b, '}')
}

const hexDigits = "0123456789abcdef"

// appendString appends s as a JSON string, escaping what JSON requires and
// the characters that are unsafe in HTML, as encoding/json does.
func appendString(b []byte, s string) []byte {
	b = append(b, '"')
	start := 0
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			if c >= 0x20 && c != '"' && c != '\\' && c != '<' && c != '>' && c != '&' {
				i++
				continue
			}
			b = append(b, s[start:i]...)
			switch c {
			case '"', '\\':
				b = append(b, '\\', c)
			case '\n':
				b = append(b, '\\', 'n')
			case '\r':
				b = append(b, '\\', 'r')
			case '\t':
				b = append(b, '\\', 't')
			default:
				b = append(b, '\\', 'u', '0', '0', hexDigits[c>>4], hexDigits[c&0xf])
			}
			i++
			start = i
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 || r == '\u2028' || r == '\u2029' {
			b = append(b, s[start:i]...)
			if r == utf8.RuneError {
				b = append(b, `\ufffd`...)
			} else {
				b = append(b, '\\', 'u', '2', '0', '2', hexDigits[r&0xf])
			}
			i += size
			start = i
			continue
		}
		i += size
	}
	b = append(b, s[start:]...)
	return append(b, '"')
}
