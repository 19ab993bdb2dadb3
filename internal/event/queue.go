package event

import (
	"context"
	"encoding/binary"
	"fmt"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/postgate/postgate/internal/database"
)

// replan runs a statement as pgx's unnamed prepared statement, which
// Postgres plans afresh on every execution with the values at hand. The
// queue's statements join through CTEs whose row counts the planner can
// only guess, on tables that grow from empty: a cached generic plan made
// while events was small picked the dedup index with a filter for the
// claim's join to events, which then read the whole table once per claimed
// event (seconds per claim at a few hundred thousand events). Planning
// costs well under a millisecond, once per batch.
const replan = pgx.QueryExecModeCacheDescribe

// Claimed is one event a worker holds under a lease.
type Claimed struct {
	TenantID string
	ID       uuid.UUID
	// Attempts is the retry count before this attempt (it restarts with a
	// replay); Number is this attempt's number over the event's life.
	Attempts   int
	Number     int
	ReceivedAt time.Time
	// Lease is the claim's token: an outcome counts only while it holds.
	Lease time.Time
	Body  []byte
}

// claimSQL takes, for each tenant in $1 with quota $2, up to quota of its
// oldest due deliveries that no one holds (SKIP LOCKED: other workers'
// claims in progress are passed over), ranks each tenant's, and keeps the
// $3 best by rank: every tenant's first before any tenant's second. The
// kept rows are leased in the same statement: next_attempt_at and
// leased_until both become now() + $4, so a held row is simply not due,
// and leased_until is the token an outcome must match. The retry count
// comes from the locked row too (a replay resets it there), and so does
// the attempt's number, counted up here and down again by a release; the
// body, which never changes, from events.
const claimSQL = `WITH quota AS (
	SELECT * FROM unnest($1::uuid[], $2::int[]) AS q(tenant_id, k)
), candidates AS (
	SELECT c.tenant_id, c.event_id, c.next_attempt_at,
	       row_number() OVER (PARTITION BY c.tenant_id ORDER BY c.next_attempt_at, c.event_id) AS rank
	FROM quota q CROSS JOIN LATERAL (
		SELECT d.tenant_id, d.event_id, d.next_attempt_at FROM deliveries d
		WHERE d.tenant_id = q.tenant_id AND d.next_attempt_at <= now()
		ORDER BY d.next_attempt_at
		LIMIT q.k
		FOR UPDATE SKIP LOCKED
	) c
), picked AS (
	SELECT tenant_id, event_id FROM candidates ORDER BY rank, next_attempt_at LIMIT $3
), leased AS (
	UPDATE deliveries d SET next_attempt_at = now() + $4::interval, leased_until = now() + $4::interval,
		attempted = d.attempted + 1
	FROM picked p
	WHERE d.event_id = p.event_id
	RETURNING d.tenant_id, d.event_id, d.leased_until, d.attempts, d.attempted
)
SELECT l.tenant_id::text, l.event_id, l.attempts, l.attempted, e.received_at, l.leased_until, e.body
FROM leased l JOIN events e ON e.tenant_id = l.tenant_id AND e.id = l.event_id`

// Claim leases, for each tenants[i], up to quota[i] of its due events, at
// most limit in all and every tenant's first before any tenant's second,
// for lease; each is handed to got (its Body is its own).
func (s *Store) Claim(ctx context.Context, tenants []string, quota []int32, limit int, lease time.Duration, got func(*Claimed)) error {
	rows, err := s.pool.Query(ctx, claimSQL, replan, tenants, quota, limit, lease)
	if err != nil {
		return fmt.Errorf("claim deliveries: %w", err)
	}
	var c Claimed
	var id [16]byte
	var body []byte
	_, err = pgx.ForEachRow(rows, []any{&c.TenantID, &id, &c.Attempts, &c.Number, &c.ReceivedAt, &c.Lease, &body}, func() error {
		cc := c
		cc.ID = uuid.UUID(id)
		cc.Body = append([]byte(nil), body...)
		got(&cc)
		return nil
	})
	if err != nil {
		// Rows leased by a statement that failed were not committed.
		return fmt.Errorf("claim deliveries: %w", err)
	}
	return nil
}

// Outcome is what became of one claimed event: a new Status with the
// Attempt that led to it, or a release (Status empty, Attempt nil: the
// event keeps its status and retry count, unattempted). At is when a
// delivered or dead event settled, or when any other is due again.
type Outcome struct {
	TenantID string
	ID       uuid.UUID
	Lease    time.Time
	Status   Status
	Attempts int // the retry count after this attempt
	At       time.Time
	Attempt  *Attempt
}

