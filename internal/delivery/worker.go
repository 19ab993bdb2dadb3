package delivery

import (
	"context"
	"errors"
	"log/slog"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"
	"github.com/sony/gobreaker/v2"

	"github.com/postgate/postgate/internal/event"
	"github.com/postgate/postgate/internal/tenant"
)

// Registry is what the worker needs from the tenant Registry.
type Registry interface {
	// TenantIDs lists every tenant.
	TenantIDs() []string
	// Endpoints lists every endpoint with its URL, format, limits and keys.
	Endpoints() []*tenant.EndpointInfo
	// Endpoint returns one endpoint.
	Endpoint(id uuid.UUID) (*tenant.EndpointInfo, bool)
	// App returns an app's keys: the Meta format is signed with its
	// current secret.
	App(appID string) (*tenant.AppKeys, bool)
	// LoadedAt is when the current copy started reading the database.
	LoadedAt() time.Time
	// DisableEndpoint pauses an endpoint's deliveries (it answered 410
	// Gone), for every worker, until it is re-enabled.
	DisableEndpoint(ctx context.Context, id uuid.UUID, reason string) error
}

// Worker delivers events. Build it with New and call Run.
type Worker struct {
	// id names this worker's breaker report (breaker_reports).
	id     uuid.UUID
	cfg    Config
	reg    Registry
	events *event.Store
	rate   *rateLimiter
	sender *sender
	log    *slog.Logger
	m      *metrics

	mu        sync.Mutex
	endpoints map[uuid.UUID]*endpointState
	inFlight  int
	// claiming is set while a claim statement runs: the endpoints it
	// claims for must keep their state (see forgetEndpoints).
	claiming bool

	outcomes chan event.Outcome
	wake     chan struct{}
	sends    sync.WaitGroup
	// draining is set once Run's context has ended: outcome writes then
	// give up after a bounded time instead of retrying forever.
	draining atomic.Bool
}

// job is one claimed event.
type job = *event.Claimed

// New builds a worker. rdb may be nil (no rate limiting); mreg nil means a
// private registry; log nil discards.
func New(cfg Config, reg Registry, events *event.Store, rdb redis.UniversalClient, mreg prometheus.Registerer, log *slog.Logger) (*Worker, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	if reg == nil || events == nil {
		return nil, errors.New("delivery: a tenant registry and an event store are required")
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if mreg == nil {
		mreg = prometheus.NewRegistry()
	}
	w := &Worker{id: uuid.New(),
		cfg: cfg, reg: reg, events: events, rate: newRateLimiter(rdb, cfg.KeyPrefix), sender: newSender(&cfg),
		log: log, m: newMetrics(mreg), endpoints: map[uuid.UUID]*endpointState{},
		outcomes: make(chan event.Outcome, 4096), wake: make(chan struct{}, 1),
	}
	mreg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "postgate_delivery_breakers_open",
		Help: "Endpoints whose circuit breaker is open or half-open in this worker.",
	}, w.openBreakers))
	return w, nil
}

// Run delivers until ctx ends, then drains and returns: it stops claiming,
// lets in-flight attempts finish within ShutdownTimeout (attempts still
// running then are abandoned and do not count), writes every outcome, and
// releases every event it still holds so another worker can take it at
// once. A worker killed without draining leaves leases that expire after
// Lease; nothing is lost either way. Run returns once everything it
// started has stopped.
func (w *Worker) Run(ctx context.Context) {
	sendCtx, abortSends := context.WithCancel(context.WithoutCancel(ctx))
	defer abortSends()
	flushed := make(chan struct{})
	go func() {
		w.flushLoop()
		close(flushed)
	}()
	var bg sync.WaitGroup
	bg.Go(func() { w.maintain(ctx) })
	bg.Go(func() { w.listen(ctx) })

	w.claimLoop(ctx, sendCtx)
	w.draining.Store(true)

	// Drain: in-flight attempts get ShutdownTimeout, then are abandoned.
	done := make(chan struct{})
	go func() { w.sends.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(w.cfg.ShutdownTimeout):
		w.log.Warn("delivery shutdown timeout; abandoning in-flight attempts")
		abortSends()
		<-done
	}
	close(w.outcomes)
	<-flushed
	bg.Wait()
	forget, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	_ = w.events.ForgetBreakers(forget, w.id)
}

