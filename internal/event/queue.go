package event

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"strings"
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

// Claimed is one delivery a worker holds under a lease: an event on its
// way to one endpoint.
type Claimed struct {
	TenantID   string
	EndpointID uuid.UUID
	ID         uuid.UUID
	// Attempts is the retry count before this attempt (it restarts with a
	// replay); Number is this attempt's number over the delivery's life.
	Attempts   int
	Number     int
	ReceivedAt time.Time
	// Lease is the claim's token: an outcome counts only while it holds.
	Lease time.Time
	// Ordered: the delivery is in a conversation of an ordered endpoint;
	// settling it releases the conversation's next one.
	Ordered bool
	// Body is the standard format's body; AppID, EntryTime and Item are
	// what the Meta format needs besides (see Envelope).
	Body      []byte
	AppID     string
	EntryTime []byte
	Item      []byte
}

// claimSQL takes, for each endpoint in $1 with quota $2, up to quota of
// its oldest due deliveries that no one holds (SKIP LOCKED: other workers'
// claims in progress are passed over) and, where the endpoint is ordered,
// that head their conversation: no open delivery (pending or
// failed, due, waiting for a retry or leased, whoever holds it) comes
// before them in it (migration 16). That check reads the statement's
// snapshot, not locks. It must not exclude the candidate itself: a head
// replayed to the back after the snapshot was taken is locked here in its
// new version (EvalPlanQual), but the snapshot still shows its old
// version, earlier and open, which holds it back this round rather than
// letting it go with the event now before it. (One probe of the conversation index, the only
// index on conversation: TestPlansSurviveStaleStatistics): a head another
// worker is claiming right now is
// still open in it, and one settled since is settled, so a later delivery
// is never handed out while an earlier one may still be sent; held-back
// deliveries are simply passed over. It ranks each endpoint's, and keeps
// the $3 best by rank: every endpoint's first before any endpoint's
// second. The kept rows are leased in the same statement: next_attempt_at
// and leased_until both become now() + $4, so a held row is simply not
// due, and leased_until is the token an outcome must match. The retry
// count comes from the locked row too (a replay resets it there), and so
// does the attempt's number, counted up here and down again by a release;
// the body, which never changes, from events.
//
// Whether an endpoint is ordered is read here, in the statement's
// snapshot, not taken from the worker's registry: a delivery in a
// conversation was queued by a transaction that saw the endpoint ordered,
// so any snapshot that sees the delivery sees the endpoint ordered too
// (or switched to none since: then it is free at once). A registry is up
// to a second behind (longer while its LISTEN is down), and a worker that
// had not heard of a switch to conversation handed out a conversation's
// later deliveries with its head (TestOrderingSwitchedOn).
const claimSQL = `WITH quota AS (
	SELECT q.endpoint_id, q.k, coalesce(ep.ordering = 'conversation', false) AS ordered
	FROM unnest($1::uuid[], $2::int[]) AS q(endpoint_id, k) LEFT JOIN endpoints ep ON ep.id = q.endpoint_id
), candidates AS (
	SELECT c.endpoint_id, c.event_id, c.next_attempt_at,
	       row_number() OVER (PARTITION BY c.endpoint_id ORDER BY c.next_attempt_at, c.event_id) AS rank
	FROM quota q CROSS JOIN LATERAL (
		SELECT d.endpoint_id, d.event_id, d.next_attempt_at FROM deliveries d
		WHERE d.endpoint_id = q.endpoint_id AND d.status IN ('pending', 'failed') AND d.next_attempt_at <= now()
		  AND (NOT q.ordered OR d.conversation IS NULL OR NOT EXISTS (
			SELECT 1 FROM deliveries h
			WHERE h.conversation = d.conversation AND h.status IN ('pending', 'failed')
			  AND (h.seq, h.event_id) < (d.seq, d.event_id)))
		ORDER BY d.next_attempt_at
		LIMIT q.k
		FOR UPDATE SKIP LOCKED
	) c
), picked AS (
	SELECT endpoint_id, event_id FROM candidates ORDER BY rank, next_attempt_at LIMIT $3
), leased AS (
	UPDATE deliveries d SET next_attempt_at = now() + $4::interval, leased_until = now() + $4::interval,
		attempted = d.attempted + 1
	FROM picked p
	WHERE d.endpoint_id = p.endpoint_id AND d.event_id = p.event_id
	RETURNING d.tenant_id, d.endpoint_id, d.event_id, d.leased_until, d.attempts, d.attempted, d.conversation IS NOT NULL AS ordered
)
SELECT l.tenant_id::text, l.endpoint_id, l.event_id, l.attempts, l.attempted, e.received_at, l.leased_until,
	e.body, e.app_id, e.entry_time, e.item, l.ordered
FROM leased l JOIN events e ON e.tenant_id = l.tenant_id AND e.id = l.event_id`

