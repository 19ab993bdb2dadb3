package redisdb

import (
	"sync/atomic"
	"time"
)

// Backoff skips Redis for a while after it fails, so that an outage costs
// one timeout, not one per request or per claim: callers that treat Redis
// as an optimisation (dedup, rate limits) ask Down before each use and
// report each failure with Failed. Safe for concurrent use; the zero value
// is ready, with a wait of one second.
type Backoff struct {
	// Wait is how long Redis is skipped after a failure. 0 means 1s.
	Wait time.Duration
	// downUntil is the Unix nano time until which Redis is skipped.
	downUntil atomic.Int64
}

// Down reports whether Redis should be skipped at now.
func (b *Backoff) Down(now time.Time) bool {
	return now.UnixNano() < b.downUntil.Load()
}

// Failed records a failure at now and reports whether it began an outage
// (Redis was not already being skipped): the moment to log it once.
func (b *Backoff) Failed(now time.Time) bool {
	wait := b.Wait
	if wait <= 0 {
		wait = time.Second
	}
	prev := b.downUntil.Swap(now.Add(wait).UnixNano())
	return prev < now.UnixNano()
}
