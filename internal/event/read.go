package event

import (
	"context"
	"errors"
	"fmt"
	"slices"
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
	Sender      *string    `gorm:"column:sender"`
	EntryTime   []byte     `gorm:"column:entry_time"`
	Item        []byte     `gorm:"column:item"`
}

func (eventRow) TableName() string { return "events" }

// queuedEventRow is an event read with when its next delivery attempt is
// due (NULL once every delivery has settled).
type queuedEventRow struct {
	Event         eventRow   `gorm:"embedded"`
	NextAttemptAt *time.Time `gorm:"column:next_attempt_at"`
}

// eventStatusSQL is an event's status: its worst delivery's (dead,
// failed, pending, delivered: w, eventStateSQL's), or for an event with
// none, what its row says, where a status still to be delivered means
// dead (no endpoint took it, or the endpoints that had it were deleted:
// listed, replayable).
const eventStatusSQL = `coalesce(w.status, CASE WHEN e.status IN ('pending', 'failed') THEN 'dead' ELSE e.status END)`

// listColumns are the columns of a list: everything but the body, the
// delivery state read from the event's deliveries (eventStateSQL).
const listColumns = `e.id, e.tenant_id, e.page_id, e.app_id, e.dedup_key, e.type, e.test,
	` + eventStatusSQL + ` AS status, coalesce(w.attempts, e.attempts) AS attempts, e.received_at,
	CASE WHEN w.status IS NULL THEN e.delivered_at WHEN w.status = 'delivered' THEN w.delivered_at END AS delivered_at,
	CASE WHEN w.status IS NULL AND e.status IN ('pending', 'failed') THEN e.received_at
		WHEN w.status IS NULL THEN e.dead_at WHEN w.status = 'dead' THEN w.dead_at END AS dead_at,
	e.sender, w.next_attempt_at`

// eventStateSQL aggregates the deliveries of each event e into w: the
// worst status (dead, failed, pending, delivered), the retry counts
// summed, when the last delivery settled each way, and the next attempt
// due. No row when the event has no delivery. The deliveries are found
// through the tenant's endpoints (deleted ones too: their settled
// deliveries are the event's history) and the key; no status test, so no
// stale plan can walk an endpoint's due index once per event instead.
const eventStateSQL = `LEFT JOIN LATERAL (
	SELECT (ARRAY['delivered', 'pending', 'failed', 'dead'])[max(CASE d.status
			WHEN 'delivered' THEN 1 WHEN 'pending' THEN 2 WHEN 'failed' THEN 3 ELSE 4 END)] AS status,
		sum(d.attempts)::int AS attempts,
		max(d.settled_at) FILTER (WHERE d.status = 'delivered') AS delivered_at,
		max(d.settled_at) FILTER (WHERE d.status = 'dead') AS dead_at,
		min(d.next_attempt_at) FILTER (WHERE d.status IN ('pending', 'failed')) AS next_attempt_at
	FROM endpoints ep JOIN deliveries d ON d.endpoint_id = ep.id AND d.event_id = e.id
	WHERE ep.tenant_id = e.tenant_id
	HAVING count(*) > 0
) w ON true`

// endpointListColumns are listColumns for a search by endpoint (from
// deliveries fd joined to events e): the delivery state shown is that of
// the delivery to the endpoint searched (its status, retry count, next
// attempt, and settled time), as the status filter is.
const endpointListColumns = `e.id, e.tenant_id, e.page_id, e.app_id, e.dedup_key, e.type, e.test,
	fd.status, fd.attempts, e.received_at,
	CASE WHEN fd.status = 'delivered' THEN fd.settled_at END AS delivered_at,
	CASE WHEN fd.status = 'dead' THEN fd.settled_at END AS dead_at, e.sender,
	CASE WHEN fd.status IN ('pending', 'failed') THEN fd.next_attempt_at END AS next_attempt_at`

