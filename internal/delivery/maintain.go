package delivery

import (
	"context"
	"time"

	"github.com/google/uuid"
	"github.com/sony/gobreaker/v2"

	"github.com/postgate/postgate/internal/event"
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
			w.forgetEndpoints()
			w.reportBreakers(ctx)
		case <-purge.C:
			if _, err := w.Expire(ctx); err != nil && ctx.Err() == nil {
				w.log.Error("expire events past the retry schedule", "err", err)
			}
			if _, err := w.Purge(ctx); err != nil && ctx.Err() == nil {
				w.log.Error("purge old events", "err", err)
			}
			if n, err := w.events.SweepOrphans(ctx); err != nil && ctx.Err() == nil {
				w.log.Error("sweep the deliveries of deleted endpoints", "err", err)
			} else if n > 0 {
				w.log.Warn("deliveries of deleted endpoints removed", "deliveries", n)
			}
			if _, err := w.events.SweepConversationLocks(ctx); err != nil && ctx.Err() == nil {
				w.log.Error("sweep idle conversation locks", "err", err)
			}
			purge.Reset(w.cfg.PurgeEvery)
		}
	}
}

// reportBreakers tells Postgres which endpoints' breakers this worker
// holds open, for the console (breakers live in memory).
func (w *Worker) reportBreakers(ctx context.Context) {
	var open []uuid.UUID
	w.mu.Lock()
	for id, st := range w.endpoints {
		if s := st.breaker.State(); s == gobreaker.StateOpen || s == gobreaker.StateHalfOpen {
			open = append(open, id)
		}
	}
	w.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := w.events.ReportBreakers(ctx, w.id, open); err != nil && ctx.Err() == nil {
		w.log.Warn("report open breakers", "err", err)
	}
}

func (w *Worker) updateStats(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	b, err := w.events.Backlog(ctx)
	if err != nil {
		if ctx.Err() == nil {
			w.log.Warn("delivery backlog gauges", "err", err)
		}
		return
	}
	w.m.backlog.Set(float64(b.Deliveries))
	w.m.backlogAge.Set(b.OldestDue.Seconds())
	w.m.heldBack.Set(float64(b.HeldBack))
	w.m.heldBackAge.Set(b.OldestHeld.Seconds())
}

// Expire makes dead the events of failing endpoints that have waited
// longer than the retry schedule could take (every delay at its +Jitter
// maximum) since they were queued (accepted or replayed) and since their
// endpoint was last re-enabled, and that the endpoint was tried with in
// that time: an attempt of their own, or a failed attempt (a breaker's
// probe) after they were queued; it returns how many. Behind an open circuit breaker an event
// waits without attempts; without this an endpoint that stays down
// would pile up pending events for ever, and flood the endpoint with
// days-old ones when it came back.
//
// Only endpoints whose breaker is open or half-open in this worker are
// swept, and only their due events: a healthy endpoint's backlog (behind its
// rate limit, or after the workers were down) is never expired, nor is an
// event waiting for a scheduled retry (a Retry-After), held by an attempt
// in flight, or queued after the endpoint's last failed attempt and not
// attempted since (a replayed event always gets its chance: it dies only
// once the endpoint has failed again after the replay). Disabled endpoints are skipped: their
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
	for _, e := range w.reg.Endpoints() {
		if e.Disabled || e.EnabledAt.After(cutoff) {
			continue
		}
		failing, lastFailure := w.failing(e.ID)
		if !failing {
			continue
		}
		if !lastFailure.IsZero() {
			// queued_at is Postgres's clock, lastFailure this host's: an
			// event queued just before the failure by our clock may have
			// been queued just after it by Postgres's.
			lastFailure = lastFailure.Add(-clockSkew)
		}
		n, err := w.events.Expire(ctx, e.ID, cutoff, lastFailure)
		if err != nil {
			return total, err
		}
		if n > 0 {
			total += n
			w.m.dead.Add(float64(n))
			w.log.Warn("events of a failing endpoint waited past the retry schedule and are dead", "tenant_id", e.TenantID,
				"endpoint_id", event.FormatEndpointID(e.ID),
				"events", n, "window", window.String())
		}
	}
	return total, nil
}

// clockSkew is how far this host's clock and Postgres's may disagree: the
// expiry takes a failure for that much earlier than it saw it.
const clockSkew = time.Minute

// failing reports whether the endpoint's circuit breaker in this worker
// is open or half-open (it has been failing), and when this worker last
// saw an attempt to it fail.
func (w *Worker) failing(endpointID uuid.UUID) (bool, time.Time) {
	w.mu.Lock()
	defer w.mu.Unlock()
	st := w.endpoints[endpointID]
	if st == nil || st.breaker == nil || st.breaker.State() == gobreaker.StateClosed {
		return false, time.Time{}
	}
	return true, st.lastFailure
}

// Purge deletes delivered events older than RetainDelivered and dead
// events older than RetainDead, with their attempts, and returns how many.
// Any number of workers may run it at once.
func (w *Worker) Purge(ctx context.Context) (int64, error) {
	now := w.cfg.Now()
	var total int64
	for _, tenantID := range w.reg.TenantIDs() {
		for _, p := range []struct {
			status event.Status
			keep   time.Duration
		}{{event.StatusDelivered, w.cfg.RetainDelivered}, {event.StatusDead, w.cfg.RetainDead}} {
			cutoff := now.Add(-p.keep)
			for {
				n, err := w.events.Purge(ctx, tenantID, p.status, cutoff)
				if err != nil {
					return total, err
				}
				total += n
				w.m.purged.WithLabelValues(string(p.status)).Add(float64(n))
				if n < event.PurgeBatch {
					break
				}
			}
		}
	}
	return total, nil
}
