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
	ID                             uuid.UUID  `gorm:"column:id;primaryKey"`
	Name                           string     `gorm:"column:name"`
	CallbackURL                    string     `gorm:"column:callback_url"`
	Events                         textArray  `gorm:"column:events"`
	Rate                           *int32     `gorm:"column:rate"`
	Burst                          *int32     `gorm:"column:burst"`
	Concurrency                    *int32     `gorm:"column:concurrency"`
	DeliverTestEvents              bool       `gorm:"column:deliver_test_events"`
	EndpointDisabledAt             *time.Time `gorm:"column:endpoint_disabled_at"`
	EndpointDisabledReason         *string    `gorm:"column:endpoint_disabled_reason"`
	EndpointEnabledAt              *time.Time `gorm:"column:endpoint_enabled_at"`
	SigningSecret                  []byte     `gorm:"column:signing_secret"`
	PreviousSigningSecret          []byte     `gorm:"column:previous_signing_secret"`
	PreviousSigningSecretExpiresAt *time.Time `gorm:"column:previous_signing_secret_expires_at"`
	CreatedAt                      time.Time  `gorm:"column:created_at;autoCreateTime:false"`
	UpdatedAt                      time.Time  `gorm:"column:updated_at;autoUpdateTime:false"`
}

func (tenantRow) TableName() string { return "tenants" }

func (r *tenantRow) domain() Tenant {
	t := Tenant{
		ID:                             r.ID.String(),
		Name:                           r.Name,
		CallbackURL:                    r.CallbackURL,
		Events:                         append([]string{}, r.Events...),
		Rate:                           int(database.Value(r.Rate)),
		Burst:                          int(database.Value(r.Burst)),
		Concurrency:                    int(database.Value(r.Concurrency)),
		DeliverTestEvents:              r.DeliverTestEvents,
		EndpointDisabledAt:             r.EndpointDisabledAt,
		EndpointEnabledAt:              r.EndpointEnabledAt,
		PreviousSigningSecretExpiresAt: r.PreviousSigningSecretExpiresAt,
		CreatedAt:                      r.CreatedAt,
		UpdatedAt:                      r.UpdatedAt,
		EndpointDisabledReason:         database.Value(r.EndpointDisabledReason),
	}
	return t
}

type appRow struct {
	AppID                   string     `gorm:"column:app_id;primaryKey"`
	TenantID                uuid.UUID  `gorm:"column:tenant_id"`
	Secret                  []byte     `gorm:"column:secret"`
	PreviousSecret          []byte     `gorm:"column:previous_secret"`
	PreviousSecretExpiresAt *time.Time `gorm:"column:previous_secret_expires_at"`
	VerifyToken             string     `gorm:"column:verify_token"`
	LegacySHA1              bool       `gorm:"column:legacy_sha1"`
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
		PreviousSecretExpiresAt: r.PreviousSecretExpiresAt,
		CreatedAt:               r.CreatedAt,
		UpdatedAt:               r.UpdatedAt,
	}
}

type pageRow struct {
	PageID    string    `gorm:"column:page_id;primaryKey"`
	AppID     string    `gorm:"column:app_id;primaryKey"`
	TenantID  uuid.UUID `gorm:"column:tenant_id"`
	Object    string    `gorm:"column:object"`
	CreatedAt time.Time `gorm:"column:created_at;autoCreateTime:false"`
}

func (pageRow) TableName() string { return "pages" }

func (r *pageRow) domain() Page {
	return Page{PageID: r.PageID, AppID: r.AppID, TenantID: r.TenantID.String(), Object: Object(r.Object), CreatedAt: r.CreatedAt}
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
