package tenant

import (
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"
)

// Sentinel errors of the tenant domain; the api package maps them to
// problem responses.
var (
	ErrNotFound = errors.New("not found")
	ErrConflict = errors.New("already exists")
	ErrInvalid  = errors.New("invalid")
)

// Object is the Meta webhook object a Page's events arrive under.
type Object string

// The objects the gateway serves.
const (
	ObjectPage      Object = "page"
	ObjectInstagram Object = "instagram"
)

// Tenant is a customer of the gateway.
type Tenant struct {
	ID                string
	Name              string
	CallbackURL       string
	Events            []string // subscribed event types; messaging_postbacks is always delivered
	Rate              int      // events/s; 0 means the TENANT_RATE default
	Burst             int      // 0 means the TENANT_BURST default
	Concurrency       int      // 0 means the TENANT_CONCURRENCY default
	DeliverTestEvents bool
	// EndpointDisabledAt is set when deliveries are paused (a 410 from the
	// endpoint, or an operator); events stay pending until re-enabled.
	EndpointDisabledAt     *time.Time
	EndpointDisabledReason string
	// PreviousSigningSecretExpiresAt is when the signing secret replaced by
	// the last rotation stops signing; nil when there is none.
	PreviousSigningSecretExpiresAt *time.Time
	CreatedAt                      time.Time
	UpdatedAt                      time.Time
}

// App is a Meta app registered by a tenant. Its secrets are never part of
// this type: they live encrypted in the store and decrypted in the Registry.
type App struct {
	AppID       string
	TenantID    string
	VerifyToken string
	LegacySHA1  bool
	// PreviousSecretExpiresAt is when the secret replaced by the last
	// rotation stops being accepted; nil when there is none.
	PreviousSecretExpiresAt *time.Time
	CreatedAt               time.Time
	UpdatedAt               time.Time
}

// Page is a Facebook Page or Instagram professional account registered for
// one app of a tenant.
type Page struct {
	PageID    string
	AppID     string
	TenantID  string
	Object    Object
	CreatedAt time.Time
}

// Event types: the names of Meta's webhook fields, plus standby for
// anything that came in standby[].
const (
	TypePostbacks        = "messaging_postbacks"
	TypeMessages         = "messages"
	TypeEchoes           = "message_echoes"
	TypeDeliveries       = "message_deliveries"
	TypeReads            = "message_reads"
	TypeReferrals        = "messaging_referrals"
	TypeOptins           = "messaging_optins"
	TypeReactions        = "message_reactions"
	TypeHandovers        = "messaging_handovers"
	TypeStandby          = "standby"
	TypePolicy           = "messaging_policy_enforcement"
	TypeAccountLinking   = "messaging_account_linking"
	TypeOther            = "other"
	DefaultRotationGrace = 24 * time.Hour
)

// EventTypes lists every type a tenant can subscribe to, in a stable order.
var EventTypes = []string{
	TypePostbacks, TypeMessages, TypeEchoes, TypeDeliveries, TypeReads,
	TypeReferrals, TypeOptins, TypeReactions, TypeHandovers, TypeStandby,
	TypePolicy, TypeAccountLinking, TypeOther,
}

// Associated data that binds each ciphertext to its row (see package
// secrets). Store and Registry must agree on these.

// AppSecretBinding binds an app's current secret to its row.
func AppSecretBinding(appID string) string { return "apps.secret:" + appID }

// AppPreviousSecretBinding binds an app's previous secret to its row.
func AppPreviousSecretBinding(appID string) string { return "apps.previous_secret:" + appID }

// SigningSecretBinding binds a tenant's signing secret to its row.
func SigningSecretBinding(tenantID string) string { return "tenants.signing_secret:" + tenantID }

// PreviousSigningSecretBinding binds a tenant's previous signing secret.
func PreviousSigningSecretBinding(tenantID string) string {
	return "tenants.previous_signing_secret:" + tenantID
}

// EventStatus is where an event is in its delivery life.
type EventStatus string

// The statuses of SPEC: pending (due or waiting), failed (an attempt
// failed, a retry is scheduled), delivered, and dead (out of retries).
const (
	StatusPending   EventStatus = "pending"
	StatusFailed    EventStatus = "failed"
	StatusDelivered EventStatus = "delivered"
	StatusDead      EventStatus = "dead"
)

