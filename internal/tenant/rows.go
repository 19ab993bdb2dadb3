package tenant

import (
	"database/sql/driver"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/postgate/postgate/internal/database"
)

// The rows below mirror migrations/*.sql column by column; the
// schema is the migrations, never these structs (TestRowsMatchSchema checks
// that they agree). Secrets are kept as sealed bytes (package secrets) and
// never leave the store in plaintext except through the Service.

type tenantRow struct {
	ID        uuid.UUID `gorm:"column:id;primaryKey"`
	Name      string    `gorm:"column:name"`
	CreatedAt time.Time `gorm:"column:created_at;autoCreateTime:false"`
	UpdatedAt time.Time `gorm:"column:updated_at;autoUpdateTime:false"`
}

func (tenantRow) TableName() string { return "tenants" }

// domain is the tenant with its first-version fields read from its
// default endpoint def (nil: it has none).
func (r *tenantRow) domain(def *Endpoint) Tenant {
	t := Tenant{ID: r.ID.String(), Name: r.Name, Events: []string{}, CreatedAt: r.CreatedAt, UpdatedAt: r.UpdatedAt}
	if def != nil {
		t.CallbackURL = def.URL
		t.Events = legacyEvents(def.Events)
		t.Rate, t.Burst, t.Concurrency = def.Rate, def.Burst, def.Concurrency
		t.DeliverTestEvents = def.DeliverTestEvents
		t.EndpointDisabledAt, t.EndpointDisabledReason = def.DisabledAt, def.DisabledReason
		t.EndpointEnabledAt = def.EnabledAt
		t.PreviousSigningSecretExpiresAt = def.PreviousSigningSecretExpiresAt
		t.DefaultEndpointID = def.ID
		// A change made through the endpoints API changes the tenant as
		// the first version showed it.
		if def.UpdatedAt.After(t.UpdatedAt) {
			t.UpdatedAt = def.UpdatedAt
		}
	}
	return t
}

type endpointRow struct {
	ID                             uuid.UUID  `gorm:"column:id;primaryKey"`
	TenantID                       uuid.UUID  `gorm:"column:tenant_id"`
	IsDefault                      bool       `gorm:"column:is_default"`
	URL                            string     `gorm:"column:url"`
	Description                    string     `gorm:"column:description"`
	Events                         textArray  `gorm:"column:events"`
	Pages                          textArray  `gorm:"column:pages"`
	Format                         string     `gorm:"column:format"`
	Signature                      string     `gorm:"column:signature"`
	Ordering                       string     `gorm:"column:ordering"`
	Rate                           *int32     `gorm:"column:rate"`
	Burst                          *int32     `gorm:"column:burst"`
	Concurrency                    *int32     `gorm:"column:concurrency"`
	DeliverTestEvents              bool       `gorm:"column:deliver_test_events"`
	DisabledAt                     *time.Time `gorm:"column:disabled_at"`
	DisabledReason                 *string    `gorm:"column:disabled_reason"`
	EnabledAt                      *time.Time `gorm:"column:enabled_at"`
	SigningSecret                  []byte     `gorm:"column:signing_secret"`
	PreviousSigningSecret          []byte     `gorm:"column:previous_signing_secret"`
	PreviousSigningSecretExpiresAt *time.Time `gorm:"column:previous_signing_secret_expires_at"`
	PublicKey                      *string    `gorm:"column:public_key"`
	PreviousPublicKey              *string    `gorm:"column:previous_public_key"`
	CreatedAt                      time.Time  `gorm:"column:created_at;autoCreateTime:false"`
	UpdatedAt                      time.Time  `gorm:"column:updated_at;autoUpdateTime:false"`
	DeletedAt                      *time.Time `gorm:"column:deleted_at"`
}

func (endpointRow) TableName() string { return "endpoints" }

func (r *endpointRow) domain() Endpoint {
	return Endpoint{
		ID:                             r.ID,
		TenantID:                       r.TenantID.String(),
		Default:                        r.IsDefault,
		URL:                            r.URL,
		Description:                    r.Description,
		Events:                         append([]string{}, r.Events...),
		Pages:                          append([]string{}, r.Pages...),
		Format:                         Format(r.Format),
		Signature:                      Signature(r.Signature),
		Ordering:                       Ordering(r.Ordering),
		Rate:                           int(database.Value(r.Rate)),
		Burst:                          int(database.Value(r.Burst)),
		Concurrency:                    int(database.Value(r.Concurrency)),
		DeliverTestEvents:              r.DeliverTestEvents,
		DisabledAt:                     r.DisabledAt,
		DisabledReason:                 database.Value(r.DisabledReason),
		EnabledAt:                      r.EnabledAt,
		PublicKey:                      database.Value(r.PublicKey),
		PreviousPublicKey:              database.Value(r.PreviousPublicKey),
		PreviousSigningSecretExpiresAt: r.PreviousSigningSecretExpiresAt,
		CreatedAt:                      r.CreatedAt,
		UpdatedAt:                      r.UpdatedAt,
	}
}