func (w *Worker) claimLoop(ctx, sendCtx context.Context) {
	timer := time.NewTimer(0)
	defer timer.Stop()
	var last time.Time
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		case <-w.wake:
		}
		if wait := time.Until(last.Add(w.cfg.MinClaimInterval)); wait > 0 {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
		}
		last = time.Now()
		more, err := w.claimRound(ctx, sendCtx)
		delay := w.cfg.PollInterval
		switch {
		case err != nil && ctx.Err() == nil:
			w.log.Error("claim deliveries", "err", err)
			delay = time.Second
		case more:
			delay = w.cfg.MinClaimInterval
		}
		timer.Reset(delay)
	}
}

// claimRound claims what every eligible endpoint may take now and starts
// sending it. more reports that there may be more work right away.
func (w *Worker) claimRound(ctx, sendCtx context.Context) (more bool, err error) {
	var (
		ids    []uuid.UUID
		quota  []int32
		states []*endpointState
	)
	now := w.cfg.Now()
	w.mu.Lock()
	free := w.cfg.Concurrency - w.inFlight
	for _, e := range w.reg.Endpoints() {
		if free <= 0 {
			break
		}
		if e.Disabled || e.URL == "" || !e.CanSign() {
			continue
		}
		st := w.stateLocked(e)
		if st.pausing {
			continue // its 410 is being written (disableEndpoint)
		}
		if !st.pausedAt.IsZero() {
			if !w.reg.LoadedAt().After(st.pausedAt) {
				continue
			}
			st.pausedAt = time.Time{}
		}
		if now.Before(st.notBefore) {
			continue
		}
		k := min(w.endpointConcurrency(e)-st.inFlight, w.cfg.ClaimPerTenant)
		switch st.breaker.State() {
		case gobreaker.StateOpen:
			continue
		case gobreaker.StateHalfOpen:
			// Only the probes go out; the breaker turns them away
			// beyond its count anyway, as releases.
			k = min(k, w.cfg.BreakerProbes-st.inFlight)
		}
		if k <= 0 {
			continue // a finishing attempt wakes the claim loop
		}
		ids = append(ids, e.ID)
		quota = append(quota, int32(k))
		states = append(states, st)
	}
	if free <= 0 || len(ids) == 0 {
		w.mu.Unlock()
		return false, nil // a finishing attempt, new work or the poll wakes the claim loop
	}
	// The states of ids stay in w.endpoints until the claim is counted in
	// them (forgetEndpoints waits).
	w.claiming = true
	w.mu.Unlock()
	defer func() {
		w.mu.Lock()
		w.claiming = false
		w.mu.Unlock()
	}()

	qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	// The claimed jobs of ids[i] go to perEndpoint[i].
	pos := make(map[uuid.UUID]int, len(ids))
	for i, id := range ids {
		pos[id] = i
	}
	perEndpoint := make([][]job, len(ids))
	n := 0
	err = w.events.Claim(qctx, ids, quota, free, w.cfg.Lease, func(c *event.Claimed) {
		i := pos[c.EndpointID]
		perEndpoint[i] = append(perEndpoint[i], c)
		n++
	})
	if err != nil {
		return false, err
	}
	w.m.claims.Observe(float64(n))
	if n == 0 {
		return more, nil
	}
	w.mu.Lock()
	for i, jobs := range perEndpoint {
		if len(jobs) == 0 {
			continue
		}
		states[i].inFlight += len(jobs)
		w.inFlight += len(jobs)
		if len(jobs) >= int(quota[i]) {
			more = true
		}
	}
	w.m.inFlight.Set(float64(w.inFlight))
	w.mu.Unlock()
	if n >= free {
		more = true
	}
	for i, jobs := range perEndpoint {
		if len(jobs) > 0 {
			w.sends.Go(func() { w.dispatch(sendCtx, ids[i], jobs) })
		}
	}
	return more, nil
}

func (w *Worker) stateLocked(e *tenant.EndpointInfo) *endpointState {
	st, ok := w.endpoints[e.ID]
	if !ok {
		st = &endpointState{}
		w.endpoints[e.ID] = st
	}
	// One breaker per endpoint URL: a new URL starts closed, and so does
	// an endpoint re-enabled since the breaker was made (its owner says it
	// works again; SPEC: re-enabling resets the breaker).
	if st.breaker == nil || st.breakerURL != e.URL || !st.enabledAt.Equal(e.EnabledAt) {
		st.breaker, st.breakerURL, st.enabledAt = w.newBreaker(e.ID), e.URL, e.EnabledAt
	}
	return st
}

