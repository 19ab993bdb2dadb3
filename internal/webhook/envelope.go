package webhook

import (
	stdjson "encoding/json"
	"errors"
	"strconv"
	"strings"

	json "github.com/goccy/go-json"

	"github.com/postgate/postgate/internal/tenant"
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
	Events []Event
	Err    error
}

// Event is one item of messaging[], standby[], or a messaging field of
// changes[], with what the gateway needs to route and forward it. Raw is the
// event object exactly as Meta sent it (for changes[], its value).
type Event struct {
	Source      Source
	Type        string // a tenant.Type* name; "" for a non-messaging changes[] field
	Raw         []byte
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

type party struct {
	ID      ID `json:"id"`
	UserRef ID `json:"user_ref"`
}

type rawEntry struct {
	ID        ID                   `json:"id"`
	Time      millis               `json:"time"`
	Messaging []stdjson.RawMessage `json:"messaging"`
	Standby   []stdjson.RawMessage `json:"standby"`
	Changes   []rawChange          `json:"changes"`
}

type rawChange struct {
	Field string             `json:"field"`
	Value stdjson.RawMessage `json:"value"`
}

// rawEvent decodes only what routing needs; everything else stays in Raw.
// Presence of a key decides the type, so those fields are raw too.
type rawEvent struct {
	Sender    *party             `json:"sender"`
	Recipient *party             `json:"recipient"`
	Timestamp millis             `json:"timestamp"`
	Postback  stdjson.RawMessage `json:"postback"`
	Message   stdjson.RawMessage `json:"message"`
	Delivery  stdjson.RawMessage `json:"delivery"`
	Read      stdjson.RawMessage `json:"read"`
	Referral  stdjson.RawMessage `json:"referral"`
	Optin     stdjson.RawMessage `json:"optin"`
	Reaction  stdjson.RawMessage `json:"reaction"`
	Pass      stdjson.RawMessage `json:"pass_thread_control"`
	Take      stdjson.RawMessage `json:"take_thread_control"`
	Request   stdjson.RawMessage `json:"request_thread_control"`
	AppRoles  stdjson.RawMessage `json:"app_roles"`
	Policy    stdjson.RawMessage `json:"policy-enforcement"`
	Linking   stdjson.RawMessage `json:"account_linking"`
}

type midHead struct {
	Mid    ID                 `json:"mid"`
	IsEcho stdjson.RawMessage `json:"is_echo"`
}

// messagingFields are the changes[] fields that carry messaging events.
var messagingFields = map[string]bool{
	tenant.TypePostbacks: true, tenant.TypeMessages: true, tenant.TypeEchoes: true,
	tenant.TypeDeliveries: true, tenant.TypeReads: true, tenant.TypeReferrals: true,
	tenant.TypeOptins: true, tenant.TypeReactions: true, tenant.TypeHandovers: true,
	tenant.TypePolicy: true, tenant.TypeAccountLinking: true, "messaging_seen": true,
	"standby": true,
}

// Parse checks depth and syntax, then decodes the envelope. A body that is
// JSON but not the envelope's shape returns ErrShape; a malformed entry or
// event is marked on itself and does not fail the rest.
func Parse(body []byte) (*Envelope, error) {
	if err := checkDepth(body, MaxDepth); err != nil {
		return nil, err
	}
	if !json.Valid(body) {
		return nil, ErrNotJSON
	}
	var top struct {
		Object stdjson.RawMessage `json:"object"`
		Entry  stdjson.RawMessage `json:"entry"`
	}
	if err := json.Unmarshal(body, &top); err != nil {
		return nil, ErrShape // valid JSON, but not an object
	}
	var env Envelope
	if err := json.Unmarshal(top.Object, &env.Object); err != nil || env.Object == "" {
		return nil, ErrShape
	}
	var entries []stdjson.RawMessage
	if err := json.Unmarshal(top.Entry, &entries); err != nil {
		return nil, ErrShape
	}
	env.Entries = make([]Entry, len(entries))
	for i, raw := range entries {
		env.Entries[i] = parseEntry(raw)
	}
	return &env, nil
}

func parseEntry(raw []byte) Entry {
	var re rawEntry
	if err := json.Unmarshal(raw, &re); err != nil {
		return Entry{Err: errors.New("malformed entry")}
	}
	e := Entry{ID: re.ID, TimeMS: int64(re.Time)}
	n := len(re.Messaging) + len(re.Standby) + len(re.Changes)
	e.Events = make([]Event, 0, n)
	for _, m := range re.Messaging {
		e.Events = append(e.Events, parseEvent(m, SourceMessaging))
	}
	for _, m := range re.Standby {
		e.Events = append(e.Events, parseEvent(m, SourceStandby))
	}
	for _, c := range re.Changes {
		if !messagingFields[c.Field] || len(c.Value) == 0 {
			// A non-messaging field (feed, comments, ...): not an event here.
			e.Events = append(e.Events, Event{Source: SourceChanges, Raw: c.Value})
			continue
		}
		ev := parseEvent(c.Value, SourceChanges)
		if ev.Err == nil && c.Field != "standby" {
			ev.Type = fieldType(c.Field, ev.Type)
		}
		e.Events = append(e.Events, ev)
	}
	return e
}

// fieldType prefers the field Meta named for a changes[] item.
func fieldType(field, detected string) string {
	if field == "messaging_seen" {
		return tenant.TypeReads
	}
	if detected != "" && detected != tenant.TypeOther {
		return detected
	}
	return field
}

func parseEvent(raw []byte, src Source) Event {
	ev := Event{Source: src, Raw: raw}
	var re rawEvent
	if err := json.Unmarshal(raw, &re); err != nil {
		ev.Err = errors.New("malformed event")
		return ev
	}
	if re.Sender != nil {
		ev.Sender, ev.SenderRef = re.Sender.ID, re.Sender.UserRef
	}
	if re.Recipient != nil {
		ev.Recipient = re.Recipient.ID
	}
	ev.TimestampMS = int64(re.Timestamp)
	switch {
	case present(re.Postback):
		ev.Type = tenant.TypePostbacks
		ev.Postback = re.Postback
		var h midHead
		if err := json.Unmarshal(re.Postback, &h); err != nil {
			ev.Err = errors.New("malformed postback")
			return ev
		}
		ev.Mid = h.Mid.Value
	case present(re.Message):
		var h midHead
		if err := json.Unmarshal(re.Message, &h); err != nil {
			ev.Err = errors.New("malformed message")
			return ev
		}
		ev.Mid = h.Mid.Value
		ev.IsEcho = string(h.IsEcho) == "true"
		ev.Type = tenant.TypeMessages
		if ev.IsEcho {
			ev.Type = tenant.TypeEchoes
		}
	case present(re.Delivery):
		ev.Type = tenant.TypeDeliveries
	case present(re.Read):
		ev.Type = tenant.TypeReads
	case present(re.Reaction):
		ev.Type = tenant.TypeReactions
	case present(re.Referral):
		ev.Type = tenant.TypeReferrals
	case present(re.Optin):
		ev.Type = tenant.TypeOptins
	case present(re.Pass), present(re.Take), present(re.Request), present(re.AppRoles):
		ev.Type = tenant.TypeHandovers
	case present(re.Policy):
		ev.Type = tenant.TypePolicy
	case present(re.Linking):
		ev.Type = tenant.TypeAccountLinking
	default:
		ev.Type = tenant.TypeOther
	}
	if src == SourceStandby {
		ev.Type = tenant.TypeStandby
	}
	return ev
}

func present(raw []byte) bool { return len(raw) > 0 && string(raw) != "null" }

// checkDepth rejects bodies nested deeper than max before any decoder sees
// them, in one pass over the bytes.
func checkDepth(b []byte, max int) error {
	depth, inString, escaped := 0, false, false
	for _, c := range b {
		if inString {
			switch {
			case escaped:
				escaped = false
			case c == '\\':
				escaped = true
			case c == '"':
				inString = false
			}
			continue
		}
		switch c {
		case '"':
			inString = true
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
