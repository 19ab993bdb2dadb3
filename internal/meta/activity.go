package meta

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/postgate/postgate/internal/event"
)

// summarize folds the events accepted since the last run into
// page_activity and app_activity, an hour of arrivals at a time, each
// hour in one transaction with the scan's watermark (meta_scan), so an
// hour is counted once even if two replicas briefly both think they
// check. Every event is read once, in an index range of its tenant's
// events: never a scan per Page.
//
// It returns how far activity is known (the watermark) and whether the
// scan has caught up with the clock. A watermark older than the 8 days
// silence looks at moves up to 8 days ago (what it skips is too old to
// matter), and summaries older than 9 days are deleted.
func (s *Service) summarize(ctx context.Context, now time.Time) (time.Time, bool, error) {
	oldest := now.Add(-8 * 24 * time.Hour).Truncate(time.Hour)
	if _, err := s.db.Pool.Exec(ctx, `INSERT INTO meta_scan (id, scanned_to) VALUES (1, $1)
		ON CONFLICT (id) DO UPDATE SET scanned_to = EXCLUDED.scanned_to WHERE meta_scan.scanned_to < EXCLUDED.scanned_to`, oldest); err != nil {
		return time.Time{}, false, fmt.Errorf("start activity scan: %w", err)
	}
	if _, err := s.db.Pool.Exec(ctx, `DELETE FROM page_activity WHERE day < $1::date`,
		now.Add(-9*24*time.Hour).Format(time.DateOnly)); err != nil {
		return time.Time{}, false, fmt.Errorf("drop old activity: %w", err)
	}
	var from time.Time
	if err := s.db.Pool.QueryRow(ctx, `SELECT scanned_to FROM meta_scan WHERE id = 1`).Scan(&from); err != nil {
		return time.Time{}, false, fmt.Errorf("read activity scan: %w", err)
	}
	from = from.UTC()
	end := now.Add(-scanLag).UTC()
	for n := 0; from.Before(end) && n < maxScanHours; n++ {
		next := minTime(from.Truncate(time.Hour).Add(time.Hour), end)
		if err := s.foldSpan(ctx, from, next); err != nil {
			return time.Time{}, false, err
		}
		from = next
	}
	return from, !from.Before(end), nil
}

// foldSpan adds the activity of [from, to) (within one UTC hour, so
// within one day) to the summaries and moves the watermark to to, in one
// transaction: a span is counted once.
func (s *Service) foldSpan(ctx context.Context, from, to time.Time) error {
	act, err := s.events.ScanActivity(ctx, from, to)
	if err != nil {
		return err
	}
	return pgx.BeginFunc(ctx, s.db.Pool, func(tx pgx.Tx) error {
		var moved bool
		if err := tx.QueryRow(ctx, `UPDATE meta_scan SET scanned_to = $2 WHERE id = 1 AND scanned_to = $1 RETURNING true`, from, to).Scan(&moved); err != nil {
			if errors.Is(err, pgx.ErrNoRows) {
				return nil // another replica folded it
			}
			return fmt.Errorf("move activity watermark: %w", err)
		}
		return foldActivity(ctx, tx, act, from)
	})
}

// foldActivity merges one span's activity into the summary rows: hours
// and gaps add up, first and last widen, and the gap between a Page's
// last event before the span and its first in it is counted too.
func foldActivity(ctx context.Context, tx pgx.Tx, act event.Activity, from time.Time) error {
	type key = [3]string // tenant, page, day
	type day struct {
		hours       [24]int32
		gaps        [event.GapBuckets]int32
		first, last time.Time
	}
	days := map[key]*day{}
	var order []key
	firstOf := map[[2]string]time.Time{}
	dayOfPage := map[[2]string]key{}
	for _, h := range act.Hours {
		k := key{h.TenantID, h.PageID, h.Hour.Format(time.DateOnly)}
		d := days[k]
		if d == nil {
			d = &day{first: h.First, last: h.Last}
			days[k] = d
			order = append(order, k)
		}
		d.hours[h.Hour.Hour()] += int32(h.Events)
		d.first = minTime(d.first, h.First)
		d.last = maxTime(d.last, h.Last)
		pk := [2]string{h.TenantID, h.PageID}
		if f, ok := firstOf[pk]; !ok || h.First.Before(f) {
			firstOf[pk] = h.First
			dayOfPage[pk] = k
		}
	}
	for _, g := range act.Gaps {
		k, ok := dayOfPage[[2]string{g.TenantID, g.PageID}]
		if !ok {
			continue
		}
		for i, c := range g.Counts {
			days[k].gaps[i] += c
		}
	}
	if len(firstOf) > 0 {
		var tenants, pages []string
		for pk := range firstOf {
			tenants, pages = append(tenants, pk[0]), append(pages, pk[1])
		}
		rows, err := tx.Query(ctx, `SELECT a.tenant_id::text, a.page_id, max(a.last_at) FROM page_activity a
			JOIN unnest($1::uuid[], $2::text[]) AS u(tenant_id, page_id) ON a.tenant_id = u.tenant_id AND a.page_id = u.page_id
			WHERE a.day >= $3::date GROUP BY 1, 2`, tenants, pages, from.Add(-9*24*time.Hour).Format(time.DateOnly))
		if err != nil {
			return fmt.Errorf("read last activity: %w", err)
		}
		var t, p string
		var last time.Time
		_, err = pgx.ForEachRow(rows, []any{&t, &p, &last}, func() error {
			pk := [2]string{t, p}
			if first := firstOf[pk]; first.After(last) {
				days[dayOfPage[pk]].gaps[event.GapBucket(first.Sub(last))]++
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("read last activity: %w", err)
		}
	}
	b := &pgx.Batch{}
	for _, k := range order {
		d := days[k]
		b.Queue(`INSERT INTO page_activity (tenant_id, page_id, day, hours, gaps, first_at, last_at) VALUES ($1, $2, $3, $4, $5, $6, $7)
			ON CONFLICT (tenant_id, page_id, day) DO UPDATE SET
				hours = (SELECT array_agg(x + y ORDER BY i) FROM unnest(page_activity.hours, EXCLUDED.hours) WITH ORDINALITY AS u(x, y, i)),
				gaps = (SELECT array_agg(coalesce(x, 0) + coalesce(y, 0) ORDER BY i) FROM unnest(page_activity.gaps, EXCLUDED.gaps) WITH ORDINALITY AS u(x, y, i)),
				first_at = least(page_activity.first_at, EXCLUDED.first_at),
				last_at = greatest(page_activity.last_at, EXCLUDED.last_at)`,
			k[0], k[1], k[2], d.hours[:], d.gaps[:], d.first, d.last)
	}
	for _, a := range act.Apps {
		b.Queue(`INSERT INTO app_activity (tenant_id, app_id, last_event_at) VALUES ($1, $2, $3)
			ON CONFLICT (tenant_id, app_id) DO UPDATE SET last_event_at = greatest(app_activity.last_event_at, EXCLUDED.last_event_at)`,
			a.TenantID, a.AppID, a.Last)
	}
	if b.Len() == 0 {
		return nil
	}
	if err := tx.SendBatch(ctx, b).Close(); err != nil {
		return fmt.Errorf("store activity: %w", err)
	}
	return nil
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
