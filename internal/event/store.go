package event

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
	"gorm.io/gorm"

	"github.com/postgate/postgate/internal/database"
)

// Store is the only writer of the events, deliveries, delivery_attempts
// and quarantine tables. The ingress and the workers use its pgx methods
// (one statement per batch, planned for the values at hand); the admin
// API reads through GORM. Every method scoped to a tenant takes its id and
// never touches another tenant's rows.
type Store struct {
	pool *pgxpool.Pool
	db   *gorm.DB
}

// NewStore returns the store on db's pool.
func NewStore(db *database.DB) *Store {
	return &Store{pool: db.Pool, db: db.Gorm}
}

// New is one event to store: what the ingress accepted.
type New struct {
	ID         [16]byte // a UUIDv7: ids sort in arrival order
	TenantID   string
	PageID     string
	AppID      string
	DedupKey   string // unique per (tenant, Page) while the event is kept
	Type       string
	Test       bool
	ReceivedAt time.Time
	Body       []byte // the Payload's JSON
	// Sender is the person of the conversation (see events.sender); empty
	// when there is none.
	Sender string
	// EntryTime is entry[].time as Meta sent it, nil when absent; Item is
	// a changes[] item as Meta sent it, nil for any other event (the
	// item is then the body's "event").
	EntryTime []byte
	Item      []byte
}

// Batch gathers new events column by column for Insert. The zero value is
// ready; Reset empties it for reuse.
type Batch struct {
	ids      [][16]byte
	tenants  []string
	pages    []string
	apps     []string
	keys     []string
	types    []string
	tests    []bool
	received []time.Time
	bodies   [][]byte
	senders  []string
	times    [][]byte
	items    [][]byte
}

// Add appends e.
func (b *Batch) Add(e *New) {
	b.ids = append(b.ids, e.ID)
	b.tenants = append(b.tenants, e.TenantID)
	b.pages = append(b.pages, e.PageID)
	b.apps = append(b.apps, e.AppID)
	b.keys = append(b.keys, e.DedupKey)
	b.types = append(b.types, e.Type)
	b.tests = append(b.tests, e.Test)
	b.received = append(b.received, e.ReceivedAt)
	b.bodies = append(b.bodies, e.Body)
	b.senders = append(b.senders, e.Sender)
	b.times = append(b.times, e.EntryTime)
	b.items = append(b.items, e.Item)
}

// Grow makes room for n more events.
func (b *Batch) Grow(n int) {
	b.ids = slices.Grow(b.ids, n)
	b.tenants = slices.Grow(b.tenants, n)
	b.pages = slices.Grow(b.pages, n)
	b.apps = slices.Grow(b.apps, n)
	b.keys = slices.Grow(b.keys, n)
	b.types = slices.Grow(b.types, n)
	b.tests = slices.Grow(b.tests, n)
	b.received = slices.Grow(b.received, n)
	b.bodies = slices.Grow(b.bodies, n)
	b.senders = slices.Grow(b.senders, n)
	b.times = slices.Grow(b.times, n)
	b.items = slices.Grow(b.items, n)
}

// Len is the number of events added since the last Reset.
func (b *Batch) Len() int { return len(b.ids) }

// Reset empties the batch, keeping its capacity.
func (b *Batch) Reset() {
	b.ids, b.tenants, b.pages, b.apps = b.ids[:0], b.tenants[:0], b.pages[:0], b.apps[:0]
	b.keys, b.types, b.tests, b.received, b.bodies = b.keys[:0], b.types[:0], b.tests[:0], b.received[:0], b.bodies[:0]
	b.senders, b.times, b.items = b.senders[:0], b.times[:0], b.items[:0]
}

// insertSQL stores a batch; the insert trigger queues each new event's
// deliveries, one per endpoint whose filters take it, in the same
// statement (migration 00012). A dedup key already stored is skipped:
// that event is a duplicate.
const insertSQL = `INSERT INTO events (id, tenant_id, page_id, app_id, dedup_key, type, test, received_at, body, sender, entry_time, item)
SELECT id, tenant_id, page_id, app_id, dedup_key, type, test, received_at, body, nullif(sender, ''), entry_time, item
FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[], $6::text[], $7::bool[], $8::timestamptz[], $9::bytea[],
	$10::text[], $11::bytea[], $12::bytea[])
	AS u(id, tenant_id, page_id, app_id, dedup_key, type, test, received_at, body, sender, entry_time, item)
ON CONFLICT (page_id, dedup_key, tenant_id) DO NOTHING
RETURNING id`

