package event

import (
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Sentinel errors of the event domain; the api package maps them to
// problem responses.
var (
	ErrNotFound = errors.New("not found")
	ErrInvalid  = errors.New("invalid")
)

// FieldError is an ErrInvalid about one input field, so the API can name
// it. Message never contains the field's value.
type FieldError struct {
	Field   string // the input's name, such as "status"
	Message string
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Message }

// Unwrap lets errors.Is find ErrInvalid.
func (e *FieldError) Unwrap() error { return ErrInvalid }

func invalid(field, format string, args ...any) error {
	return &FieldError{Field: field, Message: fmt.Sprintf(format, args...)}
}

// notFound is ErrNotFound about one kind of thing: "event not found".
func notFound(thing string) error { return fmt.Errorf("%s %w", thing, ErrNotFound) }

// Types: the names of Meta's webhook fields, plus standby for anything
// that came in standby[] and other for a messaging field the gateway does
// not know.
const (
	TypePostbacks      = "messaging_postbacks"
	TypeMessages       = "messages"
	TypeEchoes         = "message_echoes"
	TypeDeliveries     = "message_deliveries"
	TypeReads          = "message_reads"
	TypeReferrals      = "messaging_referrals"
	TypeOptins         = "messaging_optins"
	TypeReactions      = "message_reactions"
	TypeHandovers      = "messaging_handovers"
	TypeStandby        = "standby"
	TypePolicy         = "messaging_policy_enforcement"
	TypeAccountLinking = "messaging_account_linking"
	TypeOther          = "other"
)

// Types lists every event type, in a stable order: what a subscription or
// a filter may name.
var Types = []string{
	TypePostbacks, TypeMessages, TypeEchoes, TypeDeliveries, TypeReads,
	TypeReferrals, TypeOptins, TypeReactions, TypeHandovers, TypeStandby,
	TypePolicy, TypeAccountLinking, TypeOther,
}

// IsType reports whether s is one of Types.
func IsType(s string) bool {
	for _, t := range Types {
		if s == t {
			return true
		}
	}
	return false
}

// Status is where an event is in its delivery life.
type Status string

// The statuses of SPEC: pending (due or waiting), failed (an attempt
// failed, a retry is scheduled), delivered, and dead (out of retries, or
// expired behind a failing endpoint). The SQL of this package spells the
// same words; TestStatusesMatchSchema checks them against the schema's
// CHECK constraint.
const (
	StatusPending   Status = "pending"
	StatusFailed    Status = "failed"
	StatusDelivered Status = "delivered"
	StatusDead      Status = "dead"
)

// Statuses lists every status.
var Statuses = []Status{StatusPending, StatusFailed, StatusDelivered, StatusDead}

// Settled reports whether an event in status s has left the queue.
func (s Status) Settled() bool { return s == StatusDelivered || s == StatusDead }

func (s Status) valid() bool {
	for _, v := range Statuses {
		if s == v {
			return true
		}
	}
	return false
}

// Event is one accepted webhook event and its delivery state.
type Event struct {
	ID       uuid.UUID
	TenantID string
	PageID   string
	AppID    string
	Type     string
	Test     bool
	Status   Status
	// Attempts counts the attempts since the event was accepted or last
	// replayed: the retry schedule's position.
	Attempts int
	// NextAttemptAt is when the next attempt is due, for an event still in
	// the queue (pending, failed); while an attempt is in flight, when its
	// lease ends. Zero for a delivered or dead event.
	NextAttemptAt time.Time
	ReceivedAt    time.Time
	DeliveredAt   *time.Time // the last successful delivery, until a replay
	DeadAt        *time.Time // when the event died, for a dead event
	// Sender is the person of the conversation (sender.id or user_ref; for
	// an echo, the recipient); empty when none is known.
	Sender string
	// Body is the JSON document POSTed to the tenant; only filled when one
	// event is read, never in lists.
	Body []byte
	// Deliveries are the event's deliveries, one per endpoint; only filled
	// when one event is read.
	Deliveries []Delivery
}

// Delivery is an event's delivery to one endpoint: its own status, retry
// count and schedule.
type Delivery struct {
	EndpointID    uuid.UUID
	Status        Status
	Attempts      int
	NextAttemptAt time.Time // for a delivery still to make
	DeliveredAt   *time.Time
	DeadAt        *time.Time
	// Held is what a delivery to an ordered endpoint waited behind in its
	// conversation; nil when it was queued at the head.
	Held *Hold
}

// Hold is an ordered delivery's wait behind earlier events of its
// conversation (SPEC "Ordering"): waiting is not an attempt.
type Hold struct {
	// Behind is the event it was queued behind: the latest of its
	// conversation still open then.
	Behind uuid.UUID
	// Head is, while it still waits, the event at the head of its
	// conversation now (the one being tried); uuid.Nil once released.
	Head uuid.UUID
	// Since is when it was queued (accepted or replayed); Until when it
	// was released: its first attempt since, or when it settled without
	// one (expired); nil while it still waits.
	Since time.Time
	Until *time.Time
}

// Waiting reports whether it still waits behind Head.
func (h *Hold) Waiting() bool { return h.Head != uuid.Nil }

// Waited is how long the delivery has waited, as of now.
func (h *Hold) Waited(now time.Time) time.Duration {
	if h.Until != nil {
		return h.Until.Sub(h.Since)
	}
	return now.Sub(h.Since)
}

// Attempt is one delivery attempt of an event.
type Attempt struct {
	EndpointID uuid.UUID
	// Number counts from 1 over the event's whole life, replays included.
	Number     int
	At         time.Time
	StatusCode int // 0 when no answer came
	Latency    time.Duration
	// Class is the outcome class: ok, http_4xx, http_5xx, http_410,
	// http_429, http_3xx, timeout, dns, refused, tls, blocked, connection.
	Class string
	// Error says what went wrong, without the URL; empty on success.
	Error string
	// Response is the first KiB of the endpoint's answer.
	Response string
}

// Quarantined is a correctly signed body that could not be parsed as
// Meta's webhook shape, kept for the tenant to look at. Size is the body's
// length. Body is the whole body when one is read, and in lists its first
// QuarantineListBytes (whole when Size is no larger).
type Quarantined struct {
	ID         uuid.UUID
	TenantID   string
	AppID      string
	Reason     string
	Size       int
	Body       []byte
	ReceivedAt time.Time
}

// QuarantineListBytes is how much of each body a quarantine list carries:
// a page of 200 bodies of up to 8 MiB would otherwise be gigabytes.
const QuarantineListBytes = 4096

// MidKey is the dedup key of an event that has a mid (a postback's or a
// message's): unique per (tenant, Page), and what a search by mid looks up.
func MidKey(mid string) string { return "m:" + mid }

// TypeHealth is the gateway's own operational event: a Meta subscription
// that went from healthy to unhealthy or back. An endpoint receives it
// only when its events name it ("*" does not).
const TypeHealth = "postgate.health"

// IsFilterType reports whether an endpoint's events filter may name s:
// an event type, "*", or TypeHealth.
func IsFilterType(s string) bool { return s == "*" || s == TypeHealth || IsType(s) }

// Public id prefixes: an event id is "evt_" and a quarantine id "qrn_",
// each followed by the row's uuid as 32 lowercase hex digits. The event id
// is also the Standard Webhooks webhook-id, stable across retries.
const (
	IDPrefix           = "evt_"
	QuarantineIDPrefix = "qrn_"
)

// FormatID is the public id of the event row id.
func FormatID(id uuid.UUID) string { return IDPrefix + hex.EncodeToString(id[:]) }

// AppendID appends the public id of id to b, for the hot path.
func AppendID(b []byte, id [16]byte) []byte {
	b = append(b, IDPrefix...)
	return hex.AppendEncode(b, id[:])
}

// EndpointIDPrefix starts an endpoint's public id, followed by the row's
// uuid as 32 lowercase hex digits.
const EndpointIDPrefix = "ep_"

// FormatEndpointID is the public id of the endpoint row id.
func FormatEndpointID(id uuid.UUID) string { return EndpointIDPrefix + hex.EncodeToString(id[:]) }

// ParseEndpointID reverses FormatEndpointID. The nil uuid is no
// endpoint's id (they are UUIDv7) and is refused: callers use uuid.Nil for
// "no endpoint given", so a filter or replay naming it would otherwise
// pick every endpoint.
func ParseEndpointID(s string) (uuid.UUID, error) {
	id, err := parsePrefixedID(s, EndpointIDPrefix)
	if err != nil || id == uuid.Nil {
		return uuid.Nil, invalid("endpoint_id", "must be %s followed by 32 hex digits", EndpointIDPrefix)
	}
	return id, nil
}

// ParseID reverses FormatID.
func ParseID(s string) (uuid.UUID, error) { return parsePrefixedID(s, IDPrefix) }

// FormatQuarantineID is the public id of the quarantine row id.
func FormatQuarantineID(id uuid.UUID) string { return QuarantineIDPrefix + hex.EncodeToString(id[:]) }

// ParseQuarantineID reverses FormatQuarantineID.
func ParseQuarantineID(s string) (uuid.UUID, error) { return parsePrefixedID(s, QuarantineIDPrefix) }

func parsePrefixedID(s, prefix string) (uuid.UUID, error) {
	h, ok := strings.CutPrefix(s, prefix)
	var id uuid.UUID
	if !ok || len(h) != 2*len(id) {
		return uuid.Nil, invalid("id", "must be %s followed by 32 hex digits", prefix)
	}
	if _, err := hex.Decode(id[:], []byte(h)); err != nil {
		return uuid.Nil, invalid("id", "must be %s followed by 32 hex digits", prefix)
	}
	return id, nil
}
