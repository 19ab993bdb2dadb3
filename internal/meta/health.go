package meta

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgtype"

	"github.com/postgate/postgate/internal/event"
	"github.com/postgate/postgate/internal/tenant"
)

// The health problems, worst first. An app or Page without one is healthy.
const (
	// Meta refuses the app access token: the secret was reset at Meta.
	ProblemAppTokenInvalid = "app_token_invalid"
	// The app has no webhook subscription for the object.
	ProblemNotSubscribed = "not_subscribed"
	// Meta turned the subscription off (after an hour of failures).
	ProblemInactive = "inactive"
	// The subscription's callback URL is not the gateway's for the app.
	ProblemCallbackMismatch = "callback_url_mismatch"
	// A field the tenant needs is not subscribed (app or Page).
	ProblemMissingFields = "missing_fields"
	// Meta refuses the Page access token (expired, revoked, permission lost).
	ProblemPageTokenInvalid = "page_token_invalid"
	// The app is not among the Page's subscribed apps.
	ProblemAppNotSubscribed = "app_not_subscribed"
	// The Page stopped receiving events (see silent).
	ProblemSilent = "silent"
)

// AppHealth is the last health check of an app's webhook subscription.
type AppHealth struct {
	AppID, TenantID    string
	Active             bool
	CallbackURL        string
	CallbackURLMatches bool
	Fields             []string
	MissingFields      []string
	// CheckedAt is nil until the first check; Error is why the last
	// check could not be made (the state is then the previous one's).
	CheckedAt *time.Time
	Error     string
	// Problem is empty while healthy; Since is when the current state
	// began.
	Problem string
	Since   time.Time
	// LastEventAt is the app's last accepted event (nil: none seen);
	// SignatureFailures1h counts its webhook POSTs refused for their
	// signature over the past hour.
	LastEventAt         *time.Time
	SignatureFailures1h int
}

// PageHealth is the last health check of a Page's subscription and its
// silence.
type PageHealth struct {
	PageID, AppID, TenantID string
	// HasToken tells whether the subscription can be checked at all: only
	// a Page with an access token is asked about.
	HasToken         bool
	SubscribedFields []string
	MissingFields    []string
	CheckedAt        *time.Time
	Error            string
	LastEventAt      *time.Time
	Events24h        int
	Silent           bool
	Problem          string
	Since            time.Time
}

// appHealthRow and pageHealthRow are the stored checks.
type appHealthRow struct {
	AppID, TenantID    string
	Active             bool
	CallbackURL        string
	CallbackURLMatches bool
	Fields, Missing    []string
	CheckedAt          *time.Time
	Error              *string
	Problem            *string
	Since              time.Time
	Announced          bool
}

type pageHealthRow struct {
	PageID, AppID, TenantID string
	Fields, Missing         []string
	CheckedAt               *time.Time
	Error                   *string
	Silent                  bool
	Problem                 *string
	Since                   time.Time
	Announced               bool
}

const appHealthCols = `app_id, tenant_id::text, active, callback_url, callback_url_matches, fields, missing_fields, checked_at, error, problem, since, announced`

func (r *appHealthRow) dest() []any {
	return []any{&r.AppID, &r.TenantID, &r.Active, &r.CallbackURL, &r.CallbackURLMatches, &r.Fields, &r.Missing, &r.CheckedAt, &r.Error, &r.Problem, &r.Since, &r.Announced}
}

const pageHealthCols = `page_id, app_id, tenant_id::text, subscribed_fields, missing_fields, checked_at, error, silent, problem, since, announced`

func (r *pageHealthRow) dest() []any {
	return []any{&r.PageID, &r.AppID, &r.TenantID, &r.Fields, &r.Missing, &r.CheckedAt, &r.Error, &r.Silent, &r.Problem, &r.Since, &r.Announced}
}

func deref(s *string) string {
	if s == nil {
		return ""
	}
	return *s
}

func nullable(s string) *string {
	if s == "" {
		return nil
	}
	return &s
}