// Claim leases, for each endpoints[i], up to quota[i] of its due
// deliveries (only the heads of their conversations where the endpoint
// is ordered), at most limit in all and every endpoint's first before any
// endpoint's second, for lease; each is handed to got (its byte slices
// are its own).
func (s *Store) Claim(ctx context.Context, endpoints []uuid.UUID, quota []int32, limit int, lease time.Duration, got func(*Claimed)) error {
	rows, err := s.pool.Query(ctx, claimSQL, replan, endpoints, quota, limit, lease)
	if err != nil {
		return fmt.Errorf("claim deliveries: %w", err)
	}
	var c Claimed
	var ep, id [16]byte
	var body, item, entryTime []byte
	_, err = pgx.ForEachRow(rows, []any{&c.TenantID, &ep, &id, &c.Attempts, &c.Number, &c.ReceivedAt, &c.Lease,
		&body, &c.AppID, &entryTime, &item, &c.Ordered}, func() error {
		cc := c
		cc.EndpointID, cc.ID = uuid.UUID(ep), uuid.UUID(id)
		cc.Body = append([]byte(nil), body...)
		if item != nil {
			cc.Item = append([]byte(nil), item...)
		}
		if entryTime != nil {
			cc.EntryTime = append([]byte(nil), entryTime...)
		}
		got(&cc)
		return nil
	})
	if err != nil {
		// Rows leased by a statement that failed were not committed.
		return fmt.Errorf("claim deliveries: %w", err)
	}
	return nil
}

// Outcome is what became of one claimed delivery: a new Status with the
// Attempt that led to it, or a release (Status empty, Attempt nil: the
// delivery keeps its status and retry count, unattempted). At is when a
// delivered or dead delivery settled, or when any other is due again.
type Outcome struct {
	TenantID   string
	EndpointID uuid.UUID
	ID         uuid.UUID
	Lease      time.Time
	Status     Status
	// Ordered is the claim's (Claimed.Ordered).
	Ordered  bool
	Attempts int // the retry count after this attempt
	At       time.Time
	Attempt  *Attempt
}

// recordSQL applies outcomes to deliveries, but only where the lease
// still holds: a replay (leased_until NULL) or another worker's claim
// after the lease expired wins, and the outcome changes nothing. A
// settled delivery (delivered, dead) keeps its row, out of the due index;
// any other is rescheduled, and a release gives back the attempt number
// its claim took. Nothing else is written: an event's status is read from
// its deliveries (migration 12), so an outcome never touches the event
// row, however many endpoints the event went to.
const recordSQL = `UPDATE deliveries d SET
	status = coalesce(u.status, d.status),
	next_attempt_at = u.at,
	settled_at = CASE WHEN u.status IN ('delivered', 'dead') THEN u.at END,
	leased_until = NULL,
	attempts = coalesce(u.attempts, d.attempts),
	attempted = d.attempted - CASE WHEN u.status IS NULL THEN 1 ELSE 0 END
FROM unnest($1::uuid[], $2::uuid[], $3::timestamptz[], $4::text[], $5::int[], $6::timestamptz[])
	AS u(endpoint_id, id, lease, status, attempts, at)
WHERE d.endpoint_id = u.endpoint_id AND d.event_id = u.id AND d.leased_until = u.lease`

// insertAttemptsSQL logs attempts of events that still exist (retention or
// a deleted tenant may have removed one meanwhile).
const insertAttemptsSQL = `INSERT INTO delivery_attempts
	(tenant_id, event_id, endpoint_id, attempt, attempted_at, status_code, latency_us, error_class, error_message, response_snippet)
SELECT u.* FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::int[], $5::timestamptz[], $6::int[], $7::int8[], $8::text[], $9::text[], $10::text[])
	AS u(tenant_id, event_id, endpoint_id, attempt, attempted_at, status_code, latency_us, error_class, error_message, response_snippet)
WHERE EXISTS (SELECT 1 FROM events e WHERE e.tenant_id = u.tenant_id AND e.id = u.event_id)`

