package tenant

import (
	"errors"
	"time"
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
	CreatedAt              time.Time
	UpdatedAt              time.Time
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
