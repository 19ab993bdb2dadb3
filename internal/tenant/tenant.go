package tenant

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/postgate/postgate/internal/event"
)

// Sentinel errors of the tenant domain; the api package maps them to
// problem responses.
var (
	ErrNotFound = errors.New("not found")
	ErrConflict = errors.New("already exists")
	ErrInvalid  = errors.New("invalid")
	// ErrUpstream is Meta's Graph API failing to answer a question the
	// operation needs answered (an app's ownership).
	ErrUpstream = errors.New("the Graph API (Meta) could not be reached")
)

// Object is the Meta webhook object a Page's events arrive under.
type Object string

// The objects the gateway serves.
const (
	ObjectPage      Object = "page"
	ObjectInstagram Object = "instagram"
)

// Tenant is a customer of the gateway. Its first-version fields, from
// CallbackURL to PreviousSigningSecretExpiresAt, are its default
// endpoint's (zero when it has none).
type Tenant struct {
	ID                string
	Name              string
	DefaultEndpointID uuid.UUID // uuid.Nil when it has no default endpoint
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
	// EndpointEnabledAt is when a paused endpoint was last re-enabled: the
	// workers reset its circuit breaker then. Nil if it never was.
	EndpointEnabledAt *time.Time
	// PreviousSigningSecretExpiresAt is when the signing secret replaced by
	// the last rotation stops signing; nil when there is none.
	PreviousSigningSecretExpiresAt *time.Time
	CreatedAt                      time.Time
	UpdatedAt                      time.Time
}

// Format is how an endpoint receives events.
type Format string

// The formats: the Standard Webhooks body, or Meta's own envelope.
const (
	FormatStandard Format = "standard"
	FormatMeta     Format = "meta"
)

// Signature is how a standard-format endpoint's deliveries are signed.
type Signature string

// The signatures: HMAC-SHA256 with a whsec_ secret (v1), Ed25519 with a
// key pair (v1a).
const (
	SignatureHMAC    Signature = "hmac"
	SignatureEd25519 Signature = "ed25519"
)

// Ordering is whether an endpoint receives a conversation's events one at
// a time.
type Ordering string

// The orderings.
const (
	OrderingNone         Ordering = "none"
	OrderingConversation Ordering = "conversation"
)

// Endpoint is a destination of a tenant's events, with its filters,
// format, limits and state. Its secrets are never part of this type.
type Endpoint struct {
	ID          uuid.UUID // public form: event.FormatEndpointID
	TenantID    string
	Default     bool // the endpoint the tenant's first-version fields read and write
	URL         string
	Description string
	// Events are the types it takes: event types, "*" (every Meta type),
	// event.TypeHealth. Pages restricts it to some Pages (empty: all).
	Events            []string
	Pages             []string
	Format            Format
	Signature         Signature
	Ordering          Ordering
	Rate              int // events/s; 0 means the TENANT_RATE default
	Burst             int // 0 means the TENANT_BURST default
	Concurrency       int // 0 means the TENANT_CONCURRENCY default
	DeliverTestEvents bool
	// DisabledAt is set while deliveries are paused (a 410 from the
	// endpoint, or an operator); its events wait until it is re-enabled.
	DisabledAt     *time.Time
	DisabledReason string
	// EnabledAt is when it was last re-enabled: the workers reset its
	// circuit breaker then. Nil if it never was.
	EnabledAt *time.Time
	// PublicKey is the whpk_ key of an ed25519 endpoint; PreviousPublicKey
	// the one still signing until PreviousSigningSecretExpiresAt.
	PublicKey         string
	PreviousPublicKey string
	// PreviousSigningSecretExpiresAt is when the secret or key replaced by
	// the last rotation stops signing; nil when there is none.
	PreviousSigningSecretExpiresAt *time.Time
	CreatedAt                      time.Time
	UpdatedAt                      time.Time
}

// Enabled reports whether the endpoint is delivering.
func (e *Endpoint) Enabled() bool { return e.DisabledAt == nil }

// legacyEvents is a default endpoint's events as the first version's
// tenant field showed them: the types besides messaging_postbacks, which
// it always delivered.
func legacyEvents(events []string) []string {
	out := []string{}
	for _, e := range events {
		if e != event.TypePostbacks {
			out = append(out, e)
		}
	}
	return out
}

// App is a Meta app registered by a tenant. Its secrets are never part of
// this type: they live encrypted in the store and decrypted in the Registry.
type App struct {
	AppID       string
	TenantID    string
	VerifyToken string
	LegacySHA1  bool
	// Name is the app's name at Meta, read when its ownership was proved;
	// empty when it was not (GRAPH_API_URL=off).
	Name string
	// PreviousSecretExpiresAt is when the secret replaced by the last
	// rotation stops being accepted; nil when there is none.
	PreviousSecretExpiresAt *time.Time
	CreatedAt               time.Time
	UpdatedAt               time.Time
}

// Page is a Facebook Page or Instagram professional account registered for
// one app of a tenant.
type Page struct {
	PageID   string
	AppID    string
	TenantID string
	Object   Object
	// HasAccessToken tells whether a Page access token is stored (sealed,
	// never part of this type).
	HasAccessToken bool
	CreatedAt      time.Time
}

// DefaultRotationGrace is how long a rotated-out secret stays valid.
const DefaultRotationGrace = 24 * time.Hour

// Associated data that binds each ciphertext to its row (see package
// secrets). Store and Registry must agree on these.

// AppSecretBinding binds an app's current secret to its row.
func AppSecretBinding(appID string) string { return "apps.secret:" + appID }

// AppPreviousSecretBinding binds an app's previous secret to its row.
func AppPreviousSecretBinding(appID string) string { return "apps.previous_secret:" + appID }

// PageTokenBinding binds a Page access token to its (Page, app) row.
func PageTokenBinding(pageID, appID string) string {
	return "pages.access_token:" + pageID + ":" + appID
}

// SigningSecretBinding binds an endpoint's signing secret (or Ed25519
// key) to its row. The text is the first version's, when tenants held the
// secret: a migrated default endpoint has its tenant's id, so its sealed
// secret opens unchanged (migration 00012).
func SigningSecretBinding(endpointID string) string { return "tenants.signing_secret:" + endpointID }

// PreviousSigningSecretBinding binds an endpoint's previous signing secret.
func PreviousSigningSecretBinding(endpointID string) string {
	return "tenants.previous_signing_secret:" + endpointID
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
