package delivery_test

import (
	"context"
	"net/http"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"

	"github.com/postgate/postgate/internal/delivery"
	"github.com/postgate/postgate/internal/event"
)

// TestIsolation: tenant A's endpoint hangs until the timeout and tenant C's
// fails every request, both with a backlog; tenant B's events, arriving
// meanwhile, keep their latency.
func TestIsolation(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	hang := newReceiver(t, func(n int, w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-time.After(6 * time.Second):
		}
	})
	fail := newReceiver(t, func(n int, w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) })

	// A delivery can arrive before addEvent has returned, so arrivals and
	// sends are matched up at the end.
	var mu sync.Mutex
	sent, arrived := map[string]time.Time{}, map[string]time.Time{}
	b := newReceiver(t, func(n int, w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		arrived[r.Header.Get("webhook-id")] = time.Now()
		mu.Unlock()
	})
	a, _ := e.addTenant(hang.srv.URL, tenantOpts{})
	c, _ := e.addTenant(fail.srv.URL, tenantOpts{})
	tb, _ := e.addTenant(b.srv.URL, tenantOpts{})
	for range 100 {
		e.addEvent(a)
		e.addEvent(c)
	}
	cfg := e.baseConfig()
	cfg.Timeout = 4 * time.Second
	cfg.Concurrency = 16
	cfg.TenantConcurrency = 4
	cfg.RetrySchedule = []time.Duration{10 * time.Millisecond, 10 * time.Millisecond, 10 * time.Millisecond}
	cfg.BreakerOpenFor = time.Second
	e.start(cfg)
	waitFor(t, 5*time.Second, "A's attempts hanging and C's breaker open", func() bool {
		return len(hang.requests()) == cfg.TenantConcurrency &&
			e.metric("postgate_delivery_breaker_transitions_total", "to", "open") >= 1
	})

	const n = 60
	for range n {
		at := time.Now()
		id := e.addEvent(tb)
		mu.Lock()
		sent[event.FormatID(id)] = at
		mu.Unlock()
		time.Sleep(25 * time.Millisecond)
	}
	waitFor(t, 5*time.Second, "B's deliveries", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(arrived) == n
	})
	mu.Lock()
	var got []time.Duration
	for id, at := range sent {
		got = append(got, arrived[id].Sub(at))
	}
	mu.Unlock()
	slices.Sort(got)
	p50, p99, worst := got[len(got)/2], got[len(got)*99/100], got[len(got)-1]
	t.Logf("tenant B while A hangs and C fails: p50 %s, p99 %s, max %s over %d events; A got %d requests, C got %d",
		p50, p99, worst, n, len(hang.requests()), len(fail.requests()))
	// Not a speed target (those are benchmarks): a B stuck behind A's hang
	// or C's retries would wait A's 4 s timeout; 1.5 s leaves a loaded CI
	// machine room and still tells the two apart.
	if p99 > 1500*time.Millisecond {
		t.Errorf("tenant B p99: got %s, want under 1.5s (A's hang is 4s)", p99)
	}
	if got := len(hang.requests()); got > cfg.TenantConcurrency {
		t.Errorf("hanging tenant A: got %d requests in flight at once, want at most its cap %d", got, cfg.TenantConcurrency)
	}
	// C's breaker opened: it got probes, not its whole backlog times the schedule.
	if got := len(fail.requests()); got >= 100 {
		t.Errorf("failing tenant C got %d requests in ~2s, want the breaker to hold it under 100", got)
	}
}

