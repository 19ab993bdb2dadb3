package delivery

import (
	"context"
	"encoding/binary"
	"time"

	"github.com/google/uuid"
	"github.com/sony/gobreaker/v2"
)

// maintain runs the expiry sweep, the retention purge and the backlog
// gauges until ctx ends.
func (w *Worker) maintain(ctx context.Context) {
	stats := time.NewTicker(w.cfg.StatsEvery)
	defer stats.Stop()
	purge := time.NewTimer(time.Minute) // not in the way of a start-up burst
	defer purge.Stop()
	w.updateStats(ctx)
	for {
		select {
		case <-ctx.Done():
			return
		case <-stats.C:
			w.updateStats(ctx)
		case <-purge.C:
			if _, err := w.Expire(ctx); err != nil && ctx.Err() == nil {
				w.log.Error("expire events past the retry schedule", "err", err)
			}
			if _, err := w.Purge(ctx); err != nil && ctx.Err() == nil {
				w.log.Error("purge old events", "err", err)
			}
			purge.Reset(w.cfg.PurgeEvery)
		}
	}
}

func (w *Worker) updateStats(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	var n int64
	var age float64
	err := w.pool.QueryRow(ctx, `SELECT count(*),
		coalesce(extract(epoch FROM now() - min(next_attempt_at) FILTER (WHERE next_attempt_at <= now())), 0)::float8
		FROM deliveries`).Scan(&n, &age)
	if err != nil {
		if ctx.Err() == nil {
			w.log.Warn("delivery backlog gauges", "err", err)
		}
		return
	}
	w.m.backlog.Set(float64(n))
	w.m.backlogAge.Set(age)
}

// purgeSQL deletes up to 5000 of one tenant's events in one status whose
// time ($4: delivered_at for delivered, dead_at for dead) is before the
// cutoff $3. Ids are UUIDv7, made at acceptance,
// so id < $2 (the cutoff as a UUIDv7) bounds the primary-key range to scan;
// an event is accepted before it is delivered or dies, so it loses nothing.
//
// The outer WHERE repeats the status and time test: a row the subquery
// picked may be replayed before the DELETE reaches it, and only the outer
// conditions are checked again against the row's newest version.
const purgeSQL = `DELETE FROM events WHERE (tenant_id, id) IN (
	SELECT tenant_id, id FROM events
	WHERE tenant_id = $1 AND id < $2 AND status = $4
	  AND (CASE WHEN $4 = 'delivered' THEN delivered_at ELSE dead_at END) < $3
	LIMIT 5000)
  AND status = $4 AND (CASE WHEN $4 = 'delivered' THEN delivered_at ELSE dead_at END) < $3`

// expireSQL ends the due work of one tenant queued before $2: the
// events become dead (dead_at now) and leave the queue. A row held by an
// attempt in flight, or waiting for a scheduled retry, is not due. It locks
// deliveries before events, like the outcome writes.
const expireSQL = `WITH gone AS (
	DELETE FROM deliveries d
	WHERE d.tenant_id = $1 AND d.queued_at < $2 AND d.next_attempt_at <= now()
	RETURNING d.tenant_id, d.event_id
)
UPDATE events e SET status = 'dead', dead_at = now()
FROM gone g WHERE e.tenant_id = g.tenant_id AND e.id = g.event_id`

// Expire makes dead the events of failing endpoints that have waited
// longer than the retry schedule could take (every delay at its +Jitter
// maximum) since they were queued (accepted, replayed, or their endpoint
// re-enabled), attempts spent or not, and returns how many. Behind an open
// circuit breaker an event waits without attempts; without this a tenant
// whose endpoint stays down would pile up pending events for ever, and
// flood the endpoint with days-old ones when it came back.
//
// Only tenants whose breaker is open or half-open in this worker are
// swept, and only their due events: a healthy tenant's backlog (behind its
// rate limit, or after the workers were down) is never expired, nor is an
// event waiting for a scheduled retry (a Retry-After) or held by an
// attempt in flight. Tenants whose endpoint is disabled are skipped: their
// events wait, as SPEC says, until it is re-enabled. Dead events are kept,
// listed and replayable: a bulk replay by time range brings an outage's
// events back.
func (w *Worker) Expire(ctx context.Context) (int64, error) {
	var window time.Duration
	for _, d := range w.cfg.RetrySchedule {
		window += time.Duration(float64(d) * (1 + w.cfg.Jitter))
	}
	cutoff := w.cfg.Now().Add(-window)
	var total int64
	for _, t := range w.reg.Tenants() {
		if t.EndpointDisabled || !w.failing(t.ID) {
			continue
		}
		tag, err := w.pool.Exec(ctx, expireSQL, replan, t.ID, cutoff)
		if err != nil {
			return total, err
		}
		if n := tag.RowsAffected(); n > 0 {
			total += n
			w.m.dead.Add(float64(n))
			w.log.Warn("events of a failing endpoint waited past the retry schedule and are dead", "tenant_id", t.ID,
				"events", n, "window", window.String())
		}
	}
	return total, nil
}

// failing reports whether the tenant's circuit breaker in this worker is
// open or half-open: its endpoint has been failing.
func (w *Worker) failing(tenantID string) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	st := w.tenants[tenantID]
	return st != nil && st.breaker != nil && st.breaker.State() != gobreaker.StateClosed
}

// Purge deletes delivered events older than RetainDelivered and dead
// events older than RetainDead, with their attempts, and returns how many.
// Any number of workers may run it at once.
func (w *Worker) Purge(ctx context.Context) (int64, error) {
	now := w.cfg.Now()
	var total int64
	for _, t := range w.reg.Tenants() {
		for _, p := range []struct {
			status string
			keep   time.Duration
		}{{"delivered", w.cfg.RetainDelivered}, {"dead", w.cfg.RetainDead}} {
			cutoff := now.Add(-p.keep)
			for {
				tag, err := w.pool.Exec(ctx, purgeSQL, replan, t.ID, uuidV7Floor(cutoff), cutoff, p.status)
				if err != nil {
					return total, err
				}
				total += tag.RowsAffected()
				w.m.purged.WithLabelValues(p.status).Add(float64(tag.RowsAffected()))
				if tag.RowsAffected() < 5000 {
					break
				}
			}
		}
	}
	return total, nil
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
