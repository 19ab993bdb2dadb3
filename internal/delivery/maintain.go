package delivery

import (
	"context"
	"encoding/binary"
	"time"

	"github.com/google/uuid"
)

// maintain runs the retention purge and the backlog gauges until ctx ends.
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
const purgeSQL = `DELETE FROM events WHERE (tenant_id, id) IN (
	SELECT tenant_id, id FROM events
	WHERE tenant_id = $1 AND id < $2 AND status = $4
	  AND (CASE WHEN $4 = 'delivered' THEN delivered_at ELSE dead_at END) < $3
	LIMIT 5000)`

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
				tag, err := w.pool.Exec(ctx, purgeSQL, t.ID, uuidV7Floor(cutoff), cutoff, p.status)
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
