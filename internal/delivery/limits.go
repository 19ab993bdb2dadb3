package delivery

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
	"github.com/sony/gobreaker/v2"

	"github.com/postgate/postgate/internal/redisdb"
)

// tenantState is what one worker tracks of a tenant between claims. It is
// guarded by Worker.mu.
type tenantState struct {
	inFlight int
	// notBefore keeps the tenant out of claims (its rate limit is spent).
	notBefore time.Time
	// pausedAt is when this worker disabled the endpoint after a 410; the
	// tenant stays out of claims until the Registry has reloaded since.
	pausedAt   time.Time
	breaker    *gobreaker.TwoStepCircuitBreaker[struct{}]
	breakerURL string
	// enabledAt is the endpoint's EndpointEnabledAt when the breaker was
	// made: a re-enable since starts a new, closed one.
	enabledAt time.Time
	// lastFailure is when an attempt of this worker to the endpoint last
	// failed: events queued before it may expire without an attempt of
	// their own (see event.Store.Expire).
	lastFailure time.Time
}

// errAttemptFailed and errNotAnAttempt are what the breaker is told.
var (
	errAttemptFailed = errors.New("attempt failed")
	errNotAnAttempt  = errors.New("not an attempt")
)

func (w *Worker) newBreaker(tenantID string) *gobreaker.TwoStepCircuitBreaker[struct{}] {
	return gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        tenantID,
		MaxRequests: uint32(w.cfg.BreakerProbes),
		Timeout:     w.cfg.BreakerOpenFor,
		ReadyToTrip: func(c gobreaker.Counts) bool {
			return c.ConsecutiveFailures >= uint32(w.cfg.BreakerFailures)
		},
		IsExcluded: func(err error) bool { return errors.Is(err, errNotAnAttempt) },
		// It may run under w.mu (State() moves an open breaker to
		// half-open): it must not take it.
		OnStateChange: func(name string, from, to gobreaker.State) {
			w.m.breaker.WithLabelValues(to.String()).Inc()
			w.log.Warn("tenant endpoint circuit breaker", "tenant_id", name, "from", from.String(), "to", to.String())
		},
	})
}

// openBreakers counts the tenants whose current breaker in this worker is
// open or half-open: the gauge postgate_delivery_breakers_open, read at
// scrape time, so a breaker replaced (a new URL, a re-enable) or a tenant
// deleted can never leave it off by one.
func (w *Worker) openBreakers() float64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, st := range w.tenants {
		if st.breaker != nil && st.breaker.State() != gobreaker.StateClosed {
			n++
		}
	}
	return float64(n)
}

// forgetTenants drops the state of tenants gone from the registry that
// have nothing in flight here and no claim in progress.
func (w *Worker) forgetTenants() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.claiming {
		return // next time: a claim in progress counts on these states
	}
	for id, st := range w.tenants {
		if _, ok := w.reg.Tenant(id); !ok && st.inFlight == 0 {
			delete(w.tenants, id)
		}
	}
}

// rateLimiter is the per-tenant GCRA in Redis. It fails open: with Redis
// unreachable every event is allowed, and Redis is skipped for a second
// after each failure so an outage costs one timeout, not one per claim.
type rateLimiter struct {
	limiter *redis_rate.Limiter
	prefix  string
	down    redisdb.Backoff
}

func newRateLimiter(rdb redis.UniversalClient, prefix string) *rateLimiter {
	if rdb == nil {
		return nil
	}
	return &rateLimiter{limiter: redis_rate.NewLimiter(unprefixed{rdb}), prefix: prefix}
}

// key is the tenant's GCRA key: every Redis key starts with its tenant.
func (r *rateLimiter) key(tenantID string) string {
	return r.prefix + "t:" + tenantID + ":rate"
}

// unprefixed hands redis_rate's scripts our keys as they are: the library
// puts "rate:" before every key, and our keys must start with the tenant
// (and the test prefix).
type unprefixed struct {
	redis.UniversalClient
}

func stripRatePrefix(keys []string) []string {
	out := make([]string, len(keys))
	for i, k := range keys {
		out[i] = strings.TrimPrefix(k, "rate:")
	}
	return out
}

func (u unprefixed) Eval(ctx context.Context, script string, keys []string, args ...any) *redis.Cmd {
	return u.UniversalClient.Eval(ctx, script, stripRatePrefix(keys), args...)
}

func (u unprefixed) EvalSha(ctx context.Context, sha1 string, keys []string, args ...any) *redis.Cmd {
	return u.UniversalClient.EvalSha(ctx, sha1, stripRatePrefix(keys), args...)
}

func (u unprefixed) EvalRO(ctx context.Context, script string, keys []string, args ...any) *redis.Cmd {
	return u.UniversalClient.EvalRO(ctx, script, stripRatePrefix(keys), args...)
}

func (u unprefixed) EvalShaRO(ctx context.Context, sha1 string, keys []string, args ...any) *redis.Cmd {
	return u.UniversalClient.EvalShaRO(ctx, sha1, stripRatePrefix(keys), args...)
}

func (u unprefixed) Del(ctx context.Context, keys ...string) *redis.IntCmd {
	return u.UniversalClient.Del(ctx, stripRatePrefix(keys)...)
}

// allow takes up to n events of the tenant's rate and returns how many it
// may send now and, when fewer than n, how long until the next one.
func (w *Worker) allow(tenantID string, rate, burst, n int) (int, time.Duration) {
	r := w.rate
	if r == nil {
		return n, 0
	}
	if r.down.Down(w.cfg.Now()) {
		return n, 0
	}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	res, err := r.limiter.AllowAtMost(ctx, r.key(tenantID), redis_rate.Limit{Rate: rate, Burst: burst, Period: time.Second}, n)
	if err != nil {
		w.m.redisErrors.Inc()
		if r.down.Failed(w.cfg.Now()) {
			w.log.Warn("rate limit check failed; allowing (fail open)", "tenant_id", tenantID, "err", err)
		}
		return n, 0
	}
	wait := res.RetryAfter
	if res.Allowed < n {
		wait = max(wait, time.Second/time.Duration(rate))
	}
	return res.Allowed, wait
}