// withQueue is the FROM of a read of events with their delivery state.
const withQueue = `events e ` + eventStateSQL

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
		Sender:        database.Value(r.Sender),
	}
	return e
}

// deliveryRow is one delivery of an event, as Get reads it.
type deliveryRow struct {
	EndpointID    uuid.UUID  `gorm:"column:endpoint_id"`
	Status        string     `gorm:"column:status"`
	Attempts      int32      `gorm:"column:attempts"`
	NextAttemptAt time.Time  `gorm:"column:next_attempt_at"`
	SettledAt     *time.Time `gorm:"column:settled_at"`
	QueuedAt      time.Time  `gorm:"column:queued_at"`
	Behind        *uuid.UUID `gorm:"column:behind"`
	Head          *uuid.UUID `gorm:"column:head"`
}

type attemptRow struct {
	TenantID        uuid.UUID `gorm:"column:tenant_id;primaryKey"`
	EventID         uuid.UUID `gorm:"column:event_id;primaryKey"`
	ID              int64     `gorm:"column:id;primaryKey"`
	EndpointID      uuid.UUID `gorm:"column:endpoint_id"`
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
		EndpointID: r.EndpointID,
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
// inclusive and Until exclusive, both on received_at. With EndpointID,
// only events delivered to that endpoint are listed, and Status is the
// status of that delivery, as is the state each listed event shows;
// without, the event's (its worst delivery's).
type Filter struct {
	Status Status
	Type   string
	PageID string
	// Mid finds the event with this message id (a postback's or a
	// message's mid), among the Pages of MidPages (or PageID when set).
	Mid      string
	MidPages []string
	// Sender finds the events of one person: a PSID or a user_ref (for an
	// echo, the person it was sent to).
	Sender     string
	EndpointID uuid.UUID
	Since      time.Time
	Until      time.Time
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
	if f.EndpointID != uuid.Nil {
		// Another tenant's endpoint is refused, not searched: its
		// deliveries would all be read and none kept.
		var exists bool
		if err := s.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM endpoints WHERE tenant_id = $1 AND id = $2)`,
			tid, f.EndpointID).Scan(&exists); err != nil {
			return database.Results[Event]{}, fmt.Errorf("list events: %w", err)
		}
		if !exists {
			return database.Results[Event]{}, invalid("endpoint_id", "is not an endpoint of this tenant")
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
//
// The searches must stay index lookups whatever the statistics say (they
// are stale on tables that grow from empty: TestPlansSurviveStaleStatistics).
// A search by sender reads the index (sender) and sorts by id: the tenant
// is then compared with IS NOT DISTINCT FROM, which no index serves, or a
// plan made while the tenant had a handful of events reads all of them
// along the primary key, filtering on the sender. A search by endpoint
// joins the deliveries key (endpoint_id, event_id); its status test is an
// expression the due index's predicate cannot be proved from, or such a
// plan probes the endpoint's whole queue once per event; and it walks
// the endpoint's deliveries in key order, looking each event up by its
// key in a subquery that cannot be flattened (OFFSET 0), so no plan can
// read the tenant's events and probe the deliveries with a partial key.
func listQuery(db *gorm.DB, tid uuid.UUID, f Filter, ids []uuid.UUID, after uuid.UUID, limit int) *gorm.DB {
	order := "e.id"
	var q *gorm.DB
	switch {
	case f.EndpointID != uuid.Nil:
		q = db.Table(`deliveries fd CROSS JOIN LATERAL (
			SELECT * FROM events e0 WHERE e0.tenant_id = ? AND e0.id = fd.event_id OFFSET 0) e`, tid).
			Select(endpointListColumns).Where("fd.endpoint_id = ?", f.EndpointID)
		if f.Sender != "" {
			q = q.Where("e.sender = ?", f.Sender)
		}
		if f.Status != "" {
			q = q.Where("fd.status || '' = ?", string(f.Status))
		}
		order = "fd.event_id"
	case f.Sender != "":
		q = db.Table(withQueue).Select(listColumns).Where("e.tenant_id IS NOT DISTINCT FROM ?", tid).Where("e.sender = ?", f.Sender)
	default:
		q = db.Table(withQueue).Select(listColumns).Where("e.tenant_id = ?", tid)
	}
	if f.EndpointID == uuid.Nil && f.Status != "" {
		q = q.Where(eventStatusSQL+" = ?", string(f.Status))
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
		q = q.Where(order+" > ?", after)
	}
	return q.Order(order).Limit(limit)
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

// deliveriesOfSQL reads the deliveries of event $2 of tenant $1, through
// the tenant's endpoints (the key's first column); for an ordered one
// still to make, the head of its conversation now.
const deliveriesOfSQL = `SELECT d.endpoint_id, d.status, d.attempts, d.next_attempt_at, d.settled_at, d.queued_at, d.behind,
	CASE WHEN d.conversation IS NOT NULL AND d.status IN ('pending', 'failed') AND ep.ordering = 'conversation' THEN (
		SELECT h.event_id FROM deliveries h WHERE h.conversation = d.conversation AND h.status IN ('pending', 'failed')
		ORDER BY h.seq, h.event_id LIMIT 1) END AS head
FROM endpoints ep JOIN deliveries d ON d.endpoint_id = ep.id AND d.event_id = ?
WHERE ep.tenant_id = ? ORDER BY ep.is_default DESC, d.endpoint_id`

// Get reads one event of a tenant, with its body, its deliveries and its
// delivery attempts (oldest first; the most recent MaxAttemptsShown).
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
	var ds []deliveryRow
	if err := s.db.WithContext(ctx).Raw(deliveriesOfSQL, id, tid).Scan(&ds).Error; err != nil {
		return Event{}, nil, fmt.Errorf("get deliveries: %w", err)
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
	e := rows[0].domain()
	e.Deliveries = make([]Delivery, 0, len(ds))
	for _, d := range ds {
		dl := Delivery{EndpointID: d.EndpointID, Status: Status(d.Status), Attempts: int(d.Attempts)}
		switch dl.Status {
		case StatusDelivered:
			dl.DeliveredAt = d.SettledAt
		case StatusDead:
			dl.DeadAt = d.SettledAt
		default:
			dl.NextAttemptAt = d.NextAttemptAt
		}
		if d.Behind != nil {
			dl.Held = holdOf(id, &d, out)
		}
		e.Deliveries = append(e.Deliveries, dl)
	}
	return e, out, nil
}

// holdOf is the wait of event id's delivery d (queued behind d.Behind),
// released by its first attempt since it was queued (of attempts, oldest
// first), or by settling without one; on while an earlier delivery heads
// its conversation.
func holdOf(id uuid.UUID, d *deliveryRow, attempts []Attempt) *Hold {
	h := &Hold{Behind: *d.Behind, Since: d.QueuedAt}
	for i := range attempts {
		if a := &attempts[i]; a.EndpointID == d.EndpointID && !a.At.Before(d.QueuedAt) {
			h.Until = &a.At
			return h
		}
	}
	switch {
	case d.Status == string(StatusDelivered) || d.Status == string(StatusDead):
		h.Until = d.SettledAt
	case d.Head != nil && *d.Head != id:
		h.Head = *d.Head
	}
	// Otherwise it heads its conversation: released, its first attempt
	// not logged yet.
	return h
}

// takesSQL is the fan-out's filter (the events insert trigger, migration
// 00012) for endpoint ep and event e, for a replay that queues an event
// again for the endpoints that would take it now.
const takesSQL = `(e.type = ANY (ep.events) OR ('*' = ANY (ep.events) AND e.type NOT LIKE 'postgate.%'))
	AND (ep.pages = '{}' OR e.page_id = ANY (ep.pages)) AND (NOT e.test OR ep.deliver_test_events)`

// conversationSQL is the conversation of event e's delivery to endpoint
// ep, as the fan-out sets it (migration 16): endpoint, Page and person,
// for an ordered endpoint and an event with a person; NULL otherwise.
const conversationSQL = `CASE WHEN ep.ordering = 'conversation' AND e.sender IS NOT NULL
	THEN deliveries_conversation(ep.id, e.page_id, e.sender) END`

// requeueSet is what a replay does to a delivery: due now, unleased, with
// a retry count of 0 and a new expiry clock. Its attempt numbering (the
// attempted column) carries on; an attempt in flight loses its lease, so
// its outcome changes nothing. The id (the webhook-id) does not change,
// and the dedup key is not consulted, so a replay bypasses dedup. An
// ordered delivery goes to the back of its conversation (as the endpoint
// is now: %[1]s is its conversation): seq %[2]s, drawn once the
// transaction holds its conversations (lockConversations), behind the
// latest delivery still open in it. One whose attempt is in flight (a
// lease still running) keeps its place instead, and is due when that
// lease ends: moved back, the next event of its conversation could go
// while the old attempt is still being sent, and sent again at once it
// would overlap itself. Its lease moves by a microsecond rather than
// going: the old attempt's outcome no longer matches it, and a second
// replay before it ends still sees an attempt in flight.
var requeueSet = `status = 'pending', attempts = 0,
	leased_until = CASE WHEN ` + inFlightSQL + ` THEN d.leased_until + interval '1 microsecond' END,
	queued_at = now(), settled_at = NULL, conversation = %[1]s,
	next_attempt_at = CASE WHEN ` + inFlightSQL + ` THEN d.leased_until ELSE now() END,
	seq = CASE WHEN %[1]s IS NULL THEN NULL WHEN ` + inFlightSQL + ` THEN d.seq
		ELSE coalesce(%[2]s::bigint, nextval('deliveries_seq')) END,
	behind = CASE WHEN %[1]s IS NULL THEN NULL WHEN ` + inFlightSQL + ` THEN d.behind
		ELSE ` + lastOpenSQL("%[1]s", "d.event_id") + ` END`

// lastOpenSQL is the event of the last open delivery of conversation
// conv other than event not's: what a delivery requeued at the back of
// conv is behind (the fan-out trigger's own lookup, migration 16).
func lastOpenSQL(conv, not string) string {
	return `(SELECT h.event_id FROM deliveries h
		WHERE h.conversation = ` + conv + ` AND h.status IN ('pending', 'failed') AND h.event_id <> ` + not + `
		ORDER BY h.seq DESC, h.event_id DESC LIMIT 1)`
}

// inFlightSQL: delivery d, of conversation %[1]s, has an attempt in flight.
const inFlightSQL = `(d.conversation = %[1]s AND d.leased_until > now())`

// replayTargetsSQL lists, with their conversations, the endpoints a replay
// of event $1 of tenant $2 goes to: $3 if given; else those it has a
// delivery for ($4), or, when it has none, those that take it now. The
// deliveries it has are locked (deliveries before events).
const replayTargetsSQL = `WITH have AS (
	SELECT d.endpoint_id FROM endpoints ep JOIN deliveries d ON d.endpoint_id = ep.id AND d.event_id = $1
	WHERE ep.tenant_id = $2 AND ep.deleted_at IS NULL AND $3::uuid IS NULL
	ORDER BY d.endpoint_id FOR UPDATE OF d
)
SELECT ep.id, ` + conversationSQL + ` FROM events e JOIN endpoints ep ON ep.tenant_id = e.tenant_id
WHERE e.id = $1 AND e.tenant_id = $2 AND ep.deleted_at IS NULL AND (ep.id = $3
	OR ($3 IS NULL AND ep.id IN (SELECT endpoint_id FROM have))
	OR ($3 IS NULL AND NOT EXISTS (SELECT 1 FROM have) AND ` + takesSQL + `))
ORDER BY ep.id`

// replaySQL queues event $1 of tenant $2 for the endpoints $3, with their
// conversations $5 (replayTargetsSQL's, which are locked), in seq $4: a
// new delivery whose attempt numbers carry on from the highest logged for
// that endpoint, or the existing one requeued.
var replaySQL = `INSERT INTO deliveries AS d (tenant_id, event_id, endpoint_id, attempted, conversation, seq, behind)
SELECT e.tenant_id, e.id, ep.id, (SELECT coalesce(max(a.attempt), 0) FROM delivery_attempts a
	WHERE a.tenant_id = e.tenant_id AND a.event_id = e.id AND a.endpoint_id = ep.id),
	t.conversation, CASE WHEN t.conversation IS NOT NULL THEN $4::bigint END,
	CASE WHEN t.conversation IS NOT NULL THEN ` + lastOpenSQL("t.conversation", "e.id") + ` END
FROM unnest($3::uuid[], $5::int8[]) AS t(endpoint_id, conversation)
JOIN endpoints ep ON ep.id = t.endpoint_id JOIN events e ON e.tenant_id = ep.tenant_id
WHERE e.id = $1 AND e.tenant_id = $2 AND ep.deleted_at IS NULL
ON CONFLICT (endpoint_id, event_id) DO UPDATE SET ` + fmt.Sprintf(requeueSet, "excluded.conversation", "$4")

// lockConversations holds the conversations (NULL ones are skipped) for
// the rest of tx and returns the seq that queues behind everything
// committed into them (migration 16's deliveries_order), or nil when
// there are none.
func lockConversations(ctx context.Context, tx pgx.Tx, conversations []*int64) (*int64, error) {
	var seq *int64
	if !slices.ContainsFunc(conversations, func(c *int64) bool { return c != nil }) {
		return nil, nil
	}
	err := tx.QueryRow(ctx, `SELECT deliveries_order($1)`, conversations).Scan(&seq)
	return seq, err
}

// Replay puts one event of a tenant back in the delivery queue: to
// endpoint (which must be the tenant's) when given, else to every endpoint
// it has a delivery for, or, if it has none (its endpoints were deleted,
// or changed in the instant it was accepted), to every endpoint that
// takes it now. An ordered endpoint gets it at the back of its
// conversation.
func (s *Store) Replay(ctx context.Context, tenantID string, id uuid.UUID, endpoint uuid.UUID) (Event, error) {
	tid, err := parseTenant(tenantID, "event")
	if err != nil {
		return Event{}, err
	}
	var epArg any
	if endpoint != uuid.Nil {
		epArg = endpoint
	}
	err = database.RetryDeadlock(func() error {
		return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			var exists bool
			if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM events WHERE tenant_id = $1 AND id = $2)`, tid, id).Scan(&exists); err != nil {
				return err
			}
			if !exists {
				return notFound("event")
			}
			if endpoint != uuid.Nil {
				if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM endpoints WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL)`, tid, endpoint).Scan(&exists); err != nil {
					return err
				}
				if !exists {
					return invalid("endpoint_id", "is not an endpoint of this tenant")
				}
			}
			rows, err := tx.Query(ctx, replayTargetsSQL, replan, id, tid, epArg)
			if err != nil {
				return err
			}
			var (
				eps   [][16]byte
				convs []*int64
				ep    [16]byte
				conv  *int64
			)
			if _, err := pgx.ForEachRow(rows, []any{&ep, &conv}, func() error {
				eps, convs = append(eps, ep), append(convs, conv)
				return nil
			}); err != nil {
				return err
			}
			if len(eps) == 0 {
				return nil
			}
			seq, err := lockConversations(ctx, tx, convs)
			if err != nil {
				return err
			}
			_, err = tx.Exec(ctx, replaySQL, replan, id, tid, eps, seq, convs)
			return err
		})
	})
	if err != nil {
		if errors.Is(err, ErrNotFound) || errors.Is(err, ErrInvalid) {
			return Event{}, err
		}
		return Event{}, fmt.Errorf("replay event: %w", err)
	}
	e, _, err := s.Get(ctx, tenantID, id)
	return e, err
}

// ReplayFilter picks the deliveries a bulk replay requeues: every delivery
// of the tenant's events (to EndpointID only, when set) in Status, of
// events received in [Since, Until) (zero bounds are open).
type ReplayFilter struct {
	Status     Status
	EndpointID uuid.UUID
	Since      time.Time
	Until      time.Time
}

// replayPickSQL locks, in key order, the deliveries a ReplayFilter picks,
// and returns them with their conversations.
const replayPickSQL = `SELECT d.endpoint_id, d.event_id, ` + conversationSQL + ` FROM endpoints ep
	JOIN deliveries d ON d.endpoint_id = ep.id
	JOIN events e ON e.tenant_id = ep.tenant_id AND e.id = d.event_id
	WHERE ep.tenant_id = $1 AND ep.deleted_at IS NULL AND ($2::uuid IS NULL OR ep.id = $2) AND d.status = $3
	  AND ($4::timestamptz IS NULL OR e.received_at >= $4) AND ($5::timestamptz IS NULL OR e.received_at < $5)
	ORDER BY d.endpoint_id, d.event_id
	FOR UPDATE OF d`

// replayManySQL requeues the deliveries ($1, $2) with their conversations
// $3, in seq $4.
var replayManySQL = `UPDATE deliveries d SET ` + fmt.Sprintf(requeueSet, "p.conversation", "$4") + `
FROM unnest($1::uuid[], $2::uuid[], $3::int8[]) AS p(endpoint_id, event_id, conversation)
WHERE d.endpoint_id = p.endpoint_id AND d.event_id = p.event_id`

// ReplayMany requeues every delivery f picks and returns how many.
func (s *Store) ReplayMany(ctx context.Context, tenantID string, f ReplayFilter) (int64, error) {
	tid, err := parseTenant(tenantID, "tenant")
	if err != nil {
		return 0, err
	}
	var ep, since, until any
	if f.EndpointID != uuid.Nil {
		ep = f.EndpointID
	}
	if !f.Since.IsZero() {
		since = f.Since
	}
	if !f.Until.IsZero() {
		until = f.Until
	}
	var n int64
	err = database.RetryDeadlock(func() error {
		return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			if f.EndpointID != uuid.Nil {
				var exists bool
				if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM endpoints WHERE tenant_id = $1 AND id = $2 AND deleted_at IS NULL)`, tid, f.EndpointID).Scan(&exists); err != nil {
					return err
				}
				if !exists {
					return invalid("endpoint_id", "is not an endpoint of this tenant")
				}
			}
			rows, err := tx.Query(ctx, replayPickSQL, replan, tid, ep, string(f.Status), since, until)
			if err != nil {
				return err
			}
			var (
				eps, ids [][16]byte
				convs    []*int64
				epID, id [16]byte
				conv     *int64
				distinct = map[[16]byte]bool{}
			)
			if _, err := pgx.ForEachRow(rows, []any{&epID, &id, &conv}, func() error {
				eps, ids, convs = append(eps, epID), append(ids, id), append(convs, conv)
				distinct[id] = true
				return nil
			}); err != nil {
				return err
			}
			if len(ids) == 0 {
				n = 0
				return nil
			}
			seq, err := lockConversations(ctx, tx, convs)
			if err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, replayManySQL, replan, eps, ids, convs, seq); err != nil {
				return err
			}
			n = int64(len(distinct))
			return nil
		})
	})
	if err != nil {
		if errors.Is(err, ErrInvalid) {
			return 0, err
		}
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
