package tenant

import (
	"database/sql/driver"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5/pgtype"
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
		Rate:                           intOf(r.Rate),
		Burst:                          intOf(r.Burst),
		Concurrency:                    intOf(r.Concurrency),
		DeliverTestEvents:              r.DeliverTestEvents,
		EndpointDisabledAt:             r.EndpointDisabledAt,
		PreviousSigningSecretExpiresAt: r.PreviousSigningSecretExpiresAt,
		CreatedAt:                      r.CreatedAt,
		UpdatedAt:                      r.UpdatedAt,
		EndpointDisabledReason:         valueOf(r.EndpointDisabledReason),
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

type eventRow struct {
	ID          uuid.UUID  `gorm:"column:id;primaryKey"`
	TenantID    uuid.UUID  `gorm:"column:tenant_id;primaryKey"`
	PageID      string     `gorm:"column:page_id"`
	AppID       string     `gorm:"column:app_id"`
	DedupKey    string     `gorm:"column:dedup_key"`
	Type        string     `gorm:"column:type"`
	Test        bool       `gorm:"column:test"`
	Status      string     `gorm:"column:status"`
	Attempts    int32      `gorm:"column:attempts"`
	ReceivedAt  time.Time  `gorm:"column:received_at"`
	DeliveredAt *time.Time `gorm:"column:delivered_at"`
	DeadAt      *time.Time `gorm:"column:dead_at"`
	Body        []byte     `gorm:"column:body"`
}

func (eventRow) TableName() string { return "events" }

// queuedEventRow is an event read with its place in the delivery queue
// (the deliveries row, absent once the event has settled).
type queuedEventRow struct {
	Event         eventRow   `gorm:"embedded"`
	NextAttemptAt *time.Time `gorm:"column:next_attempt_at"`
}

// eventListColumns are the columns of a list: everything but the body, as
// selected from events e LEFT JOIN deliveries d.
const eventListColumns = `e.id, e.tenant_id, e.page_id, e.app_id, e.dedup_key, e.type, e.test,
	e.status, e.attempts, e.received_at, e.delivered_at, e.dead_at, d.next_attempt_at`

// eventsWithQueue is the FROM of a read of events with their queue rows.
const eventsWithQueue = `events e LEFT JOIN deliveries d ON d.event_id = e.id`

func (q *queuedEventRow) domain() Event {
	r := &q.Event
	e := Event{
		ID:            r.ID,
		TenantID:      r.TenantID.String(),
		PageID:        r.PageID,
		AppID:         r.AppID,
		Type:          r.Type,
		Test:          r.Test,
		Status:        EventStatus(r.Status),
		Attempts:      int(r.Attempts),
		ReceivedAt:    r.ReceivedAt,
		DeliveredAt:   r.DeliveredAt,
		DeadAt:        r.DeadAt,
		Body:          r.Body,
		NextAttemptAt: valueOf(q.NextAttemptAt),
	}
	return e
}

type attemptRow struct {
	TenantID        uuid.UUID `gorm:"column:tenant_id;primaryKey"`
	EventID         uuid.UUID `gorm:"column:event_id;primaryKey"`
	ID              int64     `gorm:"column:id;primaryKey"`
	Attempt         int32     `gorm:"column:attempt"`
	AttemptedAt     time.Time `gorm:"column:attempted_at"`
	StatusCode      *int32    `gorm:"column:status_code"`
	LatencyUS       int64     `gorm:"column:latency_us"`
	ErrorClass      string    `gorm:"column:error_class"`
	ErrorMessage    *string   `gorm:"column:error_message"`
	ResponseSnippet *string   `gorm:"column:response_snippet"`
}

func (attemptRow) TableName() string { return "delivery_attempts" }

func (r *attemptRow) domain() Attempt {
	a := Attempt{
		Number:     int(r.Attempt),
		At:         r.AttemptedAt,
		StatusCode: intOf(r.StatusCode),
		Latency:    time.Duration(r.LatencyUS) * time.Microsecond,
		Class:      r.ErrorClass,
		Error:      valueOf(r.ErrorMessage),
		Response:   valueOf(r.ResponseSnippet),
	}
	return a
}

type quarantineRow struct {
	ID         uuid.UUID `gorm:"column:id;primaryKey"`
	TenantID   uuid.UUID `gorm:"column:tenant_id;primaryKey"`
	AppID      string    `gorm:"column:app_id"`
	Reason     string    `gorm:"column:reason"`
	Body       []byte    `gorm:"column:body"`
	ReceivedAt time.Time `gorm:"column:received_at"`
}

func (quarantineRow) TableName() string { return "quarantine" }

func (r *quarantineRow) domain() Quarantined {
	return Quarantined{ID: r.ID, TenantID: r.TenantID.String(), AppID: r.AppID, Reason: r.Reason, Body: r.Body, ReceivedAt: r.ReceivedAt}
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

func intOf(p *int32) int {
	if p == nil {
		return 0
	}
	return int(*p)
}

// nullInt maps the domain's "0 means the default" to NULL.
func nullInt(v int) *int32 {
	if v == 0 {
		return nil
	}
	n := int32(v)
	return &n
}

// valueOf is what p points to, or the zero value for a NULL column.
func valueOf[T any](p *T) T {
	if p == nil {
		var zero T
		return zero
	}
	return *p
}

func nullString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
