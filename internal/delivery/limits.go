package delivery

import (
	"context"
	"errors"
	"strings"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/google/uuid"
	"github.com/redis/go-redis/v9"
	"github.com/sony/gobreaker/v2"

	"github.com/postgate/postgate/internal/event"
	"github.com/postgate/postgate/internal/redisdb"
	"github.com/postgate/postgate/internal/tenant"
)

// endpointState is what one worker tracks of an endpoint between claims.
// It is guarded by Worker.mu.
type endpointState struct {
	inFlight int
	// notBefore keeps the endpoint out of claims (its rate limit is spent).
	notBefore time.Time
	// pausedAt is when this worker disabled the endpoint after a 410; it
	// stays out of claims until the Registry has reloaded since.
	pausedAt time.Time
	// pausing is set from the 410 until pausedAt is: the database write
	// in between can take a while under load, and the endpoint is out of
	// claims and attempts from the moment this worker knows.
	pausing    bool
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

func (w *Worker) newBreaker(endpointID uuid.UUID) *gobreaker.TwoStepCircuitBreaker[struct{}] {
	return gobreaker.NewTwoStepCircuitBreaker[struct{}](gobreaker.Settings{
		Name:        event.FormatEndpointID(endpointID),
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
			w.log.Warn("endpoint circuit breaker", "endpoint_id", name, "from", from.String(), "to", to.String())
		},
	})
}

// openBreakers counts the endpoints whose current breaker in this worker
// is open or half-open: the gauge postgate_delivery_breakers_open, read at
// scrape time, so a breaker replaced (a new URL, a re-enable) or an
// endpoint deleted can never leave it off by one.
func (w *Worker) openBreakers() float64 {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for _, st := range w.endpoints {
		if st.breaker != nil && st.breaker.State() != gobreaker.StateClosed {
			n++
		}
	}
	return float64(n)
}

// forgetEndpoints drops the state of endpoints gone from the registry
// that have nothing in flight here and no claim in progress.
func (w *Worker) forgetEndpoints() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.claiming {
		return // next time: a claim in progress counts on these states
	}
	for id, st := range w.endpoints {
		if _, ok := w.reg.Endpoint(id); !ok && st.inFlight == 0 {
			delete(w.endpoints, id)
		}
	}
}

// rateLimiter is the per-endpoint GCRA in Redis. It fails open: with Redis
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

// key is the endpoint's GCRA key: every Redis key starts with its tenant.
func (r *rateLimiter) key(e *tenant.EndpointInfo) string {
	return r.prefix + "t:" + e.TenantID + ":e:" + e.ID.String() + ":rate"
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

// allow takes up to n events of the endpoint's rate and returns how many
// it may send now and, when fewer than n, how long until the next one.
func (w *Worker) allow(e *tenant.EndpointInfo, rate, burst, n int) (int, time.Duration) {
	r := w.rate
	if r == nil {
		return n, 0
	}
	if r.down.Down(w.cfg.Now()) {
		return n, 0
	}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	res, err := r.limiter.AllowAtMost(ctx, r.key(e), redis_rate.Limit{Rate: rate, Burst: burst, Period: time.Second}, n)
	if err != nil {
		w.m.redisErrors.Inc()
		if r.down.Failed(w.cfg.Now()) {
			w.log.Warn("rate limit check failed; allowing (fail open)", "tenant_id", e.TenantID, "err", err)
		}
		return n, 0
	}
	wait := res.RetryAfter
	if res.Allowed < n {
		wait = max(wait, time.Second/time.Duration(rate))
	}
	return res.Allowed, wait
}