// recordSQL applies outcomes, but only where the lease still holds: a
// replay (leased_until NULL) or another worker's claim after the lease
// expired wins, and the outcome changes nothing. A settled event
// (delivered, dead) leaves deliveries; any other is rescheduled there, and
// a release gives back the attempt number its claim took. The event row
// changes only with a new state, and only if its deliveries row did: the
// lease is checked once, on the queue. The CTEs lock the queue rows and the
// final UPDATE the events rows, in one statement whose inner order
// Postgres does not promise; a deadlock with a concurrent replay is rare,
// and the batch is retried (package delivery's flushRetrying).
const recordSQL = `WITH u AS (
	SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::timestamptz[], $4::text[], $5::int[], $6::timestamptz[])
		AS u(tenant_id, id, lease, status, attempts, at)
), settled AS (
	DELETE FROM deliveries d USING u
	WHERE d.event_id = u.id AND d.leased_until = u.lease
	  AND u.status IN ('delivered', 'dead')
	RETURNING u.tenant_id, u.id, u.lease
), moved AS (
	UPDATE deliveries d SET next_attempt_at = u.at, leased_until = NULL, attempts = coalesce(u.attempts, d.attempts),
		attempted = d.attempted - CASE WHEN u.status IS NULL THEN 1 ELSE 0 END
	FROM u
	WHERE d.event_id = u.id AND d.leased_until = u.lease
	  AND (u.status IS NULL OR u.status IN ('pending', 'failed'))
	RETURNING u.tenant_id, u.id, u.lease
)
UPDATE events e SET
	status = u.status,
	attempts = u.attempts,
	delivered_at = CASE WHEN u.status = 'delivered' THEN u.at ELSE e.delivered_at END,
	dead_at = CASE WHEN u.status = 'dead' THEN u.at END
FROM u JOIN (SELECT * FROM settled UNION ALL SELECT * FROM moved) k
	ON k.tenant_id = u.tenant_id AND k.id = u.id AND k.lease = u.lease
WHERE u.status IS NOT NULL AND e.tenant_id = u.tenant_id AND e.id = u.id`

// insertAttemptsSQL logs attempts of events that still exist (retention or
// a deleted tenant may have removed one meanwhile).
const insertAttemptsSQL = `INSERT INTO delivery_attempts
	(tenant_id, event_id, attempt, attempted_at, status_code, latency_us, error_class, error_message, response_snippet)
SELECT u.* FROM unnest($1::uuid[], $2::uuid[], $3::int[], $4::timestamptz[], $5::int[], $6::int8[], $7::text[], $8::text[], $9::text[])
	AS u(tenant_id, event_id, attempt, attempted_at, status_code, latency_us, error_class, error_message, response_snippet)
WHERE EXISTS (SELECT 1 FROM events e WHERE e.tenant_id = u.tenant_id AND e.id = u.event_id)`

// Record writes a group of outcomes and their attempts in one
// transaction: one statement for the state, one for the attempt log.
func (s *Store) Record(ctx context.Context, batch []Outcome) error {
	n := len(batch)
	var (
		tenants  = make([]string, n)
		ids      = make([][16]byte, n)
		leases   = make([]time.Time, n)
		statuses = make([]*string, n)
		attempts = make([]*int32, n)
		ats      = make([]time.Time, n)
		log      attemptColumns
	)
	for i := range batch {
		o := &batch[i]
		tenants[i], ids[i], leases[i], ats[i] = o.TenantID, o.ID, o.Lease, o.At
		if o.Status != "" {
			st := string(o.Status)
			statuses[i] = &st
			a := int32(o.Attempts)
			attempts[i] = &a
		}
		if o.Attempt != nil {
			log.add(o.TenantID, o.ID, o.Attempt)
		}
	}
	err := pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, recordSQL, replan, tenants, ids, leases, statuses, attempts, ats); err != nil {
			return err
		}
		if len(log.tenants) == 0 {
			return nil
		}
		_, err := tx.Exec(ctx, insertAttemptsSQL, replan, log.tenants, log.ids, log.numbers, log.ats, log.codes,
			log.latency, log.classes, log.errors, log.snippets)
		return err
	})
	if err != nil {
		return fmt.Errorf("record delivery outcomes: %w", err)
	}
	return nil
}

// attemptColumns are attempts column by column, for insertAttemptsSQL.
type attemptColumns struct {
	tenants  []string
	ids      [][16]byte
	numbers  []int32
	ats      []time.Time
	codes    []*int32
	latency  []int64
	classes  []string
	errors   []*string
	snippets []*string
}

func (c *attemptColumns) add(tenantID string, id uuid.UUID, a *Attempt) {
	c.tenants = append(c.tenants, tenantID)
	c.ids = append(c.ids, id)
	c.numbers = append(c.numbers, int32(a.Number))
	c.ats = append(c.ats, a.At)
	c.codes = append(c.codes, database.Null(int32(a.StatusCode)))
	c.latency = append(c.latency, a.Latency.Microseconds())
	c.classes = append(c.classes, a.Class)
	c.errors = append(c.errors, database.Null(a.Error))
	c.snippets = append(c.snippets, database.Null(a.Response))
}

