package meta

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/postgate/postgate/internal/database"
)

// SignatureFailures counts, per app, the webhook POSTs whose signature
// matched none of the app's secrets, for the app health's
// signature_failures_1h. The ingress calls Add (no I/O: a map under a
// mutex); Run adds the counts to Postgres every few seconds, one
// statement per flush, so a flood of forged POSTs costs the database
// nothing per request.
type SignatureFailures struct {
	db  *database.DB
	log *slog.Logger
	now func() time.Time

	mu     sync.Mutex
	counts map[string]int
}

// maxFailureApps bounds the apps counted between two flushes (an app id
// is only counted once it is registered, so this is a memory guard).
const maxFailureApps = 10_000

// NewSignatureFailures returns a counter that stores into db.
func NewSignatureFailures(db *database.DB, log *slog.Logger, now func() time.Time) *SignatureFailures {
	if now == nil {
		now = time.Now
	}
	return &SignatureFailures{db: db, log: log, now: now, counts: map[string]int{}}
}

// Add counts one refused POST for appID (a registered app).
func (f *SignatureFailures) Add(appID string) {
	f.mu.Lock()
	if _, ok := f.counts[appID]; ok || len(f.counts) < maxFailureApps {
		f.counts[appID]++
	}
	f.mu.Unlock()
}

// Run flushes every interval until ctx ends, then once more.
func (f *SignatureFailures) Run(ctx context.Context, interval time.Duration) {
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			flushCtx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
			f.Flush(flushCtx)
			cancel()
			return
		case <-t.C:
			f.Flush(ctx)
		}
	}
}

// Flush adds the counts gathered so far to the minute they are flushed
// in, and drops the minutes older than two hours.
func (f *SignatureFailures) Flush(ctx context.Context) {
	f.mu.Lock()
	counts := f.counts
	f.counts = map[string]int{}
	f.mu.Unlock()
	if len(counts) == 0 {
		return
	}
	apps := make([]string, 0, len(counts))
	ns := make([]int32, 0, len(counts))
	for a, n := range counts {
		apps, ns = append(apps, a), append(ns, int32(n))
	}
	minute := f.now().UTC().Truncate(time.Minute)
	_, err := f.db.Pool.Exec(ctx, `WITH added AS (
		INSERT INTO app_signature_failures (app_id, minute, failures)
		SELECT app_id, $3, n FROM unnest($1::text[], $2::int[]) AS u(app_id, n)
		ON CONFLICT (app_id, minute) DO UPDATE SET failures = app_signature_failures.failures + EXCLUDED.failures
	)
	DELETE FROM app_signature_failures WHERE minute < $3::timestamptz - interval '2 hours'`, apps, ns, minute)
	if err != nil {
		f.log.Warn("store signature failure counts", "err", err, "apps", len(apps))
	}
}