// Insert stores b in one statement (one transaction, one WAL flush) and
// calls inserted with the id of every event that was new; the others were
// duplicates by the durable dedup key. A value Postgres refuses fails the
// whole batch: IsDataError tells that apart from an outage.
func (s *Store) Insert(ctx context.Context, b *Batch, inserted func(id [16]byte)) error {
	return insert(ctx, s.pool, b, inserted)
}

// InsertTx is Insert in the caller's transaction: the gateway's own
// events (postgate.health) are stored with the state change they tell.
func (s *Store) InsertTx(ctx context.Context, tx pgx.Tx, b *Batch, inserted func(id [16]byte)) error {
	return insert(ctx, tx, b, inserted)
}

func insert(ctx context.Context, q interface {
	Query(context.Context, string, ...any) (pgx.Rows, error)
}, b *Batch, inserted func(id [16]byte)) error {
	if b.Len() == 0 {
		return nil
	}
	rows, err := q.Query(ctx, insertSQL, b.ids, b.tenants, b.pages, b.apps, b.keys, b.types, b.tests, b.received, b.bodies,
		b.senders, b.times, b.items)
	if err != nil {
		return fmt.Errorf("insert events: %w", err)
	}
	var id [16]byte
	_, err = pgx.ForEachRow(rows, []any{&id}, func() error {
		inserted(id)
		return nil
	})
	if err != nil {
		return fmt.Errorf("insert events: %w", err)
	}
	return nil
}

// IsDataError reports whether Postgres refused a statement's data (data
// exceptions, integrity violations, limits), as opposed to the connection
// or the server being unavailable.
func IsDataError(err error) bool {
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || len(pe.Code) < 2 {
		return false
	}
	switch pe.Code[:2] {
	case "22", "23", "54":
		return true
	}
	return false
}

// Quarantine keeps a signed body that could not be parsed, for the tenant
// to look at.
func (s *Store) Quarantine(ctx context.Context, q Quarantined) error {
	_, err := s.pool.Exec(ctx, `INSERT INTO quarantine (id, tenant_id, app_id, reason, body, received_at)
		VALUES ($1, $2, $3, $4, $5, $6)`, q.ID, q.TenantID, q.AppID, q.Reason, q.Body, q.ReceivedAt)
	if err != nil {
		return fmt.Errorf("quarantine body: %w", err)
	}
	return nil
}

// wakeSQL notifies the workers in a transaction of its own, after the
// events' commit, not in it: Postgres serialises the commits of
// transactions that NOTIFY (a cluster-wide lock held through the WAL
// flush), which would take the group commits' shared flushes away. It
// commits asynchronously: it stores nothing.
const wakeSQL = "BEGIN; SET LOCAL synchronous_commit = off; SELECT pg_notify('" + database.DeliveriesChannel + "', ''); COMMIT"

// Wake tells every replica's workers that new work was committed.
func (s *Store) Wake(ctx context.Context) error {
	if _, err := s.pool.Exec(ctx, wakeSQL); err != nil {
		return fmt.Errorf("notify delivery workers: %w", err)
	}
	return nil
}

// Listen calls wake for every Wake, from any replica, until ctx ends,
// reconnecting when the connection is lost (meanwhile nothing is called:
// the workers poll too).
func (s *Store) Listen(ctx context.Context, log *slog.Logger, wake func()) {
	l := database.Listener{Pool: s.pool, Channel: database.DeliveriesChannel, Log: log, Serve: func(ctx context.Context, conn *pgx.Conn) error {
		for {
			if _, err := conn.WaitForNotification(ctx); err != nil {
				return err
			}
			wake()
		}
	}}
	l.Run(ctx)
}

// parseTenant turns a tenant id into the uuid the tables key on; an id
// that is not one names nothing.
func parseTenant(id string, thing string) (uuid.UUID, error) {
	tid, err := uuid.Parse(id)
	if err != nil {
		return uuid.Nil, notFound(thing)
	}
	return tid, nil
}
