package event

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/jackc/pgx/v5"
)

// GapBuckets is the size of an activity gap histogram: bucket 0 holds the
// gaps under a second, bucket k the gaps in [2^((k-1)/4), 2^(k/4))
// seconds; the last one also holds every longer gap (2^20 s is 12 days).
const GapBuckets = 81

// GapBucket is the bucket of a gap of d (activitySQL computes the same).
func GapBucket(d time.Duration) int {
	s := d.Seconds()
	if s < 1 {
		return 0
	}
	return min(GapBuckets-1, 1+int(math.Floor(4*math.Log2(s))))
}

// GapMid is a representative gap of bucket k: the geometric middle of its
// bounds 2^((k-1)/4) and 2^(k/4) seconds (half a second for bucket 0).
func GapMid(k int) time.Duration {
	if k <= 0 {
		return 500 * time.Millisecond
	}
	return time.Duration(math.Exp2((float64(k)-0.5)/4) * float64(time.Second))
}

// Activity is what the accepted events of a span of time amount to, per
// Page and per app: the raw material of silence detection, read once per
// event, never per Page (package meta keeps the summaries).
type Activity struct {
	// Hours: the events of a tenant's Page within one UTC hour.
	Hours []PageHour
	// Gaps: how many gaps between consecutive events of a tenant's Page
	// (within the span) fell into each bucket.
	Gaps []PageGaps
	// Apps: the last event of each tenant's app.
	Apps []AppLast
}

// PageHour is the events of a tenant's Page within one hour.
type PageHour struct {
	TenantID, PageID string
	Hour             time.Time
	Events           int
	First, Last      time.Time
}

// PageGaps is the gap histogram of a tenant's Page over a span.
type PageGaps struct {
	TenantID, PageID string
	Counts           [GapBuckets]int32
}

// AppLast is the last event of a tenant's app in a span.
type AppLast struct {
	TenantID, AppID string
	Last            time.Time
}

// activitySQL summarises the events whose ids fall in [$1, $2): one index
// range of each tenant's primary key, never a scan of the table. Test
// events and the gateway's own are not activity.
const activitySQL = `WITH e AS MATERIALIZED (
	SELECT e.tenant_id, e.page_id, e.app_id, e.received_at,
		extract(epoch FROM e.received_at - lag(e.received_at) OVER (PARTITION BY e.tenant_id, e.page_id ORDER BY e.received_at)) AS gap
	FROM tenants t CROSS JOIN LATERAL (
		SELECT tenant_id, page_id, app_id, received_at FROM events
		WHERE tenant_id = t.id AND id >= $1 AND id < $2 AND NOT test AND type NOT LIKE 'postgate.%'
	) e
)
SELECT 'h', tenant_id::text, page_id, date_trunc('hour', received_at, 'UTC'), count(*)::int, min(received_at), max(received_at), 0
	FROM e GROUP BY tenant_id, page_id, date_trunc('hour', received_at, 'UTC')
UNION ALL
SELECT 'g', tenant_id::text, page_id, NULL, count(*)::int, NULL, NULL, b
	FROM (SELECT tenant_id, page_id, CASE WHEN gap < 1 THEN 0 ELSE least(80, 1 + floor(4 * ln(gap) / ln(2))::int) END AS b
		FROM e WHERE gap IS NOT NULL) g
	GROUP BY tenant_id, page_id, b
UNION ALL
SELECT 'a', tenant_id::text, app_id, NULL, count(*)::int, NULL, max(received_at), 0
	FROM e GROUP BY tenant_id, app_id`

// ScanActivity summarises the events accepted in [from, to) (by their
// UUIDv7 ids: arrival order).
func (s *Store) ScanActivity(ctx context.Context, from, to time.Time) (Activity, error) {
	rows, err := s.pool.Query(ctx, activitySQL, uuidV7Floor(from), uuidV7Floor(to))
	if err != nil {
		return Activity{}, fmt.Errorf("scan activity: %w", err)
	}
	var (
		a           Activity
		kind, t, id string
		hour        *time.Time
		n           int
		first, last *time.Time
		bucket      int
		gaps        = map[[2]string]int{}
	)
	_, err = pgx.ForEachRow(rows, []any{&kind, &t, &id, &hour, &n, &first, &last, &bucket}, func() error {
		switch kind {
		case "h":
			a.Hours = append(a.Hours, PageHour{TenantID: t, PageID: id, Hour: hour.UTC(), Events: n, First: first.UTC(), Last: last.UTC()})
		case "g":
			k := [2]string{t, id}
			i, ok := gaps[k]
			if !ok {
				i = len(a.Gaps)
				gaps[k] = i
				a.Gaps = append(a.Gaps, PageGaps{TenantID: t, PageID: id})
			}
			if bucket >= 0 && bucket < GapBuckets {
				a.Gaps[i].Counts[bucket] += int32(n)
			}
		case "a":
			a.Apps = append(a.Apps, AppLast{TenantID: t, AppID: id, Last: last.UTC()})
		}
		return nil
	})
	if err != nil {
		return Activity{}, fmt.Errorf("scan activity: %w", err)
	}
	return a, nil
}
