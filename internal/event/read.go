package event

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"gorm.io/gorm"

	"github.com/postgate/postgate/internal/database"
)

// The rows below mirror migrations/*.sql column by column; the schema is
// the migrations, never these structs (TestRowsMatchSchema checks that
// they agree).

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

// listColumns are the columns of a list: everything but the body, as
// selected from events e LEFT JOIN deliveries d.
const listColumns = `e.id, e.tenant_id, e.page_id, e.app_id, e.dedup_key, e.type, e.test,
	e.status, e.attempts, e.received_at, e.delivered_at, e.dead_at, d.next_attempt_at`

// withQueue is the FROM of a read of events with their queue rows.
const withQueue = `events e LEFT JOIN deliveries d ON d.event_id = e.id`

func (q *queuedEventRow) domain() Event {
	r := &q.Event
	e := Event{
		ID:            r.ID,
		TenantID:      r.TenantID.String(),
		PageID:        r.PageID,
		AppID:         r.AppID,
		Type:          r.Type,
		Test:          r.Test,
		Status:        Status(r.Status),
		Attempts:      int(r.Attempts),
		ReceivedAt:    r.ReceivedAt,
		DeliveredAt:   r.DeliveredAt,
		DeadAt:        r.DeadAt,
		Body:          r.Body,
		NextAttemptAt: database.Value(q.NextAttemptAt),
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
	return Attempt{
		Number:     int(r.Attempt),
		At:         r.AttemptedAt,
		StatusCode: int(database.Value(r.StatusCode)),
		Latency:    time.Duration(r.LatencyUS) * time.Microsecond,
		Class:      r.ErrorClass,
		Error:      database.Value(r.ErrorMessage),
		Response:   database.Value(r.ResponseSnippet),
	}
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
	return Quarantined{ID: r.ID, TenantID: r.TenantID.String(), AppID: r.AppID, Reason: r.Reason,
		Size: len(r.Body), Body: r.Body, ReceivedAt: r.ReceivedAt}
}

// quarantineSummaryRow is a quarantined body in a list: its size and its
// first QuarantineListBytes.
type quarantineSummaryRow struct {
	ID         uuid.UUID `gorm:"column:id"`
	TenantID   uuid.UUID `gorm:"column:tenant_id"`
	AppID      string    `gorm:"column:app_id"`
	Reason     string    `gorm:"column:reason"`
	Head       []byte    `gorm:"column:head"`
	Size       int64     `gorm:"column:size"`
	ReceivedAt time.Time `gorm:"column:received_at"`
}

func (r *quarantineSummaryRow) domain() Quarantined {
	return Quarantined{ID: r.ID, TenantID: r.TenantID.String(), AppID: r.AppID, Reason: r.Reason,
		Body: r.Head, Size: int(r.Size), ReceivedAt: r.ReceivedAt}
}

// Filter narrows a list of events; zero fields do not filter. Since is
// inclusive and Until exclusive, both on received_at.
type Filter struct {
	Status Status
	Type   string
	PageID string
	// Mid finds the event with this message id (a postback's or a
	// message's mid), among the Pages of MidPages (or PageID when set).
	Mid      string
	MidPages []string
	Since    time.Time
	Until    time.Time
}

// List lists a tenant's events in id order (ids are UUIDv7, so that is the
// order they were received in, and the primary key serves it), without
// their bodies.
func (s *Store) List(ctx context.Context, tenantID string, f Filter, opts database.ListOptions) (database.Results[Event], error) {
	tid, err := parseTenant(tenantID, "tenant")
	if err != nil {
		return database.Results[Event]{}, err
	}
	var after uuid.UUID
	if opts.Cursor != "" {
		if after, err = idCursor(opts.Cursor); err != nil {
			return database.Results[Event]{}, err
		}
	}
	var ids []uuid.UUID
	if f.Mid != "" {
		pages := f.MidPages
		if f.PageID != "" {
			pages = []string{f.PageID}
		}
		if ids, err = s.idsByMid(ctx, tid, pages, f.Mid); err != nil {
			return database.Results[Event]{}, err
		}
		if len(ids) == 0 {
			return database.Results[Event]{Items: []Event{}}, nil
		}
	}
	var rows []queuedEventRow
	if err := listQuery(s.db.WithContext(ctx), tid, f, ids, after, opts.PageSize()+1).Scan(&rows).Error; err != nil {
		return database.Results[Event]{}, fmt.Errorf("list events: %w", err)
	}
	return database.PageOf(rows, opts.PageSize(), (*queuedEventRow).domain,
		func(r *queuedEventRow) []string { return []string{r.Event.ID.String()} }), nil
}

// listQuery is List's query: up to limit of tenant tid's events that f
// picks (those of ids, when f has a mid), after the id after (uuid.Nil:
// from the start), in id order.
func listQuery(db *gorm.DB, tid uuid.UUID, f Filter, ids []uuid.UUID, after uuid.UUID, limit int) *gorm.DB {
	q := db.Table(withQueue).Select(listColumns).Where("e.tenant_id = ?", tid)
	if f.Status != "" {
		q = q.Where("e.status = ?", string(f.Status))
	}
	if f.Type != "" {
		q = q.Where("e.type = ?", f.Type)
	}
	if f.PageID != "" {
		q = q.Where("e.page_id = ?", f.PageID)
	}
	if f.Mid != "" {
		q = q.Where("e.id IN ?", ids)
	}
	if !f.Since.IsZero() {
		q = q.Where("e.received_at >= ?", f.Since)
	}
	if !f.Until.IsZero() {
		q = q.Where("e.received_at < ?", f.Until)
	}
	if after != uuid.Nil {
		q = q.Where("e.id > ?", after)
	}
	return q.Order("e.id").Limit(limit)
}

// idsByMidSQL finds the events whose mid is $3 among the Pages $2 of
// tenant $1. The dedup key of an event with a mid is "m:" + mid, unique per
// (Page, tenant): one probe of the dedup index per Page, and no index of
// its own to pay for on ingest. Stale statistics (a tenant that had one
// event when they were taken) made the planner read the tenant's events
// one by one along the primary key instead, filtering on the key; so the
// tenant is compared with IS NOT DISTINCT FROM, which no index serves,
// and OFFSET 0 keeps the per-Page probe from being flattened into a join
// (TestPlansSurviveStaleStatistics).
const idsByMidSQL = `SELECT e.id FROM unnest($2::text[]) AS p(page_id)
CROSS JOIN LATERAL (
	SELECT id FROM events
	WHERE page_id = p.page_id AND dedup_key = $3 AND tenant_id IS NOT DISTINCT FROM $1::uuid
	OFFSET 0
) e`

func (s *Store) idsByMid(ctx context.Context, tid uuid.UUID, pages []string, mid string) ([]uuid.UUID, error) {
	rows, err := s.pool.Query(ctx, idsByMidSQL, tid, pages, MidKey(mid))
	if err != nil {
		return nil, fmt.Errorf("find events by mid: %w", err)
	}
	ids, err := pgx.CollectRows(rows, pgx.RowTo[uuid.UUID])
	if err != nil {
		return nil, fmt.Errorf("find events by mid: %w", err)
	}
	return ids, nil
}

// MaxAttemptsShown bounds the attempts Get returns: the most recent ones.
// The retry schedule makes a dozen per replay; this only guards against an
// event replayed without end.
const MaxAttemptsShown = 200

// Get reads one event of a tenant, with its body and its delivery
// attempts (oldest first; the most recent MaxAttemptsShown).
func (s *Store) Get(ctx context.Context, tenantID string, id uuid.UUID) (Event, []Attempt, error) {
	tid, err := parseTenant(tenantID, "event")
	if err != nil {
		return Event{}, nil, err
	}
	var rows []queuedEventRow
	if err := s.db.WithContext(ctx).Table(withQueue).Select(listColumns+", e.body").
		Where("e.tenant_id = ? AND e.id = ?", tid, id).Limit(1).Scan(&rows).Error; err != nil {
		return Event{}, nil, fmt.Errorf("get event: %w", err)
	}
	if len(rows) == 0 {
		return Event{}, nil, notFound("event")
	}
	var attempts []attemptRow
	if err := s.db.WithContext(ctx).Where("tenant_id = ? AND event_id = ?", tid, id).
		Order("id DESC").Limit(MaxAttemptsShown).Find(&attempts).Error; err != nil {
		return Event{}, nil, fmt.Errorf("get attempts: %w", err)
	}
	out := make([]Attempt, len(attempts))
	for i := range attempts {
		out[len(attempts)-1-i] = attempts[i].domain()
	}
	return rows[0].domain(), out, nil
}

// requeueSQL is what a replay does: the events the WHERE clause (%s, over
// events e) picks become pending with a fresh retry schedule (and no
// delivered_at or dead_at: those described the life the replay ends), and
// their deliveries rows are due now, unleased, with a retry count of 0 and
// a new expiry clock. A settled event gets a new deliveries row that
// carries on its attempt numbering from the highest number logged (not
// their count: an attempt whose lease a replay took may have left a gap); an attempt in flight loses its lease,
// so its outcome changes nothing. The id (the webhook-id) does not change,
// and the dedup key is not consulted, so a replay bypasses dedup. The
// second %s selects from the requeued events (e) and their queue rows
// (d). Run it after lockQueuedSQL with the same WHERE clause.
const requeueSQL = `WITH e AS (
	UPDATE events e SET status = 'pending', attempts = 0, delivered_at = NULL, dead_at = NULL
	WHERE %s
	RETURNING e.*
), d AS (
	INSERT INTO deliveries (tenant_id, event_id, attempted)
	SELECT e.tenant_id, e.id, (SELECT coalesce(max(a.attempt), 0) FROM delivery_attempts a WHERE a.tenant_id = e.tenant_id AND a.event_id = e.id)
	FROM e
	ON CONFLICT (event_id) DO UPDATE
	SET next_attempt_at = now(), leased_until = NULL, attempts = 0, queued_at = now()
	RETURNING tenant_id, event_id, next_attempt_at
)
%s`

// lockQueuedSQL locks the queue rows of the events a replay's WHERE clause
// picks before the replay updates the events: deliveries before events is
// the lock order of every writer of both (outcomes, expiry), so a replay
// cannot deadlock with them.
const lockQueuedSQL = `SELECT 1 FROM deliveries d JOIN events e ON e.id = d.event_id
WHERE %s ORDER BY d.event_id FOR UPDATE OF d`

// requeuedEvents selects the requeued events as listColumns lists them.
const requeuedEvents = `SELECT ` + listColumns + ` FROM e JOIN d ON d.event_id = e.id`

// requeue runs a replay of the events where picks (see requeueSQL) in one
// transaction and scans what final selects into dest.
func (s *Store) requeue(ctx context.Context, where, final string, dest any, args ...any) error {
	return database.RetryDeadlock(func() error {
		return s.db.WithContext(ctx).Transaction(func(tx *gorm.DB) error {
			if err := tx.Exec(fmt.Sprintf(lockQueuedSQL, where), args...).Error; err != nil {
				return err
			}
			return tx.Raw(fmt.Sprintf(requeueSQL, where, final), args...).Scan(dest).Error
		})
	})
}

// Replay puts one event of a tenant back in the delivery queue.
func (s *Store) Replay(ctx context.Context, tenantID string, id uuid.UUID) (Event, error) {
	tid, err := parseTenant(tenantID, "event")
	if err != nil {
		return Event{}, err
	}
	var rows []queuedEventRow
	if err := s.requeue(ctx, "e.tenant_id = ? AND e.id = ?", requeuedEvents, &rows, tid, id); err != nil {
		return Event{}, fmt.Errorf("replay event: %w", err)
	}
	if len(rows) == 0 {
		return Event{}, notFound("event")
	}
	return rows[0].domain(), nil
}

// ReplayFilter picks the events a bulk replay requeues: every event of the
// tenant with Status received in [Since, Until) (zero bounds are open).
type ReplayFilter struct {
	Status Status
	Since  time.Time
	Until  time.Time
}

// ReplayMany requeues every event f picks and returns how many.
func (s *Store) ReplayMany(ctx context.Context, tenantID string, f ReplayFilter) (int64, error) {
	tid, err := parseTenant(tenantID, "tenant")
	if err != nil {
		return 0, err
	}
	where := "e.tenant_id = @tenant AND e.status = @status"
	if !f.Since.IsZero() {
		where += " AND e.received_at >= @since"
	}
	if !f.Until.IsZero() {
		where += " AND e.received_at < @until"
	}
	var n int64
	err = s.requeue(ctx, where, "SELECT count(*) FROM d", &n,
		map[string]any{"tenant": tid, "status": string(f.Status), "since": f.Since, "until": f.Until})
	if err != nil {
		return 0, fmt.Errorf("replay events: %w", err)
	}
	return n, nil
}

// ListQuarantine lists a tenant's quarantined bodies in (received_at, id)
// order, each with its size and its first QuarantineListBytes.
func (s *Store) ListQuarantine(ctx context.Context, tenantID string, opts database.ListOptions) (database.Results[Quarantined], error) {
	tid, err := parseTenant(tenantID, "tenant")
	if err != nil {
		return database.Results[Quarantined]{}, err
	}
	q := s.db.WithContext(ctx).Model(&quarantineRow{}).
		Select("id, tenant_id, app_id, reason, substring(body FROM 1 FOR ?) AS head, octet_length(body) AS size, received_at", QuarantineListBytes).
		Where("tenant_id = ?", tid).Order("received_at").Order("id")
	if opts.Cursor != "" {
		at, id, err := timeIDCursor(opts.Cursor)
		if err != nil {
			return database.Results[Quarantined]{}, err
		}
		q = q.Where("(received_at, id) > (?, ?)", at, id)
	}
	var rows []quarantineSummaryRow
	if err := q.Limit(opts.PageSize() + 1).Scan(&rows).Error; err != nil {
		return database.Results[Quarantined]{}, fmt.Errorf("list quarantine: %w", err)
	}
	return database.PageOf(rows, opts.PageSize(), (*quarantineSummaryRow).domain, func(r *quarantineSummaryRow) []string {
		return []string{r.ReceivedAt.UTC().Format(time.RFC3339Nano), r.ID.String()}
	}), nil
}

// GetQuarantined reads one quarantined body of a tenant, bytes included.
func (s *Store) GetQuarantined(ctx context.Context, tenantID string, id uuid.UUID) (Quarantined, error) {
	tid, err := parseTenant(tenantID, "quarantined body")
	if err != nil {
		return Quarantined{}, err
	}
	var row quarantineRow
	err = s.db.WithContext(ctx).Where("tenant_id = ? AND id = ?", tid, id).Take(&row).Error
	switch {
	case errors.Is(err, gorm.ErrRecordNotFound):
		return Quarantined{}, notFound("quarantined body")
	case err != nil:
		return Quarantined{}, fmt.Errorf("get quarantined body: %w", err)
	}
	return row.domain(), nil
}

var errBadCursor = invalid("cursor", "%s", database.ErrBadCursor.Error())

// idCursor decodes the cursor of a list ordered by a UUID id.
func idCursor(c string) (uuid.UUID, error) {
	k, err := database.DecodeCursor(c, 1)
	if err != nil {
		return uuid.Nil, errBadCursor
	}
	id, err := uuid.Parse(k[0])
	if err != nil {
		return uuid.Nil, errBadCursor
	}
	return id, nil
}

func timeIDCursor(c string) (time.Time, uuid.UUID, error) {
	k, err := database.DecodeCursor(c, 2)
	if err != nil {
		return time.Time{}, uuid.Nil, errBadCursor
	}
	at, err := time.Parse(time.RFC3339Nano, k[0])
	if err != nil {
		return time.Time{}, uuid.Nil, errBadCursor
	}
	id, err := uuid.Parse(k[1])
	if err != nil {
		return time.Time{}, uuid.Nil, errBadCursor
	}
	return at, id, nil
}