// recordAndLogSQL is recordSQL with insertAttemptsSQL (its parameters
// moved to $7 to $16) in one statement.
var recordAndLogSQL = "WITH moved AS (" + recordSQL + ") " + strings.NewReplacer(
	"$10", "$16", "$1", "$7", "$2", "$8", "$3", "$9", "$4", "$10", "$5", "$11", "$6", "$12", "$7", "$13", "$8", "$14", "$9", "$15",
).Replace(insertAttemptsSQL)

// Record writes a group of outcomes and their attempts in one statement.
func (s *Store) Record(ctx context.Context, batch []Outcome) error {
	// In key order, as the replays and expiry lock: fewer deadlocks.
	slices.SortFunc(batch, func(a, b Outcome) int {
		if c := bytes.Compare(a.EndpointID[:], b.EndpointID[:]); c != 0 {
			return c
		}
		return bytes.Compare(a.ID[:], b.ID[:])
	})
	n := len(batch)
	var (
		endpoints = make([][16]byte, n)
		ids       = make([][16]byte, n)
		leases    = make([]time.Time, n)
		statuses  = make([]*string, n)
		attempts  = make([]*int32, n)
		ats       = make([]time.Time, n)
		log       attemptColumns
	)
	for i := range batch {
		o := &batch[i]
		endpoints[i], ids[i], leases[i], ats[i] = o.EndpointID, o.ID, o.Lease, o.At
		if o.Status != "" {
			st := string(o.Status)
			statuses[i] = &st
			a := int32(o.Attempts)
			attempts[i] = &a
		}
		if o.Attempt != nil {
			log.add(o.TenantID, o.ID, o.EndpointID, o.Attempt)
		}
	}
	var err error
	if len(log.tenants) == 0 {
		_, err = s.pool.Exec(ctx, recordSQL, replan, endpoints, ids, leases, statuses, attempts, ats)
	} else {
		_, err = s.pool.Exec(ctx, recordAndLogSQL, replan, endpoints, ids, leases, statuses, attempts, ats,
			log.tenants, log.ids, log.endpoints, log.numbers, log.ats, log.codes, log.latency, log.classes, log.errors, log.snippets)
	}
	if err != nil {
		return fmt.Errorf("record delivery outcomes: %w", err)
	}
	return nil
}

// attemptColumns are attempts column by column, for insertAttemptsSQL.
type attemptColumns struct {
	tenants   []string
	ids       [][16]byte
	endpoints [][16]byte
	numbers   []int32
	ats       []time.Time
	codes     []*int32
	latency   []int64
	classes   []string
	errors    []*string
	snippets  []*string
}

func (c *attemptColumns) add(tenantID string, id, endpointID uuid.UUID, a *Attempt) {
	c.tenants = append(c.tenants, tenantID)
	c.ids = append(c.ids, id)
	c.endpoints = append(c.endpoints, endpointID)
	c.numbers = append(c.numbers, int32(a.Number))
	c.ats = append(c.ats, a.At)
	c.codes = append(c.codes, database.Null(int32(a.StatusCode)))
	c.latency = append(c.latency, a.Latency.Microseconds())
	c.classes = append(c.classes, a.Class)
	c.errors = append(c.errors, database.Null(a.Error))
	c.snippets = append(c.snippets, database.Null(a.Response))
}

// expireSQL ends the due deliveries of one endpoint queued before $2 that
// the endpoint has been tried with since they were queued: the delivery
// itself had an attempt (attempts > 0: accepting and replaying both reset
// it), or the endpoint failed an attempt after it was queued ($3: the
// latest failure). They become dead (settled now). A row held by an
// attempt in flight, or waiting for a scheduled retry, is not due; a
// delivery queued after the endpoint's latest failure and never attempted
// is never expired, so a replayed event always gets its chance.
const expireSQL = `UPDATE deliveries d SET status = 'dead', settled_at = now(), leased_until = NULL
WHERE d.endpoint_id = $1 AND d.status IN ('pending', 'failed') AND d.queued_at < $2 AND d.next_attempt_at <= now()
  AND (d.attempts > 0 OR d.queued_at < $3)`