// AppHealth reads the health of an app of tenantID.
func (s *Service) AppHealth(ctx context.Context, tenantID, appID string) (AppHealth, error) {
	if s.client == nil {
		return AppHealth{}, ErrOff
	}
	a, err := s.tenants.GetApp(ctx, tenantID, appID)
	if err != nil {
		return AppHealth{}, err
	}
	h := AppHealth{AppID: a.AppID, TenantID: a.TenantID, Since: a.CreatedAt, Fields: []string{}, MissingFields: []string{}}
	var r appHealthRow
	err = s.db.Pool.QueryRow(ctx, `SELECT `+appHealthCols+` FROM app_health WHERE app_id = $1 AND tenant_id = $2`, appID, tenantID).Scan(r.dest()...)
	switch {
	case err == nil:
		h.Active, h.CallbackURL, h.CallbackURLMatches = r.Active, r.CallbackURL, r.CallbackURLMatches
		h.Fields, h.MissingFields, h.CheckedAt, h.Error = r.Fields, r.Missing, r.CheckedAt, deref(r.Error)
		h.Problem, h.Since = deref(r.Problem), r.Since
	case !errors.Is(err, pgx.ErrNoRows):
		return AppHealth{}, fmt.Errorf("read app health: %w", err)
	}
	now := s.cfg.Now()
	// Failures counted before this registration of the app (another
	// tenant may have held it) are not this tenant's.
	err = s.db.Pool.QueryRow(ctx, `SELECT
		(SELECT last_event_at FROM app_activity WHERE tenant_id = $1 AND app_id = $2),
		(SELECT coalesce(sum(failures), 0)::int FROM app_signature_failures WHERE app_id = $2 AND minute > $3 AND minute >= date_trunc('minute', $4::timestamptz))`,
		tenantID, appID, now.Add(-time.Hour), a.CreatedAt).Scan(&h.LastEventAt, &h.SignatureFailures1h)
	if err != nil {
		return AppHealth{}, fmt.Errorf("read app activity: %w", err)
	}
	return h, nil
}

// PageHealth reads the health of a Page of tenantID (on appID, or its
// only app of the tenant when appID is empty).
func (s *Service) PageHealth(ctx context.Context, tenantID, pageID, appID string) (PageHealth, error) {
	if s.client == nil {
		return PageHealth{}, ErrOff
	}
	p, err := s.tenants.GetPage(ctx, tenantID, pageID, appID)
	if err != nil {
		return PageHealth{}, err
	}
	hs, err := s.PagesHealth(ctx, tenantID, []tenant.Page{p})
	if err != nil {
		return PageHealth{}, err
	}
	return hs[0], nil
}

