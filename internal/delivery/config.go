package delivery

import (
	"errors"
	"time"

	"github.com/postgate/postgate/internal/tenant"
)

// Config tunes a Worker. Zero fields take the defaults named on each.
type Config struct {
	// Timeout bounds one attempt, from dial to the last byte read
	// (CALLBACK_TIMEOUT). Default 10s.
	Timeout time.Duration
	// RetrySchedule is the delay before each retry (RETRY_SCHEDULE); after
	// len(RetrySchedule)+1 failed attempts the event is dead.
	RetrySchedule []time.Duration
	// Jitter spreads each retry delay by ±Jitter (a fraction). Default 0.2;
	// negative means none.
	Jitter float64
	// MaxRetryAfter caps a Retry-After on 429 and 503. Default 1h.
	MaxRetryAfter time.Duration
	// Concurrency is the in-flight attempts of this worker
	// (DELIVERY_CONCURRENCY). Default 128.
	Concurrency int
	// TenantRate (events/s), TenantBurst and TenantConcurrency (in-flight
	// attempts per tenant, in this worker) are the defaults for tenants
	// without their own. Defaults 100, 200, 16.
	TenantRate, TenantBurst, TenantConcurrency int
	// AllowPrivate lets callbacks reach loopback, private, link-local and
	// metadata addresses (CALLBACK_ALLOW_PRIVATE).
	AllowPrivate bool
	// Lease is how long a claim holds an event; a dead worker's events
	// come back after it. Default Timeout + 30s; at least Timeout + 5s.
	Lease time.Duration
	// PollInterval is the wait between claims when there was nothing to do.
	// Default 100ms.
	PollInterval time.Duration
	// MinClaimInterval spaces claims when work keeps coming. Default 5ms:
	// each claim is planned afresh (see replan), and at 1 event per commit
	// a notification arrives every millisecond or so.
	MinClaimInterval time.Duration
	// ClaimPerTenant caps one tenant's events in one claim (its free in-flight
	// slots bound it too). Default 256.
	ClaimPerTenant int
	// MaxFlush caps the outcomes written by one statement. Default 500.
	MaxFlush int
	// FlushWait is how long the outcome writer gathers after the first
	// outcome of a group before writing it (less once MaxFlush are in).
	// Default 10ms: it delays only the recording of an attempt already
	// made, and saves a transaction (and a WAL flush) per outcome under
	// light load.
	FlushWait time.Duration
	// BreakerFailures consecutive failures open a tenant's circuit breaker
	// (BREAKER_FAILURES); it stays open BreakerOpenFor (BREAKER_OPEN_FOR),
	// then lets BreakerProbes attempts through (BREAKER_PROBES), and
	// closes again after that many successes in a row; a failed probe
	// opens it again. Defaults 5, 30s and 1. Waiting behind an open
	// breaker is not an attempt; re-enabling an endpoint resets its
	// breaker.
	BreakerFailures int
	BreakerOpenFor  time.Duration
	BreakerProbes   int
	// RetainDelivered and RetainDead are how long delivered and dead events
	// (and their attempts) are kept. Defaults 7 days and 30 days.
	RetainDelivered, RetainDead time.Duration
	// PurgeEvery is the period of the retention purge (default 10m);
	// StatsEvery that of the backlog gauges (default 15s).
	PurgeEvery, StatsEvery time.Duration
	// ShutdownTimeout bounds how long Run waits for in-flight attempts once
	// its context ends (SHUTDOWN_TIMEOUT). Default 20s.
	ShutdownTimeout time.Duration
	// KeyPrefix is put before every Redis key (tests isolate with it).
	KeyPrefix string
	// UserAgent is sent with every delivery. Default "Postgate".
	UserAgent string
	// Resolver resolves callback hosts. Default net.DefaultResolver.
	Resolver tenant.Resolver
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Defaults of the settings the gateway exposes as environment variables:
// package config shows and applies these, so each has one home.
const (
	DefaultTimeout           = 10 * time.Second // CALLBACK_TIMEOUT
	DefaultConcurrency       = 128              // DELIVERY_CONCURRENCY
	DefaultTenantRate        = 100              // TENANT_RATE
	DefaultTenantBurst       = 200              // TENANT_BURST
	DefaultTenantConcurrency = 16               // TENANT_CONCURRENCY
	// DefaultLeaseMargin is added to the timeout for the default lease
	// (DELIVERY_LEASE); MinLeaseMargin is the least a lease may exceed it.
	DefaultLeaseMargin     = 30 * time.Second
	MinLeaseMargin         = 5 * time.Second
	DefaultBreakerFailures = 5                   // BREAKER_FAILURES
	DefaultBreakerOpenFor  = 30 * time.Second    // BREAKER_OPEN_FOR
	DefaultBreakerProbes   = 1                   // BREAKER_PROBES
	DefaultRetainDelivered = 7 * 24 * time.Hour  // RETENTION_DELIVERED
	DefaultRetainDead      = 30 * 24 * time.Hour // RETENTION_DEAD
	DefaultShutdownTimeout = 20 * time.Second    // SHUTDOWN_TIMEOUT
)

// DefaultRetrySchedule is RETRY_SCHEDULE's default.
var DefaultRetrySchedule = []time.Duration{
	5 * time.Second, 30 * time.Second, 2 * time.Minute, 10 * time.Minute, 30 * time.Minute,
	time.Hour, 2 * time.Hour, 4 * time.Hour, 8 * time.Hour, 12 * time.Hour, 24 * time.Hour,
}

func (c *Config) defaults() error {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	defInt := func(d *int, v int) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.Timeout, DefaultTimeout)
	if len(c.RetrySchedule) == 0 {
		c.RetrySchedule = DefaultRetrySchedule
	}
	if c.Jitter == 0 {
		c.Jitter = 0.2
	}
	if c.Jitter < 0 {
		c.Jitter = 0
	}
	def(&c.MaxRetryAfter, time.Hour)
	defInt(&c.Concurrency, DefaultConcurrency)
	defInt(&c.TenantRate, DefaultTenantRate)
	defInt(&c.TenantBurst, DefaultTenantBurst)
	defInt(&c.TenantConcurrency, DefaultTenantConcurrency)
	def(&c.Lease, c.Timeout+DefaultLeaseMargin)
	def(&c.PollInterval, 100*time.Millisecond)
	def(&c.MinClaimInterval, 5*time.Millisecond)
	defInt(&c.ClaimPerTenant, 256)
	defInt(&c.MaxFlush, 500)
	def(&c.FlushWait, 10*time.Millisecond)
	defInt(&c.BreakerFailures, DefaultBreakerFailures)
	def(&c.BreakerOpenFor, DefaultBreakerOpenFor)
	defInt(&c.BreakerProbes, DefaultBreakerProbes)
	def(&c.RetainDelivered, DefaultRetainDelivered)
	def(&c.RetainDead, DefaultRetainDead)
	def(&c.PurgeEvery, 10*time.Minute)
	def(&c.StatsEvery, 15*time.Second)
	def(&c.ShutdownTimeout, DefaultShutdownTimeout)
	if c.UserAgent == "" {
		c.UserAgent = "Postgate"
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	var errs []error
	if c.Timeout < 0 || c.Concurrency < 0 || c.TenantRate < 0 || c.TenantBurst < 0 || c.TenantConcurrency < 0 ||
		c.ClaimPerTenant < 0 || c.MaxFlush < 0 || c.BreakerFailures < 0 || c.BreakerProbes < 0 || c.BreakerOpenFor < 0 {
		errs = append(errs, errors.New("delivery: limits and timeouts must be positive"))
	}
	if c.Lease < c.Timeout+MinLeaseMargin {
		errs = append(errs, errors.New("delivery: Lease must exceed Timeout by at least 5s, or a slow attempt could be claimed twice"))
	}
	for _, d := range c.RetrySchedule {
		if d <= 0 {
			errs = append(errs, errors.New("delivery: every RetrySchedule delay must be positive"))
			break
		}
	}
	return errors.Join(errs...)
}