func (w *Worker) endpointConcurrency(e *tenant.EndpointInfo) int {
	if e.Concurrency > 0 {
		return e.Concurrency
	}
	return w.cfg.TenantConcurrency
}

// dispatch spends the endpoint's rate on its claimed jobs, sends what it
// may, and releases the rest, unattempted, for when the rate allows.
func (w *Worker) dispatch(ctx context.Context, endpointID uuid.UUID, jobs []job) {
	e, ok := w.reg.Endpoint(endpointID)
	if !ok {
		for _, j := range jobs {
			w.release(j, w.cfg.Now(), "no_endpoint")
		}
		return
	}
	rate, burst := w.cfg.TenantRate, w.cfg.TenantBurst
	if e.Rate > 0 {
		rate = e.Rate
	}
	if e.Burst > 0 {
		burst = e.Burst
	}
	allowed, wait := w.allow(e, rate, burst, len(jobs))
	if allowed < len(jobs) {
		until := w.cfg.Now().Add(wait)
		w.mu.Lock()
		if st := w.endpoints[endpointID]; st != nil && until.After(st.notBefore) {
			st.notBefore = until
		}
		w.mu.Unlock()
		for _, j := range jobs[allowed:] {
			w.release(j, until, "rate_limited")
		}
	}
	for _, j := range jobs[:allowed] {
		w.sends.Go(func() { w.attempt(ctx, e, j) })
	}
}

// release puts a job back, unattempted, due at next.
func (w *Worker) release(j job, next time.Time, reason string) {
	w.m.deferred.WithLabelValues(reason).Inc()
	w.finish(event.Outcome{TenantID: j.TenantID, EndpointID: j.EndpointID, ID: j.ID, Lease: j.Lease, Ordered: j.Ordered, At: next})
}

// finish hands a job's outcome to the writer, frees its slots and wakes
// the claim loop.
func (w *Worker) finish(o event.Outcome) {
	w.outcomes <- o
	w.mu.Lock()
	if st := w.endpoints[o.EndpointID]; st != nil {
		st.inFlight--
	}
	w.inFlight--
	w.m.inFlight.Set(float64(w.inFlight))
	w.mu.Unlock()
	w.poke()
}