// TestRateLimit: a tenant limited to 5 events/s (burst 5) receives no more
// than the limit allows in any window, and waiting for the limit is never
// recorded as a failed attempt.
func TestRateLimit(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rc := newReceiver(t, nil)
	tenantID, _ := e.addTenant(rc.srv.URL, tenantOpts{rate: 5, burst: 5})
	var ids []uuid.UUID
	for range 15 {
		ids = append(ids, e.addEvent(tenantID))
	}
	start := time.Now()
	e.start(e.baseConfig())
	for _, id := range ids {
		e.waitStatus(tenantID, id, "delivered", 10*time.Second)
	}
	reqs := rc.requests()
	if len(reqs) != 15 {
		t.Fatalf("requests: got %d, want 15", len(reqs))
	}
	first := reqs[0].at
	for i, r := range reqs {
		// GCRA: burst 5 at once, then one per 200ms.
		elapsed := r.at.Sub(first).Seconds()
		if allowed := 5 + 5*elapsed + 1; float64(i+1) > allowed {
			t.Errorf("request %d arrived %.2fs after the first: more than the limit allows (%.1f)", i+1, elapsed, allowed)
		}
	}
	t.Logf("15 events at 5/s, burst 5: took %s", time.Since(start).Round(time.Millisecond))
	for _, id := range ids {
		if s := e.state(tenantID, id); s.Attempts != 1 {
			t.Errorf("event %s: %d attempts, want 1 (waiting is not an attempt)", id, s.Attempts)
		}
		if got := classes(e.attempts(tenantID, id)); !slices.Equal(got, []string{"ok"}) {
			t.Errorf("event %s: attempts %v, want [ok]", id, got)
		}
	}
}

// TestRateLimitFailsOpen: with Redis unreachable, deliveries go on and
// are not throttled: a tenant limited to 1 event/s gets a backlog of
// events at once. The same tenant with Redis up is throttled, so the
// measure can tell the two apart.
func TestRateLimitFailsOpen(t *testing.T) {
	const n = 4 // at 1/s, burst 1: the last at least n-1 seconds after the first
	tests := []struct {
		name      string
		redisDown bool
	}{
		{"redis down: not throttled", true},
		{"redis up: throttled", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			if tt.redisDown {
				e.rdb = redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", DialTimeout: 100 * time.Millisecond, MaxRetries: -1})
			}
			rc := newReceiver(t, nil)
			tenantID, _ := e.addTenant(rc.srv.URL, tenantOpts{rate: 1, burst: 1})
			var ids []uuid.UUID
			for range n {
				ids = append(ids, e.addEvent(tenantID))
			}
			e.start(e.baseConfig())
			for _, id := range ids {
				e.waitStatus(tenantID, id, "delivered", 2*n*time.Second)
			}
			reqs := rc.requests()
			if len(reqs) != n {
				t.Fatalf("requests: got %d, want %d", len(reqs), n)
			}
			span := reqs[n-1].at.Sub(reqs[0].at)
			errs := e.metric("postgate_delivery_redis_errors_total")
			t.Logf("%d events at 1/s, burst 1: the last arrived %s after the first; %v Redis errors", n, span.Round(time.Millisecond), errs)
			if tt.redisDown {
				if span > time.Second {
					t.Errorf("with Redis down the last event arrived %s after the first, want under 1s (the limit fails open)", span)
				}
				if errs == 0 {
					t.Error("no Redis error counted: the rate limit was not checked against the unreachable Redis")
				}
				return
			}
			if want := time.Duration(n-1) * time.Second * 9 / 10; span < want {
				t.Errorf("with Redis up the last event arrived %s after the first, want at least %s (1/s)", span, want)
			}
			if errs != 0 {
				t.Errorf("%v Redis errors with Redis up, want 0", errs)
			}
		})
	}
}

