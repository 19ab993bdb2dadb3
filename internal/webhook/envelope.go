package webhook

import (
	"errors"
	"strconv"
	"strings"

	json "github.com/goccy/go-json"

	"github.com/postgate/postgate/internal/event"
)

// MaxDepth is the deepest nesting of objects and arrays accepted in a body.
const MaxDepth = 64

// Parse errors. ErrNotJSON is a body that is not JSON at all (or too deep);
// ErrShape is JSON that is not Meta's webhook envelope.
var (
	ErrNotJSON = errors.New("body is not JSON")
	ErrTooDeep = errors.New("body is nested deeper than 64 levels")
	ErrShape   = errors.New("body is not a Meta webhook envelope")
)

// Source is the array an event came in.
type Source string

// The arrays of an entry that hold events.
const (
	SourceMessaging Source = "messaging"
	SourceStandby   Source = "standby"
	SourceChanges   Source = "changes"
)

// Envelope is a parsed webhook body: {"object": ..., "entry": [...]}.
type Envelope struct {
	Object  string
	Entries []Entry
}

// Entry is one item of entry[]. Err is set when the entry itself is
// malformed; its events are then unknown and nothing else is affected.
type Entry struct {
	ID     ID
	TimeMS int64
	// Time is entry.time exactly as Meta sent it (nil when absent), for
	// the Meta format.
	Time   []byte
	Events []Event
	Err    error
}

// Event is one item of messaging[], standby[], or a messaging field of
// changes[], with what the gateway needs to route and forward it. Raw is the
// event object exactly as Meta sent it (for changes[], its value).
type Event struct {
	Source Source
	Type   string // a event.Type* name; "" for a non-messaging changes[] field
	Raw    []byte
	// Item is a changes[] item exactly as Meta sent it ({"field", "value"});
	// nil for messaging[] and standby[], whose item is Raw.
	Item        []byte
	Sender      ID
	SenderRef   ID // sender.user_ref, when the person has no PSID yet
	Recipient   ID
	TimestampMS int64 // 0 when Meta sent none
	Mid         string
	Postback    []byte // the raw postback object, for postbacks
	IsEcho      bool
	Err         error // the event could not be decoded; it is counted, not forwarded
}

// ID is a Meta id kept as a string, whether Meta sent a string or a number
// (old payloads send numbers; Instagram ids exceed 2^53).
type ID struct {
	Value string
	Set   bool
}

// UnmarshalJSON accepts a string, a number or null.
func (id *ID) UnmarshalJSON(b []byte) error {
	switch {
	case len(b) == 0:
		return errors.New("empty id")
	case b[0] == '"':
		s, err := unquote(b)
		if err != nil {
			return err
		}
		*id = ID{Value: s, Set: s != ""}
	case b[0] == '-' || (b[0] >= '0' && b[0] <= '9'):
		if strings.ContainsAny(string(b), ".eE") {
			return errors.New("id is not a whole number")
		}
		*id = ID{Value: string(b), Set: true}
	case string(b) == "null":
		*id = ID{}
	default:
		return errors.New("id must be a string or a number")
	}
	return nil
}

// millis is a timestamp as Meta sends it: a number of milliseconds in
// messaging[], a string of seconds in changes[]. Values below 10^11 are
// taken as seconds either way.
type millis int64

func (m *millis) UnmarshalJSON(b []byte) error {
	s := string(b)
	if s == "null" {
		*m = 0
		return nil
	}
	if len(b) > 0 && b[0] == '"' {
		var err error
		if s, err = unquote(b); err != nil {
			return err
		}
	}
	f, err := strconv.ParseFloat(strings.TrimSpace(s), 64)
	if err != nil || f < 0 {
		return errors.New("timestamp must be a number")
	}
	if f < 1e11 {
		f *= 1000
	}
	*m = millis(f)
	return nil
}

// messagingFields are the changes[] fields that carry messaging events.
var messagingFields = map[string]bool{
	event.TypePostbacks: true, event.TypeMessages: true, event.TypeEchoes: true,
	event.TypeDeliveries: true, event.TypeReads: true, event.TypeReferrals: true,
	event.TypeOptins: true, event.TypeReactions: true, event.TypeHandovers: true,
	event.TypePolicy: true, event.TypeAccountLinking: true, "messaging_seen": true,
	"standby": true,
}