// PagesHealth reads the health of some Pages of tenantID (as the tenant
// service listed them), in their order: two queries whatever their
// number, for a page of the console.
func (s *Service) PagesHealth(ctx context.Context, tenantID string, pages []tenant.Page) ([]PageHealth, error) {
	if s.client == nil {
		return nil, ErrOff
	}
	out := make([]PageHealth, len(pages))
	index := make(map[[2]string]int, len(pages))
	var pageIDs, appIDs []string
	keys := make([][2]string, 0, len(pages))
	for i, p := range pages {
		out[i] = PageHealth{PageID: p.PageID, AppID: p.AppID, TenantID: p.TenantID, HasToken: p.HasAccessToken, Since: p.CreatedAt,
			SubscribedFields: []string{}, MissingFields: []string{}}
		index[[2]string{p.PageID, p.AppID}] = i
		pageIDs, appIDs = append(pageIDs, p.PageID), append(appIDs, p.AppID)
		keys = append(keys, [2]string{tenantID, p.PageID})
	}
	rows, err := s.db.Pool.Query(ctx, `SELECT `+pageHealthCols+` FROM page_health
		WHERE tenant_id = $1 AND (page_id, app_id) IN (SELECT * FROM unnest($2::text[], $3::text[]))`, tenantID, pageIDs, appIDs)
	if err != nil {
		return nil, fmt.Errorf("read page health: %w", err)
	}
	var r pageHealthRow
	_, err = pgx.ForEachRow(rows, r.dest(), func() error {
		if i, ok := index[[2]string{r.PageID, r.AppID}]; ok {
			h := &out[i]
			h.SubscribedFields, h.MissingFields, h.CheckedAt, h.Error = r.Fields, r.Missing, r.CheckedAt, deref(r.Error)
			h.Silent, h.Problem, h.Since = r.Silent, deref(r.Problem), r.Since
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read page health: %w", err)
	}
	now := s.cfg.Now().UTC()
	acts, err := s.readActivity(ctx, keys, now.Add(-8*24*time.Hour))
	if err != nil {
		return nil, err
	}
	for i := range out {
		h := &out[i]
		for _, d := range acts[[2]string{tenantID, h.PageID}] {
			if h.LastEventAt == nil || d.last.After(*h.LastEventAt) {
				last := d.last
				h.LastEventAt = &last
			}
			h.Events24h += d.eventsSince(now.Add(-24 * time.Hour))
		}
	}
	return out, nil
}

// dayActivity is one page_activity row.
type dayActivity struct {
	day         time.Time
	hours       []int32
	gaps        []int32
	first, last time.Time
}

// eventsSince counts the row's events in the hours that start at or after
// from's hour.
func (d *dayActivity) eventsSince(from time.Time) int {
	n := 0
	for h, c := range d.hours {
		if !d.day.Add(time.Duration(h+1) * time.Hour).After(from) {
			continue
		}
		n += int(c)
	}
	return n
}

// readActivity reads the page_activity rows of pages (tenant, page) from
// the day of from on (by the primary key).
func (s *Service) readActivity(ctx context.Context, pages [][2]string, from time.Time) (map[[2]string][]dayActivity, error) {
	var tenants, ids []string
	for _, p := range pages {
		tenants, ids = append(tenants, p[0]), append(ids, p[1])
	}
	rows, err := s.db.Pool.Query(ctx, `SELECT a.tenant_id::text, a.page_id, a.day, a.hours, a.gaps, a.first_at, a.last_at
		FROM unnest($2::uuid[], $3::text[]) AS u(tenant_id, page_id)
		JOIN page_activity a ON a.tenant_id = u.tenant_id AND a.page_id = u.page_id AND a.day >= $1::date`,
		from.UTC().Format(time.DateOnly), tenants, ids)
	if err != nil {
		return nil, fmt.Errorf("read page activity: %w", err)
	}
	out := map[[2]string][]dayActivity{}
	var (
		t, p string
		day  pgtype.Date
		d    dayActivity
	)
	_, err = pgx.ForEachRow(rows, []any{&t, &p, &day, &d.hours, &d.gaps, &d.first, &d.last}, func() error {
		d.day = day.Time.UTC()
		k := [2]string{t, p}
		out[k] = append(out[k], dayActivity{day: d.day, hours: slices.Clone(d.hours), gaps: slices.Clone(d.gaps), first: d.first.UTC(), last: d.last.UTC()})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read page activity: %w", err)
	}
	return out, nil
}

// quietActivity reads the activity of the Pages that could be silent at
// now: those whose last event in the past 7 days is older than
// SILENCE_AFTER. A Page that received since cannot be silent, and most
// do: the gap histograms of only the quiet few are read.
func (s *Service) quietActivity(ctx context.Context, now time.Time) (map[[2]string][]dayActivity, error) {
	rows, err := s.db.Pool.Query(ctx, `SELECT tenant_id::text, page_id FROM page_activity WHERE day >= $1::date
		GROUP BY tenant_id, page_id HAVING max(last_at) < $2 AND max(last_at) >= $3`,
		now.Add(-8*24*time.Hour).Format(time.DateOnly), now.Add(-s.cfg.SilenceAfter), now.Add(-7*24*time.Hour))
	if err != nil {
		return nil, fmt.Errorf("read quiet pages: %w", err)
	}
	var quiet [][2]string
	var t, p string
	if _, err := pgx.ForEachRow(rows, []any{&t, &p}, func() error { quiet = append(quiet, [2]string{t, p}); return nil }); err != nil {
		return nil, fmt.Errorf("read quiet pages: %w", err)
	}
	if len(quiet) == 0 {
		return map[[2]string][]dayActivity{}, nil
	}
	return s.readActivity(ctx, quiet, now.Add(-8*24*time.Hour))
}

// silence tells whether a Page whose activity is days is silent at now:
// it had events in the past 7 days, and none for longer than both
// silenceAfter and 20 times its median gap between events over those
// days. A Page with no gap yet (one event) has no baseline: not silent.
func silence(days []dayActivity, now time.Time, silenceAfter time.Duration) (silent bool, last time.Time) {
	var counts [event.GapBuckets]int64
	var total int64
	week := now.Add(-7 * 24 * time.Hour)
	for _, d := range days {
		if d.last.After(last) {
			last = d.last
		}
		if d.day.Add(24 * time.Hour).Before(week) {
			continue
		}
		for k, c := range d.gaps {
			if k < len(counts) {
				counts[k] += int64(c)
				total += int64(c)
			}
		}
	}
	if last.IsZero() || last.Before(week) || total == 0 {
		return false, last
	}
	var median time.Duration
	var seen int64
	for k, c := range counts {
		seen += c
		if 2*seen >= total {
			median = event.GapMid(k)
			break
		}
	}
	threshold := max(silenceAfter, 20*median)
	return now.Sub(last) > threshold, last
}

// healthEvent is the postgate.health event of a change of state.
type healthEvent struct {
	tenantID, appID, pageID string
	problem                 string // "" when healthy again
	detail                  string
	since                   time.Time
	// left is when the state this change ends began: with the subject,
	// it names the change (the event's dedup key).
	left time.Time
}

// healthBody is the standard body of a postgate.health event.
func healthBody(id [16]byte, h healthEvent, now time.Time) []byte {
	b := make([]byte, 0, 320)
	b = append(b, `{"id":"`...)
	b = event.AppendID(b, id)
	b = append(b, `","type":"`+event.TypeHealth+`","test":false,"tenant_id":`...)
	b = appendJSON(b, h.tenantID)
	b = append(b, `,"app_id":`...)
	b = appendJSON(b, h.appID)
	if h.pageID != "" {
		b = append(b, `,"page_id":`...)
		b = appendJSON(b, h.pageID)
	}
	b = append(b, `,"healthy":`...)
	if h.problem == "" {
		b = append(b, `true,"problem":null`...)
	} else {
		b = append(b, `false,"problem":`...)
		b = appendJSON(b, h.problem)
	}
	b = append(b, `,"detail":`...)
	b = appendJSON(b, h.detail)
	b = append(b, `,"since":"`...)
	b = h.since.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","received_at":"`...)
	b = now.UTC().AppendFormat(b, time.RFC3339Nano)
	return append(b, `"}`...)
}

// Problem is an app or Page whose health is not OK, for the console's
// overview.
type Problem struct {
	TenantID, AppID, PageID string // PageID empty for an app
	Problem                 string
	Since                   time.Time
}

// Problems lists the unhealthy apps and Pages of tenantID (every
// tenant's when empty), at most limit, the longest-standing first. It
// reads the stored checks: with GRAPH_API_URL off there are none.
func (s *Service) Problems(ctx context.Context, tenantID string, limit int) ([]Problem, error) {
	var tid *string
	if tenantID != "" {
		tid = &tenantID
	}
	rows, err := s.db.Pool.Query(ctx, `SELECT tenant_id::text, app_id, '' AS page_id, problem, since FROM app_health
			WHERE problem IS NOT NULL AND ($1::uuid IS NULL OR tenant_id = $1::uuid)
		UNION ALL
		SELECT tenant_id::text, app_id, page_id, problem, since FROM page_health
			WHERE problem IS NOT NULL AND ($1::uuid IS NULL OR tenant_id = $1::uuid)
		ORDER BY since LIMIT $2`, tid, limit)
	if err != nil {
		return nil, fmt.Errorf("read health problems: %w", err)
	}
	var out []Problem
	var p Problem
	_, err = pgx.ForEachRow(rows, []any{&p.TenantID, &p.AppID, &p.PageID, &p.Problem, &p.Since}, func() error {
		out = append(out, p)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read health problems: %w", err)
	}
	return out, nil
}