// Expire makes dead the due deliveries of endpointID queued before
// queuedBefore that the endpoint was tried with since (an attempt of
// their own, or a failed attempt of the endpoint after they were queued:
// lastFailure is the endpoint's latest failed attempt, zero if none is
// known), and returns how many. The caller decides when an endpoint's
// backlog may expire (package delivery: only behind an open breaker).
func (s *Store) Expire(ctx context.Context, endpointID uuid.UUID, queuedBefore, lastFailure time.Time) (int64, error) {
	tag, err := s.pool.Exec(ctx, expireSQL, replan, endpointID, queuedBefore, lastFailure)
	if err != nil {
		return 0, fmt.Errorf("expire deliveries: %w", err)
	}
	return tag.RowsAffected(), nil
}

// orphansSQL deletes the deliveries still to make whose endpoint no longer
// takes events (deleted, or gone), or whose event is gone. Marking an
// endpoint deleted drops its deliveries (migration 12's trigger), but an
// events insert whose snapshot still saw the endpoint can add some in the
// instant after, and a replay can queue a new delivery of an event a
// purge is deleting: without this the first would never be claimed (their
// events reading as pending for ever) and the second claimed for ever. It
// reads the due index: only work still to do.
const orphansSQL = `DELETE FROM deliveries d
WHERE d.status IN ('pending', 'failed')
  AND (NOT EXISTS (SELECT 1 FROM endpoints ep WHERE ep.id = d.endpoint_id AND ep.deleted_at IS NULL)
    OR NOT EXISTS (SELECT 1 FROM events e WHERE e.tenant_id = d.tenant_id AND e.id = d.event_id))`

// SweepOrphans deletes the deliveries still to make of deleted endpoints
// that an insert raced in (an event left with none reads as dead: listed,
// replayable) and returns how many.
func (s *Store) SweepOrphans(ctx context.Context) (int64, error) {
	tag, err := s.pool.Exec(ctx, orphansSQL, replan)
	if err != nil {
		return 0, fmt.Errorf("sweep orphaned deliveries: %w", err)
	}
	return tag.RowsAffected(), nil
}

// idleLocksSQL deletes up to $1 of the conversation locks (migration 16)
// no transaction has taken for a day. A lock is only a row to lock: seq
// is global, so one made again later orders as well. A transaction
// holding one keeps it (the DELETE waits, then sees it touched now).
// Rows being locked by an insert are skipped, not waited for: the sweep
// would lock in the table's order and an insert in key order, and the two
// deadlocked.
const idleLocksSQL = `DELETE FROM conversation_locks WHERE conversation IN (
	SELECT conversation FROM conversation_locks WHERE touched_at < now() - interval '1 day'
	LIMIT $1 FOR UPDATE SKIP LOCKED)
	AND touched_at < now() - interval '1 day'`

// SweepConversationLocks deletes the conversation locks idle for a day,
// in batches, and returns how many.
func (s *Store) SweepConversationLocks(ctx context.Context) (int64, error) {
	var n int64
	for {
		tag, err := s.pool.Exec(ctx, idleLocksSQL, PurgeBatch)
		if err != nil {
			return n, fmt.Errorf("sweep conversation locks: %w", err)
		}
		n += tag.RowsAffected()
		if tag.RowsAffected() < PurgeBatch {
			return n, nil
		}
	}
}

// PurgeBatch bounds one Purge statement.
const PurgeBatch = 5000

// purgeCandidatesSQL picks up to $5 of one tenant's ($1) events whose
// status (read from their deliveries) is $4, which settled that way
// before the cutoff $3 (delivered_at for delivered, dead_at for dead), and
// which have no delivery still to make (dead to one endpoint while another,
// disabled, still holds it: that one waits, so the event stays).
// Ids are UUIDv7, made at acceptance, so id < $2 (the cutoff as a UUIDv7)
// bounds the primary-key range to scan; an event is accepted before it is
// delivered or dies, so it loses nothing. With $6 it only rechecks those
// ids.
const purgeCandidatesSQL = `SELECT e.id FROM ` + withQueue + `
WHERE e.tenant_id = $1 AND e.id < $2 AND ($6::uuid[] IS NULL OR e.id = ANY ($6))
  AND ` + eventStatusSQL + ` = $4 AND w.next_attempt_at IS NULL
  AND (CASE WHEN $4 = 'delivered' THEN
		CASE WHEN w.status IS NULL THEN e.delivered_at ELSE w.delivered_at END
	ELSE CASE WHEN w.status IS NULL THEN coalesce(e.dead_at, e.received_at) ELSE w.dead_at END END) < $3
LIMIT $5`