var (
	errEntry    = errors.New("malformed entry")
	errEvent    = errors.New("malformed event")
	errPostback = errors.New("malformed postback")
	errMessage  = errors.New("malformed message")
)

// Parse checks depth and syntax, then walks the envelope. A body that is
// JSON but not the envelope's shape returns ErrShape; a malformed entry or
// event is marked on itself and does not fail the rest.
//
// Events' Raw and Postback are sub-slices of body: they live as long as it.
func Parse(body []byte) (*Envelope, error) {
	if err := checkDepth(body, MaxDepth); err != nil {
		return nil, err
	}
	if !json.Valid(body) {
		return nil, ErrNotJSON
	}
	body = body[skipSpace(body, 0):]
	var object, entry []byte
	if !eachField(body, func(k, v []byte) {
		switch string(k) {
		case "object":
			object = v
		case "entry":
			entry = v
		}
	}) {
		return nil, ErrShape // valid JSON, but not an object
	}
	var env Envelope
	s, err := unquoteString(object)
	if err != nil || s == "" {
		return nil, ErrShape
	}
	env.Object = s
	if string(entry) == "null" {
		return &env, nil
	}
	if !eachElem(entry, func(e []byte) { env.Entries = append(env.Entries, parseEntry(e)) }) {
		return nil, ErrShape
	}
	return &env, nil
}

func parseEntry(raw []byte) Entry {
	var e Entry
	var messaging, standby, changes []byte
	bad := false
	if !eachField(raw, func(k, v []byte) {
		switch string(k) {
		case "id":
			bad = bad || e.ID.UnmarshalJSON(v) != nil
		case "time":
			var m millis
			bad = bad || m.UnmarshalJSON(v) != nil
			e.TimeMS = int64(m)
			if string(v) != "null" {
				e.Time = v
			}
		case "messaging":
			messaging = v
		case "standby":
			standby = v
		case "changes":
			changes = v
		}
	}) || bad {
		return Entry{Err: errEntry}
	}
	for _, arr := range [...]struct {
		v   []byte
		src Source
	}{{messaging, SourceMessaging}, {standby, SourceStandby}} {
		if !present(arr.v) {
			continue
		}
		if !eachElem(arr.v, func(ev []byte) { e.Events = append(e.Events, parseEvent(ev, arr.src)) }) {
			return Entry{Err: errEntry}
		}
	}
	if present(changes) && !eachElem(changes, func(c []byte) { e.Events = append(e.Events, parseChange(c)) }) {
		return Entry{Err: errEntry}
	}
	return e
}

// parseChange reads one changes[] item: {"field": ..., "value": {...}}.
func parseChange(c []byte) Event {
	var field string
	var value []byte
	fieldOK := true
	if !eachField(c, func(k, v []byte) {
		switch string(k) {
		case "field":
			s, err := unquoteString(v)
			field, fieldOK = s, err == nil
		case "value":
			value = v
		}
	}) || !fieldOK {
		return Event{Source: SourceChanges, Raw: c, Err: errEvent}
	}
	if !messagingFields[field] || !present(value) {
		// A non-messaging field (feed, comments, ...): not an event here.
		return Event{Source: SourceChanges, Raw: value}
	}
	ev := parseEvent(value, SourceChanges)
	ev.Item = c
	if ev.Err == nil && field != "standby" {
		ev.Type = fieldType(field, ev.Type)
	}
	return ev
}

// fieldType prefers the field Meta named for a changes[] item.
func fieldType(field, detected string) string {
	if field == "messaging_seen" {
		return event.TypeReads
	}
	if detected != "" && detected != event.TypeOther {
		return detected
	}
	return field
}

// parseParty reads {"id": ..., "user_ref": ...}; null is no party.
func parseParty(v []byte, id, ref *ID) bool {
	if string(v) == "null" {
		return true
	}
	ok := true
	return eachField(v, func(k, val []byte) {
		switch string(k) {
		case "id":
			ok = ok && id.UnmarshalJSON(val) == nil
		case "user_ref":
			ok = ok && ref.UnmarshalJSON(val) == nil
		}
	}) && ok
}

