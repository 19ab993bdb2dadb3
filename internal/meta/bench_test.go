package meta_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/postgate/postgate/internal/event"
	"github.com/postgate/postgate/internal/tenant"
)

func appSecretOf(appID string) string { return "bench-secret-of-" + appID }

// BenchmarkCheck100kPages is one health check run of a gateway with
// 100,000 Pages (on 100 apps, Pages without tokens: silence only) that
// each received events on each of the past 8 days: the summaries the
// silence computation reads, the health rows it writes. The Graph API
// calls (one per app) go to the fake.
//
//	go test -run '^$' -bench Check100k -benchtime 3x ./internal/meta/
func BenchmarkCheck100kPages(b *testing.B) {
	e := newEnv(b)
	ctx := context.Background()
	const apps, pagesPerApp = 100, 1000
	now := time.Now().UTC()
	e.clock.Set(now)
	must := func(sql string, args ...any) {
		b.Helper()
		if _, err := e.db.Pool.Exec(ctx, sql, args...); err != nil {
			b.Fatal(err)
		}
	}
	// Apps and Pages straight into the tables (the registration path is
	// not what is measured); the apps' secrets are sealed as the service
	// does, through one real registration per app.
	for a := range apps {
		id := fmt.Sprint(9000 + a)
		e.graph.AddApp(id, appSecretOf(id), "bench")
		if _, err := e.tenants.RegisterApp(ctx, e.tenantID, tenant.AppInput{AppID: id, AppSecret: appSecretOf(id)}); err != nil {
			b.Fatal(err)
		}
	}
	must(`INSERT INTO pages (page_id, app_id, tenant_id, object)
		SELECT (600000 + a * $2 + p)::text, (9000 + a)::text, $1, 'page' FROM generate_series(0, $3 - 1) a, generate_series(0, $2 - 1) p`,
		e.tenantID, pagesPerApp, apps)
	// 8 days of activity per Page: a steady Page with a gap histogram; one
	// in 100 went quiet 3 hours ago (a silence candidate).
	must(`INSERT INTO page_activity (tenant_id, page_id, day, hours, gaps, first_at, last_at)
		SELECT $1, p.page_id, d::date, array_fill(12, ARRAY[24]), array_fill(0, ARRAY[20]) || ARRAY[280] || array_fill(0, ARRAY[60]),
			d, CASE WHEN p.page_id::int % 100 = 0 THEN $2::timestamptz - interval '3 hours' ELSE $2::timestamptz - interval '1 minute' END
		FROM pages p, generate_series($2::timestamptz - interval '7 days', $2::timestamptz, interval '1 day') d
		WHERE p.tenant_id = $1`, e.tenantID, now)
	must(`ANALYZE page_activity`)
	must(`ANALYZE pages`)
	b.ResetTimer()
	for range b.N {
		e.clock.Advance(time.Minute)
		if err := e.svc.CheckOnce(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	var silent int
	if err := e.db.Pool.QueryRow(ctx, `SELECT count(*) FROM page_health WHERE silent`).Scan(&silent); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(silent), "silent_pages")
}

// BenchmarkScanActivity is the activity scan of one interval's events:
// 200,000 events of 1,000 Pages, read once.
//
//	go test -run '^$' -bench ScanActivity -benchtime 3x ./internal/meta/
func BenchmarkScanActivity(b *testing.B) {
	e := newEnv(b)
	ctx := context.Background()
	start := time.Now().UTC().Add(-time.Hour).Truncate(time.Hour)
	const n = 200_000
	var batch event.Batch
	for i := range n {
		at := start.Add(time.Duration(i) * (time.Hour / n))
		id := v7At(at)
		batch.Add(&event.New{ID: id, TenantID: e.tenantID, PageID: fmt.Sprint(700000 + i%1000), AppID: hApp,
			DedupKey: uuid.UUID(id).String(), Type: "messages", ReceivedAt: at, Body: []byte(`{}`)})
		if batch.Len() == 5000 {
			if err := e.events.Insert(ctx, &batch, func([16]byte) {}); err != nil {
				b.Fatal(err)
			}
			batch.Reset()
		}
	}
	if _, err := e.db.Pool.Exec(ctx, `ANALYZE events`); err != nil {
		b.Fatal(err)
	}
	b.ResetTimer()
	for range b.N {
		act, err := e.events.ScanActivity(ctx, start, start.Add(time.Hour))
		if err != nil {
			b.Fatal(err)
		}
		if len(act.Hours) != 1000 {
			b.Fatalf("%d Page-hours, want 1000", len(act.Hours))
		}
	}
	b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
}