// endpointRowOf is the row that stores e with its sealed secrets.
func endpointRowOf(e *Endpoint, sec SealedSecrets) (endpointRow, error) {
	tid, err := uuid.Parse(e.TenantID)
	if err != nil {
		return endpointRow{}, notFound("tenant")
	}
	// A zero limit is stored as NULL: the gateway's default.
	return endpointRow{
		ID:                             e.ID,
		TenantID:                       tid,
		IsDefault:                      e.Default,
		URL:                            e.URL,
		Description:                    e.Description,
		Events:                         textArray(e.Events),
		Pages:                          textArray(e.Pages),
		Format:                         string(e.Format),
		Signature:                      string(e.Signature),
		Ordering:                       string(e.Ordering),
		Rate:                           database.Null(int32(e.Rate)),
		Burst:                          database.Null(int32(e.Burst)),
		Concurrency:                    database.Null(int32(e.Concurrency)),
		DeliverTestEvents:              e.DeliverTestEvents,
		DisabledAt:                     e.DisabledAt,
		DisabledReason:                 database.Null(e.DisabledReason),
		EnabledAt:                      e.EnabledAt,
		SigningSecret:                  sec.Current,
		PreviousSigningSecret:          sec.Previous,
		PreviousSigningSecretExpiresAt: sec.PreviousExpiresAt,
		PublicKey:                      database.Null(e.PublicKey),
		PreviousPublicKey:              database.Null(e.PreviousPublicKey),
		CreatedAt:                      e.CreatedAt,
		UpdatedAt:                      e.UpdatedAt,
	}, nil
}

type appRow struct {
	AppID                   string     `gorm:"column:app_id;primaryKey"`
	TenantID                uuid.UUID  `gorm:"column:tenant_id"`
	Secret                  []byte     `gorm:"column:secret"`
	PreviousSecret          []byte     `gorm:"column:previous_secret"`
	PreviousSecretExpiresAt *time.Time `gorm:"column:previous_secret_expires_at"`
	VerifyToken             string     `gorm:"column:verify_token"`
	LegacySHA1              bool       `gorm:"column:legacy_sha1"`
	Name                    string     `gorm:"column:name"`
	CreatedAt               time.Time  `gorm:"column:created_at;autoCreateTime:false"`
	UpdatedAt               time.Time  `gorm:"column:updated_at;autoUpdateTime:false"`
}

func (appRow) TableName() string { return "apps" }

func (r *appRow) domain() App {
	return App{
		AppID:                   r.AppID,
		TenantID:                r.TenantID.String(),
		VerifyToken:             r.VerifyToken,
		LegacySHA1:              r.LegacySHA1,
		Name:                    r.Name,
		PreviousSecretExpiresAt: r.PreviousSecretExpiresAt,
		CreatedAt:               r.CreatedAt,
		UpdatedAt:               r.UpdatedAt,
	}
}

type pageRow struct {
	PageID   string    `gorm:"column:page_id;primaryKey"`
	AppID    string    `gorm:"column:app_id;primaryKey"`
	TenantID uuid.UUID `gorm:"column:tenant_id"`
	Object   string    `gorm:"column:object"`
	// AccessToken is the sealed Page access token, nil when none.
	AccessToken []byte    `gorm:"column:access_token"`
	CreatedAt   time.Time `gorm:"column:created_at;autoCreateTime:false"`
}

func (pageRow) TableName() string { return "pages" }

func (r *pageRow) domain() Page {
	return Page{PageID: r.PageID, AppID: r.AppID, TenantID: r.TenantID.String(), Object: Object(r.Object),
		HasAccessToken: len(r.AccessToken) > 0, CreatedAt: r.CreatedAt}
}

// textArray is a Postgres text[] through database/sql: pgx's stdlib hands
// arrays over as their text form, which pgtype parses and writes.
type textArray []string

// Scan implements sql.Scanner.
func (a *textArray) Scan(src any) error {
	var out []string
	if err := pgtype.NewMap().SQLScanner(&out).Scan(src); err != nil {
		return fmt.Errorf("scan text[]: %w", err)
	}
	*a = out
	return nil
}

// Value implements driver.Valuer.
func (a textArray) Value() (driver.Value, error) {
	if a == nil {
		a = textArray{}
	}
	buf, err := pgtype.NewMap().Encode(pgtype.TextArrayOID, pgtype.TextFormatCode, []string(a), nil)
	if err != nil {
		return nil, fmt.Errorf("encode text[]: %w", err)
	}
	return string(buf), nil
}