// parseMid reads mid (and is_echo) of a postback or message object.
func parseMid(v []byte, ev *Event) bool {
	ok := true
	return eachField(v, func(k, val []byte) {
		switch string(k) {
		case "mid":
			var id ID
			ok = ok && id.UnmarshalJSON(val) == nil
			ev.Mid = id.Value
		case "is_echo":
			ev.IsEcho = string(val) == "true"
		}
	}) && ok
}

// The keys whose presence gives an event its type, after postback and
// message, in order of precedence.
var typeKeys = []struct{ key, typ string }{
	{"delivery", event.TypeDeliveries},
	{"read", event.TypeReads},
	{"reaction", event.TypeReactions},
	{"referral", event.TypeReferrals},
	{"optin", event.TypeOptins},
	{"pass_thread_control", event.TypeHandovers},
	{"take_thread_control", event.TypeHandovers},
	{"request_thread_control", event.TypeHandovers},
	{"app_roles", event.TypeHandovers},
	{"policy-enforcement", event.TypePolicy},
	{"account_linking", event.TypeAccountLinking},
}

func parseEvent(raw []byte, src Source) Event {
	ev := Event{Source: src, Raw: raw}
	var postback, message []byte
	var has uint32
	var unused ID
	ok := true
	if !eachField(raw, func(k, v []byte) {
		switch string(k) {
		case "sender":
			ok = ok && parseParty(v, &ev.Sender, &ev.SenderRef)
		case "recipient":
			ok = ok && parseParty(v, &ev.Recipient, &unused)
		case "timestamp":
			var m millis
			ok = ok && m.UnmarshalJSON(v) == nil
			ev.TimestampMS = int64(m)
		case "postback":
			postback = v
		case "message":
			message = v
		default:
			if present(v) {
				for i, tk := range typeKeys {
					if string(k) == tk.key {
						has |= 1 << i
					}
				}
			}
		}
	}) || !ok {
		return Event{Source: src, Raw: raw, Err: errEvent}
	}
	switch {
	case present(postback):
		ev.Type = event.TypePostbacks
		ev.Postback = postback
		if !parseMid(postback, &ev) {
			ev.Err = errPostback
			return ev
		}
		ev.IsEcho = false
	case present(message):
		if !parseMid(message, &ev) {
			ev.Err = errMessage
			return ev
		}
		ev.Type = event.TypeMessages
		if ev.IsEcho {
			ev.Type = event.TypeEchoes
		}
	default:
		ev.Type = event.TypeOther
		for i, tk := range typeKeys {
			if has&(1<<i) != 0 {
				ev.Type = tk.typ
				break
			}
		}
	}
	if src == SourceStandby {
		ev.Type = event.TypeStandby
	}
	return ev
}

func present(raw []byte) bool { return len(raw) > 0 && string(raw) != "null" }

// checkDepth rejects bodies nested deeper than max before any decoder sees
// them, in one pass over the bytes.
func checkDepth(b []byte, max int) error {
	depth := 0
	for i := 0; i < len(b); i++ {
		switch b[i] {
		case '"':
			i = stringEnd(b, i) - 1
		case '{', '[':
			depth++
			if depth > max {
				return ErrTooDeep
			}
		case '}', ']':
			depth--
		}
	}
	return nil
}

// unquoteString decodes a JSON string value, refusing any other type.
func unquoteString(b []byte) (string, error) {
	if len(b) < 2 || b[0] != '"' {
		return "", errors.New("not a string")
	}
	return unquote(b)
}

func unquote(b []byte) (string, error) {
	// Fast path: no escapes, the common case for ids.
	if len(b) >= 2 && b[0] == '"' && b[len(b)-1] == '"' && !strings.ContainsRune(string(b[1:len(b)-1]), '\\') {
		return string(b[1 : len(b)-1]), nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return "", errors.New("malformed string")
	}
	return s, nil
}