// poke wakes the claim loop if it is waiting.
func (w *Worker) poke() {
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// attempt makes one delivery attempt of j and records what came of it.
func (w *Worker) attempt(ctx context.Context, e *tenant.EndpointInfo, j job) {
	// The breaker the claim round keyed; e may be a moment older than the
	// registry the round saw, and must not key it back.
	w.mu.Lock()
	st := w.endpoints[e.ID]
	if st == nil || st.breaker == nil {
		st = w.stateLocked(e)
	}
	breaker := st.breaker
	paused := st.pausing || !st.pausedAt.IsZero()
	w.mu.Unlock()
	// The claim round checked the pause before its claim statement, and
	// a 410 (to another attempt, here or in another replica) or an
	// operator may have paused the endpoint since: then the event waits,
	// unattempted, as SPEC says, instead of going to the Gone endpoint.
	if cur, ok := w.reg.Endpoint(e.ID); paused || ok && cur.Disabled {
		w.release(j, w.cfg.Now().Add(pauseSettle), "paused")
		return
	}
	done, err := breaker.Allow()
	if err != nil {
		// Open, or a probe is already out: wait without an attempt.
		w.release(j, w.cfg.Now().Add(min(w.cfg.BreakerOpenFor, 5*time.Second)), "breaker_open")
		return
	}
	now := w.cfg.Now()
	req, reason := w.request(e, j, now)
	if reason != "" {
		// Never send unsigned. Without a signing key the claim skips the
		// endpoint from now on; without its app's secret (a meta
		// delivery whose app was deleted, or a registry a moment behind)
		// it waits, unattempted, for the app or a replay elsewhere.
		done(errNotAnAttempt)
		wait := time.Second
		if reason == "no_app_secret" || reason == "bad_body" {
			wait = 30 * time.Second
		}
		w.release(j, now.Add(wait), reason)
		return
	}
	res := w.sender.send(ctx, req)
	if res.canceled {
		done(errNotAnAttempt)
		w.release(j, now, "shutdown")
		return
	}
	if res.class == ClassOK {
		done(nil)
	} else {
		done(errAttemptFailed)
		w.mu.Lock()
		if now.After(st.lastFailure) { // a slow attempt must not move it back
			st.lastFailure = now
		}
		w.mu.Unlock()
	}
	w.m.attempts.WithLabelValues(res.class).Inc()
	w.m.attemptSeconds.Observe(res.latency.Seconds())

	o := event.Outcome{
		TenantID: j.TenantID, EndpointID: j.EndpointID, ID: j.ID, Lease: j.Lease, Ordered: j.Ordered,
		Attempt: &event.Attempt{
			Number: j.Number, At: now, StatusCode: res.status, Latency: res.latency,
			Class: res.class, Error: res.err, Response: res.snippet,
		},
	}
	end := w.cfg.Now()
	var next time.Duration
	var verdict string
	switch {
	case res.class == ClassOK:
		verdict = string(event.StatusDelivered)
		o.Status, o.Attempts, o.At = event.StatusDelivered, j.Attempts+1, end
		w.m.latency.Observe(end.Sub(j.ReceivedAt).Seconds())
	case res.class == Class410:
		// Gone: pause the endpoint; the event waits, its retries unspent,
		// and not due again before every replica has seen the pause.
		verdict = "paused"
		o.Status, o.Attempts, o.At = event.StatusPending, j.Attempts, end.Add(pauseSettle)
		w.disableEndpoint(e)
	case j.Attempts+1 > len(w.cfg.RetrySchedule):
		verdict = string(event.StatusDead)
		o.Status, o.Attempts, o.At = event.StatusDead, j.Attempts+1, end
		w.m.dead.Inc()
	default:
		verdict = string(event.StatusFailed)
		next = w.retryDelay(j.Attempts, res.retryAfter)
		o.Status, o.Attempts, o.At = event.StatusFailed, j.Attempts+1, end.Add(next)
	}
	level := slog.LevelInfo
	if verdict == string(event.StatusDead) || verdict == "paused" {
		level = slog.LevelWarn
	}
	w.log.Log(context.Background(), level, "delivery attempt",
		"tenant_id", j.TenantID, "endpoint_id", event.FormatEndpointID(j.EndpointID), "event_id", event.FormatID(j.ID),
		"attempt", j.Number, "status_code", res.status, "latency_ms", res.latency.Milliseconds(), "class", res.class,
		"outcome", verdict, "retry_in", next.String())
	w.finish(o)
}

// pauseSettle is how long an event that met a 410 waits before it is due
// again: the pause reaches every replica's registry within it (about
// 20 ms; SPEC allows 1 s), so none POSTs it to the Gone endpoint again.
const pauseSettle = time.Second

// retryDelay is the wait after failed attempt number attempts+1: the
// schedule's, ±Jitter, or the endpoint's Retry-After (already capped).
func (w *Worker) retryDelay(attempts int, retryAfter time.Duration) time.Duration {
	if retryAfter > 0 {
		return retryAfter
	}
	return jitter(w.cfg.RetrySchedule[attempts], w.cfg.Jitter)
}

// jitter spreads d uniformly over [d·(1-f), d·(1+f)].
func jitter(d time.Duration, f float64) time.Duration {
	if f <= 0 {
		return d
	}
	return time.Duration(float64(d) * (1 - f + 2*f*rand.Float64()))
}

// disableEndpoint pauses an endpoint's deliveries after a 410, through
// the registry (visible in the API, shared by every worker, undone by
// re-enabling the endpoint) and here until the registry has caught up.
func (w *Worker) disableEndpoint(e *tenant.EndpointInfo) {
	w.mu.Lock()
	st := w.endpoints[e.ID]
	paused := st != nil && (st.pausing || !st.pausedAt.IsZero())
	if st != nil && !paused {
		st.pausing = true
	}
	w.mu.Unlock()
	if paused {
		return // another attempt's 410 did it already, or is doing it
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	id := event.FormatEndpointID(e.ID)
	if err := w.reg.DisableEndpoint(ctx, e.ID, "the endpoint answered 410 Gone"); err != nil {
		w.log.Error("disable endpoint after 410", "tenant_id", e.TenantID, "endpoint_id", id, "err", err)
	}
	// pausedAt is taken after the write: a reload that began before the
	// write committed must not end the pause (see claimRound).
	w.mu.Lock()
	if st := w.endpoints[e.ID]; st != nil {
		st.pausing, st.pausedAt = false, w.cfg.Now()
	}
	w.mu.Unlock()
	w.log.Warn("endpoint answered 410 Gone; deliveries paused until it is re-enabled", "tenant_id", e.TenantID, "endpoint_id", id)
}