// purgeLockSQL locks the deliveries of events $2 of tenant $1: a replay
// that changes one now waits for the purge, and one that came first is
// seen by the recheck (deliveries before events, the lock order).
const purgeLockSQL = `SELECT 1 FROM endpoints ep JOIN deliveries d ON d.endpoint_id = ep.id AND d.event_id = ANY ($2)
WHERE ep.tenant_id = $1 ORDER BY d.endpoint_id, d.event_id FOR UPDATE OF d`

// Purge deletes up to PurgeBatch of tenantID's events settled in status
// (delivered or dead) before cutoff, with their deliveries and attempts,
// and returns how many; call it again while it returns PurgeBatch. The
// candidates are checked again once their deliveries are locked: one
// replayed in between is kept.
func (s *Store) Purge(ctx context.Context, tenantID string, status Status, cutoff time.Time) (int64, error) {
	if !status.Settled() {
		return 0, fmt.Errorf("purge events: status %q has not settled", status)
	}
	tid, err := parseTenant(tenantID, "tenant")
	if err != nil {
		return 0, err
	}
	var n int64
	err = database.RetryDeadlock(func() error {
		return pgx.BeginFunc(ctx, s.pool, func(tx pgx.Tx) error {
			pick := func(only [][16]byte) ([][16]byte, error) {
				rows, err := tx.Query(ctx, purgeCandidatesSQL, replan, tid, uuidV7Floor(cutoff), cutoff, string(status), PurgeBatch, only)
				if err != nil {
					return nil, err
				}
				return pgx.CollectRows(rows, func(r pgx.CollectableRow) ([16]byte, error) {
					var id [16]byte
					return id, r.Scan(&id)
				})
			}
			ids, err := pick(nil)
			if err != nil || len(ids) == 0 {
				return err
			}
			if _, err := tx.Exec(ctx, purgeLockSQL, replan, tid, ids); err != nil {
				return err
			}
			if ids, err = pick(ids); err != nil || len(ids) == 0 {
				return err
			}
			tag, err := tx.Exec(ctx, `DELETE FROM events WHERE tenant_id = $1 AND id = ANY ($2)`, replan, tid, ids)
			n = tag.RowsAffected()
			return err
		})
	})
	if err != nil {
		return 0, fmt.Errorf("purge events: %w", err)
	}
	return n, nil
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

// Backlog is the delivery queue as the workers' gauges show it.
type Backlog struct {
	// Deliveries still to make, and how long the oldest due one that is
	// not held back has been due (0 when none).
	Deliveries int64
	OldestDue  time.Duration
	// HeldBack counts the conversations of ordered endpoints with
	// deliveries waiting behind their head; OldestHeld is how long the
	// oldest of those has waited since it was queued (0 when none).
	HeldBack   int64
	OldestHeld time.Duration
}

// backlogSQL reads the due index once; a delivery of an ordered endpoint
// is held back when an open one is before it in its conversation (one
// probe of the conversation index each).
const backlogSQL = `WITH q AS (
	SELECT d.next_attempt_at, d.queued_at, d.conversation,
		d.conversation IS NOT NULL
		AND EXISTS (SELECT 1 FROM endpoints ep WHERE ep.id = d.endpoint_id AND ep.ordering = 'conversation')
		AND EXISTS (SELECT 1 FROM deliveries h WHERE h.conversation = d.conversation AND h.status IN ('pending', 'failed')
			AND (h.seq, h.event_id) < (d.seq, d.event_id)) AS held
	FROM deliveries d WHERE d.status IN ('pending', 'failed')
)
SELECT count(*),
	coalesce(extract(epoch FROM now() - min(next_attempt_at) FILTER (WHERE next_attempt_at <= now() AND NOT held)), 0)::float8,
	count(DISTINCT conversation) FILTER (WHERE held),
	coalesce(extract(epoch FROM now() - min(queued_at) FILTER (WHERE held)), 0)::float8
FROM q`

// Backlog reads the delivery queue's gauges.
func (s *Store) Backlog(ctx context.Context) (Backlog, error) {
	var b Backlog
	var due, held float64
	if err := s.pool.QueryRow(ctx, backlogSQL).Scan(&b.Deliveries, &due, &b.HeldBack, &held); err != nil {
		return Backlog{}, fmt.Errorf("delivery backlog: %w", err)
	}
	b.OldestDue = time.Duration(due * float64(time.Second))
	b.OldestHeld = time.Duration(held * float64(time.Second))
	return b, nil
}