// TestLeaseRecovery: events claimed by a worker that died (kill -9: its
// leases are simply left behind) are delivered by another worker once the
// leases expire, and not before.
func TestLeaseRecovery(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rc := newReceiver(t, nil)
	tenantID, _ := e.addTenant(rc.srv.URL, tenantOpts{})
	var ids []uuid.UUID
	for range 5 {
		ids = append(ids, e.addEvent(tenantID))
	}
	const lease = 700 * time.Millisecond
	e.exec(`UPDATE deliveries SET leased_until = now() + $1::interval, next_attempt_at = now() + $1::interval`, lease)
	start := time.Now()
	e.start(e.baseConfig())
	waitFor(t, lease+2*time.Second, "recovered deliveries", func() bool { return len(rc.requests()) == 5 })
	took := time.Since(start)
	if first := rc.requests()[0].at.Sub(start); first < lease-50*time.Millisecond {
		t.Errorf("a leased event was delivered after %s, before its lease (%s) expired", first, lease)
	}
	t.Logf("dead worker's leases (%s) recovered after %s", lease, took.Round(time.Millisecond))
	for _, id := range ids {
		e.waitStatus(tenantID, id, "delivered", time.Second)
	}
}

// TestShutdown: stopping a worker lets an in-flight attempt finish and
// records it; an attempt that outlives ShutdownTimeout is abandoned, not
// counted, and its event released for another worker at once.
func TestShutdown(t *testing.T) {
	tests := []struct {
		name      string
		hold      time.Duration // how long the endpoint takes
		want      state
		attempts  int
		maxReturn time.Duration
	}{
		{"attempt finishes", 300 * time.Millisecond, state{Status: "delivered", Attempts: 1}, 1, time.Second},
		{"attempt abandoned", 3 * time.Second, state{Status: "pending", Attempts: 0}, 0, time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			rc := newReceiver(t, func(n int, w http.ResponseWriter, r *http.Request) {
				select {
				case <-r.Context().Done():
				case <-time.After(tt.hold):
				}
			})
			tenantID, _ := e.addTenant(rc.srv.URL, tenantOpts{})
			id := e.addEvent(tenantID)
			cfg := e.baseConfig()
			cfg.Timeout = 5 * time.Second
			cfg.ShutdownTimeout = 500 * time.Millisecond
			_, stop := e.start(cfg)
			waitFor(t, 5*time.Second, "attempt in flight", func() bool { return len(rc.requests()) == 1 })
			begin := time.Now()
			stop()
			if took := time.Since(begin); took > tt.maxReturn {
				t.Errorf("Run returned after %s, want under %s", took, tt.maxReturn)
			}
			if got := e.state(tenantID, id); got != tt.want {
				t.Errorf("event after shutdown: got %+v, want %+v", got, tt.want)
			}
			if got := len(e.attempts(tenantID, id)); got != tt.attempts {
				t.Errorf("attempts logged: got %d, want %d", got, tt.attempts)
			}
		})
	}
}

