package event

import (
	"context"
	"fmt"
	"time"

	"github.com/google/uuid"
)

// Overview is what the console's first screen shows of a tenant's events,
// or of every tenant's: counts from Postgres, each an index range (the
// events of the last day by their UUIDv7 ids in each tenant's primary
// key; the deliveries of those events in each endpoint's; the queue in
// the partial due index), never a scan of the tables.
type Overview struct {
	// Accepted events in the last hour and day.
	Accepted1h, Accepted24h int64
	// The deliveries of the events accepted in the last hour and day, by
	// their status now (a delivery dies only after its whole retry
	// schedule, so "dead" counts the recent events that died early: a
	// short schedule, or an expiry behind an open breaker).
	Delivered1h, Failed1h, Dead1h    int64
	Delivered24h, Failed24h, Dead24h int64
	// Backlog is the deliveries still to make, OldestDue how long the
	// oldest of them has waited since it was queued (accepted, replayed
	// or its endpoint re-enabled), retries included; 0 when none.
	Backlog   int64
	OldestDue time.Duration
	// FailingEndpoints have deliveries that failed and wait for a retry.
	FailingEndpoints int64
	// OpenBreakers are the endpoints whose circuit breaker a live worker
	// holds open or half-open (breaker_reports of the last minute).
	OpenBreakers int64
}

// overviewSQL counts per tenant and per endpoint inside LATERAL
// aggregates, which the planner cannot flatten into one join over whole
// tables: each is an index range of one tenant's or one endpoint's key.
const overviewSQL = `WITH t AS (SELECT id FROM tenants WHERE $1::uuid IS NULL OR id = $1),
ev AS (
	SELECT coalesce(sum(e.h), 0)::bigint AS h, coalesce(sum(e.d), 0)::bigint AS d
	FROM t CROSS JOIN LATERAL (
		SELECT count(*) FILTER (WHERE id >= $3) AS h, count(*) AS d FROM events WHERE tenant_id = t.id AND id >= $2
	) e
),
dl AS (
	SELECT coalesce(sum(x.dh), 0)::bigint AS dh, coalesce(sum(x.fh), 0)::bigint AS fh, coalesce(sum(x.xh), 0)::bigint AS xh,
		coalesce(sum(x.dd), 0)::bigint AS dd, coalesce(sum(x.fd), 0)::bigint AS fd, coalesce(sum(x.xd), 0)::bigint AS xd
	FROM endpoints ep CROSS JOIN LATERAL (
		SELECT count(*) FILTER (WHERE event_id >= $3 AND status = 'delivered') AS dh,
			count(*) FILTER (WHERE event_id >= $3 AND status = 'failed') AS fh,
			count(*) FILTER (WHERE event_id >= $3 AND status = 'dead') AS xh,
			count(*) FILTER (WHERE status = 'delivered') AS dd,
			count(*) FILTER (WHERE status = 'failed') AS fd,
			count(*) FILTER (WHERE status = 'dead') AS xd
		FROM deliveries WHERE endpoint_id = ep.id AND event_id >= $2
	) x
	WHERE ep.tenant_id IN (SELECT id FROM t)
),
q AS (
	SELECT count(*) AS n,
		coalesce(extract(epoch FROM now() - min(d.queued_at)), 0)::float8 AS age,
		count(DISTINCT d.endpoint_id) FILTER (WHERE d.status = 'failed') AS failing
	FROM endpoints ep JOIN deliveries d ON d.endpoint_id = ep.id AND d.status IN ('pending', 'failed')
	WHERE ep.tenant_id IN (SELECT id FROM t)
),
br AS (
	SELECT count(DISTINCT b.id) AS open
	FROM breaker_reports r CROSS JOIN LATERAL unnest(r.open) AS b(id) JOIN endpoints ep ON ep.id = b.id
	WHERE r.reported_at > now() - interval '1 minute' AND ep.tenant_id IN (SELECT id FROM t)
)
SELECT ev.h, ev.d, dl.dh, dl.fh, dl.xh, dl.dd, dl.fd, dl.xd, q.n, q.age, q.failing, br.open FROM ev, dl, q, br`

// Overview counts tenantID's events (every tenant's when empty) as of now.
func (s *Store) Overview(ctx context.Context, tenantID string, now time.Time) (Overview, error) {
	var tid *uuid.UUID
	if tenantID != "" {
		id, err := parseTenant(tenantID, "tenant")
		if err != nil {
			return Overview{}, err
		}
		tid = &id
	}
	var o Overview
	var age float64
	err := s.pool.QueryRow(ctx, overviewSQL, tid, uuidV7Floor(now.Add(-24*time.Hour)), uuidV7Floor(now.Add(-time.Hour))).Scan(
		&o.Accepted1h, &o.Accepted24h, &o.Delivered1h, &o.Failed1h, &o.Dead1h, &o.Delivered24h, &o.Failed24h, &o.Dead24h,
		&o.Backlog, &age, &o.FailingEndpoints, &o.OpenBreakers)
	if err != nil {
		return Overview{}, fmt.Errorf("overview: %w", err)
	}
	o.OldestDue = time.Duration(age * float64(time.Second))
	return o, nil
}

// Overview is the Store's, for the console.
func (s *Service) Overview(ctx context.Context, tenantID string, now time.Time) (Overview, error) {
	return s.store.Overview(ctx, tenantID, now)
}

// ReportBreakers records the endpoints whose circuit breaker worker holds
// open or half-open now (replacing its last report), and drops the
// reports of workers silent for an hour.
func (s *Store) ReportBreakers(ctx context.Context, worker uuid.UUID, open []uuid.UUID) error {
	if open == nil {
		open = []uuid.UUID{}
	}
	_, err := s.pool.Exec(ctx, `WITH up AS (
		INSERT INTO breaker_reports (worker_id, open, reported_at) VALUES ($1, $2, now())
		ON CONFLICT (worker_id) DO UPDATE SET open = EXCLUDED.open, reported_at = EXCLUDED.reported_at
	) DELETE FROM breaker_reports WHERE reported_at < now() - interval '1 hour' AND worker_id <> $1`, worker, open)
	if err != nil {
		return fmt.Errorf("report open breakers: %w", err)
	}
	return nil
}

// ForgetBreakers removes worker's report (it stops).
func (s *Store) ForgetBreakers(ctx context.Context, worker uuid.UUID) error {
	if _, err := s.pool.Exec(ctx, `DELETE FROM breaker_reports WHERE worker_id = $1`, worker); err != nil {
		return fmt.Errorf("forget breaker report: %w", err)
	}
	return nil
}
