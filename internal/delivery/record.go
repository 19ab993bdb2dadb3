package delivery

import (
	"context"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
)

// outcome is what becomes of one claimed event: a new state (status set)
// with the attempt that led to it, or a release (status empty: the event
// keeps its status and attempts). at is when a delivered or dead event
// settled (it leaves the queue), or when any other is due again.
type outcome struct {
	tenantID string
	id       uuid.UUID
	lease    time.Time
	status   string
	attempts int
	at       time.Time
	attempt  *attemptRecord
}

type attemptRecord struct {
	number  int
	at      time.Time
	status  int
	latency time.Duration
	class   string
	err     string
	snippet string
}

// Outcomes are written in groups: the loop takes one outcome, then every
// outcome that arrives within FlushWait (up to MaxFlush), and writes them
// all with one statement and one INSERT in one transaction. While a write
// is in flight the next group gathers.

// updateSQL applies outcomes, but only where our lease still holds: a
// replay (leased_until NULL) or another worker's claim after our lease
// expired wins, and the outcome changes nothing. A settled event (delivered,
// dead) leaves deliveries; any other is rescheduled there. The event row
// changes only with a new state, and only if its deliveries row did: the
// lease is checked once, on the queue.
const updateSQL = `WITH u AS (
	SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::timestamptz[], $4::text[], $5::int[], $6::timestamptz[])
		AS u(tenant_id, id, lease, status, attempts, at)
), settled AS (
	DELETE FROM deliveries d USING u
	WHERE d.event_id = u.id AND d.leased_until = u.lease
	  AND u.status IN ('delivered', 'dead')
	RETURNING u.tenant_id, u.id, u.lease
), moved AS (
	UPDATE deliveries d SET next_attempt_at = u.at, leased_until = NULL, attempts = coalesce(u.attempts, d.attempts)
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

// replan runs a statement as pgx's unnamed prepared statement, which
// Postgres plans afresh on every execution with the values at hand. The
// queue's statements join through CTEs whose row counts the planner can
// only guess, on tables that grow from empty: a cached generic plan made
// while events was small picked the dedup index with a filter for the
// claim's join to events, which then read the whole table once per claimed
// event (seconds per claim at a few hundred thousand events). Planning
// costs well under a millisecond, once per batch.
const replan = pgx.QueryExecModeCacheDescribe

// drainFlushFor bounds the retries of an outcome write during shutdown.
const drainFlushFor = 5 * time.Second

func (w *Worker) flushLoop() {
	batch := make([]outcome, 0, w.cfg.MaxFlush)
	timer := time.NewTimer(0)
	<-timer.C
	for {
		o, ok := <-w.outcomes
		if !ok {
			return
		}
		batch = append(batch[:0], o)
		closed := false
		timer.Reset(w.cfg.FlushWait)
	gather:
		for len(batch) < w.cfg.MaxFlush {
			select {
			case o, ok := <-w.outcomes:
				if !ok {
					closed = true
					break gather
				}
				batch = append(batch, o)
			case <-timer.C:
				break gather
			}
		}
		timer.Stop()
		w.flushRetrying(batch)
		if closed {
			return
		}
	}
}

// flushRetrying writes a batch, retrying with backoff while Postgres is
// unavailable. Meanwhile outcomes queue up and, once the queue is full,
// attempts wait to report theirs, so claiming stops: backpressure, not
// loss. If the worker dies meanwhile, the leases expire and the events
// are delivered again (at least once).
//
// While Run drains, it gives up after drainFlushFor: the events' leases
// then expire and another worker delivers them again.
func (w *Worker) flushRetrying(batch []outcome) {
	backoff := 50 * time.Millisecond
	start := time.Now()
	for attempt := 1; ; attempt++ {
		err := w.flush(batch)
		if err == nil {
			return
		}
		w.m.flushErrors.Inc()
		if w.draining.Load() && time.Since(start) > drainFlushFor {
			w.log.Error("delivery outcomes not recorded at shutdown; their events will be delivered again after the lease",
				"outcomes", len(batch), "err", err)
			return
		}
		w.log.Error("record delivery outcomes; retrying", "outcomes", len(batch), "attempt", attempt, "err", err)
		time.Sleep(backoff)
		backoff = min(backoff*2, 5*time.Second)
	}
}

func (w *Worker) flush(batch []outcome) error {
	n := len(batch)
	var (
		tenants  = make([]string, n)
		ids      = make([][16]byte, n)
		leases   = make([]time.Time, n)
		statuses = make([]*string, n)
		attempts = make([]*int32, n)
		ats      = make([]time.Time, n)

		aTenants  []string
		aIDs      [][16]byte
		aNumbers  []int32
		aAts      []time.Time
		aCodes    []*int32
		aLatency  []int64
		aClasses  []string
		aErrors   []*string
		aSnippets []*string
	)
	for i := range batch {
		o := &batch[i]
		tenants[i], ids[i], leases[i], ats[i] = o.tenantID, o.id, o.lease, o.at
		if o.status != "" {
			statuses[i] = &o.status
			a := int32(o.attempts)
			attempts[i] = &a
		}
		if r := o.attempt; r != nil {
			aTenants = append(aTenants, o.tenantID)
			aIDs = append(aIDs, o.id)
			aNumbers = append(aNumbers, int32(r.number))
			aAts = append(aAts, r.at)
			aCodes = append(aCodes, nullInt32(r.status))
			aLatency = append(aLatency, r.latency.Microseconds())
			aClasses = append(aClasses, r.class)
			aErrors = append(aErrors, nullString(r.err))
			aSnippets = append(aSnippets, nullString(r.snippet))
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return pgx.BeginFunc(ctx, w.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, updateSQL, replan, tenants, ids, leases, statuses, attempts, ats); err != nil {
			return err
		}
		if len(aTenants) == 0 {
			return nil
		}
		_, err := tx.Exec(ctx, insertAttemptsSQL, replan, aTenants, aIDs, aNumbers, aAts, aCodes, aLatency, aClasses, aErrors, aSnippets)
		return err
	})
}

func nullInt32(v int) *int32 {
	if v == 0 {
		return nil
	}
	n := int32(v)
	return &n
}

func nullString(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}