// expireSQL ends the due work of one tenant queued before $2 that the
// endpoint has been tried with since it was queued: the event itself had
// an attempt (attempts > 0: accepting and replaying both reset it), or the
// endpoint failed an attempt after the event was queued ($3: the latest
// failure). The events become dead (dead_at now) and leave the queue. A
// row held by an attempt in flight, or waiting for a scheduled retry, is
// not due; an event queued after the endpoint's latest failure and never
// attempted is never expired, so a replayed event always gets its chance.
// Deliveries are locked before events.
const expireSQL = `WITH gone AS (
	DELETE FROM deliveries d
	WHERE d.tenant_id = $1 AND d.queued_at < $2 AND d.next_attempt_at <= now()
	  AND (d.attempts > 0 OR d.queued_at < $3)
	RETURNING d.tenant_id, d.event_id
)
UPDATE events e SET status = 'dead', dead_at = now()
FROM gone g WHERE e.tenant_id = g.tenant_id AND e.id = g.event_id`

// Expire makes dead the due events of tenantID queued before
// queuedBefore that the endpoint was tried with since (an attempt of
// their own, or a failed attempt of the endpoint after lastFailure's
// event was queued: lastFailure is the endpoint's latest failed attempt,
// zero if none is known), and returns how many. The caller decides when a
// tenant's backlog may expire (package delivery: only behind an open
// breaker).
func (s *Store) Expire(ctx context.Context, tenantID string, queuedBefore, lastFailure time.Time) (int64, error) {
	tag, err := s.pool.Exec(ctx, expireSQL, replan, tenantID, queuedBefore, lastFailure)
	if err != nil {
		return 0, fmt.Errorf("expire events: %w", err)
	}
	return tag.RowsAffected(), nil
}

// PurgeBatch bounds one Purge statement.
const PurgeBatch = 5000

// purgeSQL deletes up to PurgeBatch of one tenant's events in one status
// whose time ($4: delivered_at for delivered, dead_at for dead) is before
// the cutoff $3. Ids are UUIDv7, made at acceptance, so id < $2 (the cutoff
// as a UUIDv7) bounds the primary-key range to scan; an event is accepted
// before it is delivered or dies, so it loses nothing. The delete trigger
// takes their attempts along.
//
// The outer WHERE repeats the status and time test: a row the subquery
// picked may be replayed before the DELETE reaches it, and only the outer
// conditions are checked again against the row's newest version.
const purgeSQL = `DELETE FROM events WHERE (tenant_id, id) IN (
	SELECT tenant_id, id FROM events
	WHERE tenant_id = $1 AND id < $2 AND status = $4
	  AND (CASE WHEN $4 = 'delivered' THEN delivered_at ELSE dead_at END) < $3
	LIMIT $5)
  AND status = $4 AND (CASE WHEN $4 = 'delivered' THEN delivered_at ELSE dead_at END) < $3`

// Purge deletes up to PurgeBatch of tenantID's events settled in status
// (delivered or dead) before cutoff, with their attempts, and returns how
// many; call it again while it returns PurgeBatch.
func (s *Store) Purge(ctx context.Context, tenantID string, status Status, cutoff time.Time) (int64, error) {
	if !status.Settled() {
		return 0, fmt.Errorf("purge events: status %q has not settled", status)
	}
	tag, err := s.pool.Exec(ctx, purgeSQL, replan, tenantID, uuidV7Floor(cutoff), cutoff, string(status), PurgeBatch)
	if err != nil {
		return 0, fmt.Errorf("purge events: %w", err)
	}
	return tag.RowsAffected(), nil
}

// uuidV7Floor is the smallest UUIDv7 of the millisecond t.
func uuidV7Floor(t time.Time) [16]byte {
	var u uuid.UUID
	var ms [8]byte
	binary.BigEndian.PutUint64(ms[:], uint64(t.UnixMilli()))
	copy(u[:6], ms[2:])
	u[6] = 0x70
	u[8] = 0x80
	return u
}

// Backlog is the size of the delivery queue and the age of its oldest due
// row (0 when nothing is due).
func (s *Store) Backlog(ctx context.Context) (n int64, oldestDue time.Duration, err error) {
	var age float64
	err = s.pool.QueryRow(ctx, `SELECT count(*),
		coalesce(extract(epoch FROM now() - min(next_attempt_at) FILTER (WHERE next_attempt_at <= now())), 0)::float8
		FROM deliveries`).Scan(&n, &age)
	if err != nil {
		return 0, 0, fmt.Errorf("delivery backlog: %w", err)
	}
	return n, time.Duration(age * float64(time.Second)), nil
}