// TestRetention: delivered events older than RetainDelivered and dead
// events older than RetainDead go, with their attempts; everything else
// stays.
func TestRetention(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	tenantID, _ := e.addTenant("http://127.0.0.1:9/unused", tenantOpts{})
	day := 24 * time.Hour
	add := func(status string, age time.Duration) uuid.UUID {
		t.Helper()
		at := time.Now().Add(-age)
		id := uuidV7At(at)
		e.exec(`INSERT INTO events (id, tenant_id, page_id, app_id, dedup_key, type, status, received_at, delivered_at, dead_at, body)
			VALUES ($1, $2, '1', '1001', $3, 'messaging_postbacks', $4, $5,
				CASE WHEN $4 = 'delivered' THEN $5::timestamptz END, CASE WHEN $4 = 'dead' THEN $5::timestamptz END, '{}')`,
			id, tenantID, id.String(), status, at)
		e.exec(`INSERT INTO delivery_attempts (tenant_id, event_id, endpoint_id, attempt, attempted_at, latency_us, error_class)
			VALUES ($1, $2, $1, 1, $3, 1000, 'ok')`, tenantID, id, at)
		return id
	}
	tests := []struct {
		status string
		age    time.Duration
		kept   bool
	}{
		{"delivered", 8 * day, false},
		{"delivered", 6 * day, true},
		{"dead", 31 * day, false},
		{"dead", 10 * day, true},
		{"pending", 40 * day, true},
		{"failed", 40 * day, true},
	}
	ids := make([]uuid.UUID, len(tests))
	for i, tt := range tests {
		ids[i] = add(tt.status, tt.age)
	}
	w, err := delivery.New(delivery.Config{}, e.reg, e.events, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	n, err := w.Purge(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Errorf("purged %d events, want 2", n)
	}
	for i, tt := range tests {
		var events, attempts int
		if err := e.db.Pool.QueryRow(context.Background(), `SELECT (SELECT count(*) FROM events WHERE id = $1),
			(SELECT count(*) FROM delivery_attempts WHERE event_id = $1)`, ids[i]).Scan(&events, &attempts); err != nil {
			t.Fatalf("%s event %s old: %v", tt.status, tt.age, err)
		}
		want := 0
		if tt.kept {
			want = 1
		}
		if events != want || attempts != want {
			t.Errorf("%s event %s old: got %d events, %d attempts; want %d of each", tt.status, tt.age, events, attempts, want)
		}
	}
}

func uuidV7At(at time.Time) uuid.UUID {
	id := uuid.Must(uuid.NewV7())
	ms := uint64(at.UnixMilli())
	for i := range 6 {
		id[i] = byte(ms >> (8 * (5 - i)))
	}
	return id
}

// TestExpire: once a tenant's endpoint has failed enough to open its
// breaker, its due events still queued after the whole retry schedule
// could have run, and tried since they were queued (their own attempt, or
// the endpoint's failures after them), are dead. Not expired: a younger
// event, one waiting for a scheduled retry, one held by an attempt in
// flight, a healthy tenant's backlog, a disabled endpoint's events, and the
// events of an endpoint re-enabled within the window. (An event queued
// after the endpoint's last failure and never attempted is kept:
// event.TestExpireGuard.)
func TestExpire(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	failing := newReceiver(t, func(n int, w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) })
	down, _ := e.addTenant(failing.srv.URL, tenantOpts{})
	healthy, _ := e.addTenant("http://127.0.0.1:9/unused", tenantOpts{})
	paused, _ := e.addTenant(failing.srv.URL, tenantOpts{})
	e.exec(`UPDATE endpoints SET disabled_at = now() WHERE id = $1`, paused)
	e.reload()

	// Open down's breaker: two failures, then it stays open for an hour.
	cfg := e.baseConfig()
	cfg.RetrySchedule = []time.Duration{time.Hour, time.Hour} // up to 2h24m with ±20% jitter
	cfg.Jitter = 0.2
	cfg.BreakerFailures = 2
	cfg.BreakerOpenFor = time.Hour
	opener1, opener2 := e.addEvent(down), e.addEvent(down)
	w, stop := e.start(cfg)
	waitFor(t, 5*time.Second, "the failing endpoint's breaker to open", func() bool {
		return e.state(down, opener1).Attempts == 1 && e.state(down, opener2).Attempts == 1
	})
	// The stopped worker keeps its breakers; nothing claims the events below.
	stop()

	queued := func(tenantID string, age time.Duration, next time.Duration, leased bool, attempts int) uuid.UUID {
		t.Helper()
		id := e.addEvent(tenantID)
		var lease any
		if leased {
			lease = time.Now().Add(next)
		}
		e.exec(`UPDATE deliveries SET queued_at = $2, next_attempt_at = $3, leased_until = $4, attempts = $5 WHERE event_id = $1`,
			id, time.Now().Add(-age), time.Now().Add(next), lease, attempts)
		return id
	}
	tests := []struct {
		name   string
		tenant string
		id     uuid.UUID
		expire bool
	}{
		{"failing, queued 3h ago, attempted, due", down, queued(down, 3*time.Hour, -time.Minute, false, 1), true},
		{"failing, queued 3h ago, not attempted but the endpoint failed since, due", down, queued(down, 3*time.Hour, -time.Minute, false, 0), true},
		{"failing, queued 2h ago, attempted, due", down, queued(down, 2*time.Hour, -time.Minute, false, 1), false},
		{"failing, queued 3h ago, retry due in 30m", down, queued(down, 3*time.Hour, 30*time.Minute, false, 1), false},
		{"failing, queued 3h ago, attempt in flight", down, queued(down, 3*time.Hour, time.Minute, true, 1), false},
		{"healthy, queued 3h ago, due", healthy, queued(healthy, 3*time.Hour, -time.Minute, false, 1), false},
		{"disabled endpoint, queued 3h ago, due", paused, queued(paused, 3*time.Hour, -time.Minute, false, 1), false},
	}
	n, err := w.Expire(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Errorf("expired %d events, want 2", n)
	}
	for _, tt := range tests {
		var queuedRows int
		if err := e.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM deliveries
			WHERE event_id = $1 AND status IN ('pending', 'failed')`, tt.id).Scan(&queuedRows); err != nil {
			t.Fatal(err)
		}
		ev, _, err := e.events.Get(context.Background(), tt.tenant, tt.id)
		if err != nil {
			t.Fatal(err)
		}
		status, deadAt := string(ev.Status), ev.DeadAt
		switch {
		case tt.expire && (status != "dead" || deadAt == nil || queuedRows != 0):
			t.Errorf("%s: got %s (dead_at %v, %d queue rows), want dead and out of the queue", tt.name, status, deadAt, queuedRows)
		case !tt.expire && (status == "dead" || queuedRows != 1):
			t.Errorf("%s: got %s with %d queue rows, want it still queued", tt.name, status, queuedRows)
		}
	}

	// Re-enabled within the window: the clock starts again from then.
	e.exec(`UPDATE endpoints SET enabled_at = now() WHERE id = $1`, down)
	e.reload()
	again := queued(down, 3*time.Hour, -time.Minute, false, 1)
	if n, err := w.Expire(context.Background()); err != nil || n != 0 {
		t.Errorf("expire after a re-enable: got %d, %v; want 0", n, err)
	}
	if s := e.state(down, again); s.Status == "dead" {
		t.Errorf("event of an endpoint re-enabled within the window: got %+v, want it still queued", s)
	}
}

// TestBreakerReported: a worker whose breaker for an endpoint is open
// says so in Postgres (the console shows it from there), and takes its
// report back when it stops.
func TestBreakerReported(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	fail := newReceiver(t, func(n int, w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) })
	ok := newReceiver(t, nil)
	bad, _ := e.addTenant(fail.srv.URL, tenantOpts{})
	good, _ := e.addTenant(ok.srv.URL, tenantOpts{})
	for range 20 {
		e.addEvent(bad)
	}
	e.addEvent(good)
	cfg := e.baseConfig()
	cfg.RetrySchedule = []time.Duration{10 * time.Millisecond, 10 * time.Millisecond, 10 * time.Millisecond, time.Hour}
	cfg.BreakerOpenFor = time.Hour
	cfg.StatsEvery = 50 * time.Millisecond
	_, stop := e.start(cfg)
	overview := func(tenantID string) event.Overview {
		o, err := e.events.Overview(context.Background(), tenantID, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return o
	}
	waitFor(t, 5*time.Second, "the failing endpoint's breaker reported open", func() bool { return overview(bad).OpenBreakers == 1 })
	if n := overview(good).OpenBreakers; n != 0 {
		t.Errorf("the healthy tenant: %d open breakers, want 0", n)
	}
	if n := overview("").OpenBreakers; n != 1 {
		t.Errorf("every tenant: %d open breakers, want 1", n)
	}
	stop()
	if n := overview(bad).OpenBreakers; n != 0 {
		t.Errorf("after the worker stopped: %d open breakers, want 0", n)
	}
}