// Event is one accepted webhook event and its delivery state.
type Event struct {
	ID       uuid.UUID
	TenantID string
	PageID   string
	AppID    string
	Type     string
	Test     bool
	Status   EventStatus
	Attempts int
	// NextAttemptAt is when the next attempt is due, for an event still in
	// the queue (pending, failed); while an attempt is in flight, when its
	// lease ends. Zero for a delivered or dead event.
	NextAttemptAt time.Time
	ReceivedAt    time.Time
	DeliveredAt   *time.Time // the last successful delivery
	DeadAt        *time.Time // when the last retry failed, for a dead event
	// Body is the JSON document POSTed to the tenant; only filled when one
	// event is read, never in lists.
	Body []byte
}

// Attempt is one delivery attempt of an event.
type Attempt struct {
	// Number counts from 1 since the event was accepted or last replayed.
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
// Meta's webhook shape, kept for the tenant to look at.
type Quarantined struct {
	ID         uuid.UUID
	TenantID   string
	AppID      string
	Reason     string
	Body       []byte
	ReceivedAt time.Time
}

// Public id prefixes: an event id is "evt_" and a quarantine id "qrn_",
// each followed by the row's uuid as 32 lowercase hex digits. The event id
// is also the Standard Webhooks webhook-id, stable across retries.
const (
	EventIDPrefix      = "evt_"
	QuarantineIDPrefix = "qrn_"
)

// FormatEventID is the public id of the event row id.
func FormatEventID(id uuid.UUID) string { return EventIDPrefix + hex.EncodeToString(id[:]) }

// ParseEventID reverses FormatEventID.
func ParseEventID(s string) (uuid.UUID, error) { return parsePrefixedID(s, EventIDPrefix) }

// FormatQuarantineID is the public id of the quarantine row id.
func FormatQuarantineID(id uuid.UUID) string { return QuarantineIDPrefix + hex.EncodeToString(id[:]) }

func parsePrefixedID(s, prefix string) (uuid.UUID, error) {
	h, ok := strings.CutPrefix(s, prefix)
	var id uuid.UUID
	if !ok || len(h) != 2*len(id) {
		return uuid.Nil, fmt.Errorf("%w: id must be %s followed by 32 hex digits", ErrInvalid, prefix)
	}
	if _, err := hex.Decode(id[:], []byte(h)); err != nil {
		return uuid.Nil, fmt.Errorf("%w: id must be %s followed by 32 hex digits", ErrInvalid, prefix)
	}
	return id, nil
}

// SigningSecretPrefix starts every Standard Webhooks signing secret.
const SigningSecretPrefix = "whsec_"

// SigningKey is the HMAC key of a "whsec_<base64>" signing secret: the
// decoded bytes after the prefix.
func SigningKey(secret string) ([]byte, error) {
	b64, ok := strings.CutPrefix(secret, SigningSecretPrefix)
	if !ok {
		return nil, errors.New("signing secret lacks the whsec_ prefix")
	}
	key, err := base64.StdEncoding.DecodeString(b64)
	if err != nil || len(key) == 0 {
		return nil, errors.New("signing secret is not whsec_ followed by base64")
	}
	return key, nil
}

// FieldError is an ErrInvalid or ErrConflict about one input field, so the
// API can name it. Message never contains the field's value.
type FieldError struct {
	Field   string // the input's name, such as "callback_url"
	Message string
	Err     error // ErrInvalid or ErrConflict
}

func (e *FieldError) Error() string { return e.Field + ": " + e.Message }

// Unwrap lets errors.Is find the sentinel.
func (e *FieldError) Unwrap() error { return e.Err }

func invalid(field, format string, args ...any) error {
	return &FieldError{Field: field, Message: fmt.Sprintf(format, args...), Err: ErrInvalid}
}

func conflict(field, format string, args ...any) error {
	return &FieldError{Field: field, Message: fmt.Sprintf(format, args...), Err: ErrConflict}
}

// Results is one page of a keyset-paginated list. NextCursor is empty on
// the last page; passing it back continues after the last item, and stays
// correct while rows are added.
type Results[T any] struct {
	Items      []T
	NextCursor string
}

// ListOptions bounds a list: at most Limit items after Cursor.
type ListOptions struct {
	Limit  int // 0 means DefaultLimit; capped at MaxLimit
	Cursor string
}

// List limits.
const (
	DefaultLimit = 50
	MaxLimit     = 200
)

func (o ListOptions) limit() int {
	switch {
	case o.Limit <= 0:
		return DefaultLimit
	case o.Limit > MaxLimit:
		return MaxLimit
	}
	return o.Limit
}
