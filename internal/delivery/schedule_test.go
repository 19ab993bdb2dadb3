package delivery_test

import (
	"context"
	"errors"
	"net/http"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// slack is what scheduling may add to a retry delay: the claim poll, the
// grouped outcome write, the attempt itself, a loaded test machine. It is
// allowed above a delay, never below.
const slack = 250 * time.Millisecond

// TestRetrySchedule: an endpoint that keeps failing is retried after each
// delay of RETRY_SCHEDULE in turn, ±Jitter: never before the delay minus
// the jitter, never much after the delay plus the jitter. After the last
// retry the event is dead.
func TestRetrySchedule(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rc := newReceiver(t, func(n int, w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusInternalServerError) })
	tenantID, _ := e.addTenant(rc.srv.URL, tenantOpts{})
	id := e.addEvent(tenantID)
	schedule := []time.Duration{300 * time.Millisecond, 600 * time.Millisecond, 1200 * time.Millisecond}
	cfg := e.baseConfig()
	cfg.RetrySchedule = schedule
	cfg.Jitter = 0.2
	cfg.BreakerFailures = 100 // the breaker is another test's business
	e.start(cfg)
	s := e.waitStatus(tenantID, id, "dead", 10*time.Second)
	if s.Attempts != len(schedule)+1 {
		t.Errorf("attempts: got %d, want %d (1 + one per delay)", s.Attempts, len(schedule)+1)
	}
	reqs := rc.requests()
	as := e.attempts(tenantID, id)
	if len(reqs) != len(schedule)+1 || len(as) != len(schedule)+1 {
		t.Fatalf("got %d requests and %d logged attempts, want %d of each", len(reqs), len(as), len(schedule)+1)
	}
	gaps := make([]time.Duration, len(schedule))
	for i := range schedule {
		gaps[i] = reqs[i+1].at.Sub(reqs[i].at).Round(time.Millisecond)
	}
	t.Logf("schedule %v, ±20%%: gaps between attempts %v", schedule, gaps)
	for i, d := range schedule {
		lo := time.Duration(float64(d) * 0.8)
		hi := time.Duration(float64(d)*1.2) + slack
		// As the endpoint saw them, and as the attempt log has them: a
		// retry becomes due only once the delay has passed since the
		// previous attempt ended, so neither gap can be shorter.
		if gap := reqs[i+1].at.Sub(reqs[i].at); gap < lo || gap > hi {
			t.Errorf("retry %d (schedule %s ±20%%): arrived %s after attempt %d, want within [%s, %s]", i+1, d, gap, i+1, lo, hi)
		}
		if gap := as[i+1].At.Sub(as[i].At); gap < lo || gap > hi {
			t.Errorf("retry %d (schedule %s ±20%%): attempted_at %s after attempt %d, want within [%s, %s]", i+1, d, gap, i+1, lo, hi)
		}
	}
}

// TestRetryAfterCapped: an endpoint's Retry-After on 429 and 503 is
// honoured up to MaxRetryAfter and no further: an endpoint asking for an
// hour (in seconds or as an HTTP date) is retried after the cap.
func TestRetryAfterCapped(t *testing.T) {
	tests := []struct {
		name       string
		status     int
		retryAfter func() string
	}{
		{"429, an hour in seconds", http.StatusTooManyRequests, func() string { return "3600" }},
		{"503, two hours as an HTTP date", http.StatusServiceUnavailable, func() string {
			return time.Now().Add(2 * time.Hour).UTC().Format(http.TimeFormat)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			retryAfter := tt.retryAfter()
			rc := newReceiver(t, func(n int, w http.ResponseWriter, r *http.Request) {
				if n == 1 {
					w.Header().Set("Retry-After", retryAfter)
					w.WriteHeader(tt.status)
					return
				}
				_, _ = w.Write([]byte("ok"))
			})
			tenantID, _ := e.addTenant(rc.srv.URL, tenantOpts{})
			id := e.addEvent(tenantID)
			const maxRetryAfter = time.Second
			cfg := e.baseConfig()
			cfg.MaxRetryAfter = maxRetryAfter
			// The schedule's 50ms is far below the cap: a Retry-After
			// ignored altogether shows as a retry before the cap.
			e.start(cfg)

			// Right after the first attempt, its retry is due at the cap.
			var (
				status    string
				next      *time.Time
				attempted time.Time
			)
			waitFor(t, 5*time.Second, "the first attempt's outcome", func() bool {
				err := e.db.Pool.QueryRow(context.Background(), `SELECT coalesce(d.status, 'pending'), d.next_attempt_at,
					coalesce((SELECT attempted_at FROM delivery_attempts a WHERE a.event_id = e.id AND a.attempt = 1), 'epoch')
					FROM events e LEFT JOIN deliveries d ON d.tenant_id = e.tenant_id AND d.event_id = e.id
					WHERE e.tenant_id = $1 AND e.id = $2`, tenantID, id).Scan(&status, &next, &attempted)
				if err != nil && !errors.Is(err, pgx.ErrNoRows) {
					t.Fatalf("read the event: %v", err)
				}
				return status != "pending"
			})
			if status != "failed" || next == nil {
				t.Fatalf("after the first attempt: status %s, next attempt %v; want failed and rescheduled", status, next)
			}
			if due := next.Sub(attempted); due < maxRetryAfter || due > maxRetryAfter+slack {
				t.Errorf("next attempt due %s after the first, want the cap %s (Retry-After %s)", due, maxRetryAfter, retryAfter)
			}

			e.waitStatus(tenantID, id, "delivered", 5*time.Second)
			reqs := rc.requests()
			if len(reqs) != 2 {
				t.Fatalf("requests: got %d, want 2", len(reqs))
			}
			if gap := reqs[1].at.Sub(reqs[0].at); gap < maxRetryAfter || gap > maxRetryAfter+slack {
				t.Errorf("retry arrived %s after the %d, want after the cap %s (at most %s)", gap, tt.status, maxRetryAfter, maxRetryAfter+slack)
			}
		})
	}
}
