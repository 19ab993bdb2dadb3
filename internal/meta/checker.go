package meta

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/postgate/postgate/internal/event"
	"github.com/postgate/postgate/internal/tenant"
)

// checkerLockKey is the Postgres advisory lock the checking replica holds
// ("postgate" in ASCII, the high bit cleared).
const checkerLockKey = 0x706f737467617465

// scanLag keeps the activity scan this far behind the clock: an event
// whose transaction commits later than that after its id was made is not
// counted (it is delivered all the same).
const scanLag = time.Minute

// maxScanHours bounds one run's activity scan: the first run reads the
// past 8 days; after a long outage the scan catches up over several runs.
const maxScanHours = 8*24 + 2

// Run checks every HEALTH_INTERVAL while this replica holds the checker's
// advisory lock, and tries to take it every interval while another
// replica does: when the holder dies, its session ends, the lock is free,
// and another replica takes over within one interval. Every replica
// refreshes the health gauges it exports. Run returns when ctx ends.
func (s *Service) Run(ctx context.Context) {
	if s.client == nil {
		return
	}
	go s.m.refreshLoop(ctx, s)
	var lead *pgxpool.Conn
	defer func() { s.release(lead) }()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-timer.C:
		}
		lead = s.lead(ctx, lead)
		if lead != nil {
			start := s.cfg.Now()
			if err := s.CheckOnce(ctx); err != nil && ctx.Err() == nil {
				s.log.Warn("meta health check failed", "err", err)
			}
			s.log.Debug("meta health check done", "took", s.cfg.Now().Sub(start))
		}
		timer.Reset(s.cfg.Interval)
	}
}

// Leading reports whether this replica holds the checker's lock.
func (s *Service) Leading() bool { return s.leading.Load() }

// Checks counts the check runs this replica has made.
func (s *Service) Checks() int64 { return s.checks.Load() }

// lead returns the connection that holds the checker's lock, taking it
// if it is free, or nil while another replica holds it. A held
// connection that no longer answers has lost the lock with its session.
func (s *Service) lead(ctx context.Context, held *pgxpool.Conn) *pgxpool.Conn {
	if held != nil {
		if err := held.Ping(ctx); err == nil {
			return held
		}
		s.log.Warn("meta health checker lost its database session; trying to lead again")
		held.Hijack().Close(context.Background()) //nolint:errcheck
		s.leading.Store(false)
	}
	conn, err := s.db.Pool.Acquire(ctx)
	if err != nil {
		return nil
	}
	var ok bool
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, int64(checkerLockKey)).Scan(&ok); err != nil || !ok {
		conn.Release()
		return nil
	}
	s.leading.Store(true)
	s.log.Info("meta health checker: this replica checks")
	return conn
}

// release gives the lock back (closing the session frees it for sure).
func (s *Service) release(conn *pgxpool.Conn) {
	if conn == nil {
		return
	}
	s.leading.Store(false)
	conn.Hijack().Close(context.Background()) //nolint:errcheck
}

// CheckOnce summarises new activity, checks every app and every Page
// with a token with Meta, computes silence, stores the results and emits
// a postgate.health event for every change between healthy and unhealthy.
// Run calls it on the leading replica; tests call it directly.
func (s *Service) CheckOnce(ctx context.Context) error {
	if s.client == nil {
		return ErrOff
	}
	s.checks.Add(1)
	now := s.cfg.Now().UTC()
	if err := s.summarize(ctx, now); err != nil {
		return err
	}
	apps, pages, err := s.tenants.HealthTargets(ctx)
	if err != nil {
		return err
	}
	types, err := s.store.EndpointTypes(ctx, nil)
	if err != nil {
		return err
	}
	prevApps, prevPages, err := s.readStates(ctx)
	if err != nil {
		return err
	}
	acts, err := s.readActivity(ctx, nil, now.Add(-8*24*time.Hour))
	if err != nil {
		return err
	}

	objects := map[string][]string{} // app -> objects its Pages use
	for _, p := range pages {
		if !slices.Contains(objects[p.Page.AppID], string(p.Page.Object)) {
			objects[p.Page.AppID] = append(objects[p.Page.AppID], string(p.Page.Object))
		}
	}
	appRows := make([]appHealthRow, len(apps))
	pageRows := make([]pageHealthRow, len(pages))
	sem := make(chan struct{}, s.cfg.Concurrency)
	var wg sync.WaitGroup
	for i := range apps {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			c := &apps[i]
			appRows[i] = s.checkApp(ctx, c, objects[c.App.AppID], wantedFields(types[c.App.TenantID]), now)
		})
	}
	for i := range pages {
		wg.Go(func() {
			sem <- struct{}{}
			defer func() { <-sem }()
			c := &pages[i]
			pageRows[i] = s.checkPage(ctx, c, wantedFields(types[c.Page.TenantID]), now)
		})
	}
	wg.Wait()
	if ctx.Err() != nil {
		return ctx.Err()
	}
	for i := range pageRows {
		r := &pageRows[i]
		r.Silent, _ = silence(acts[[2]string{r.TenantID, r.PageID}], now, s.cfg.SilenceAfter)
		if r.Silent && r.Problem == nil && r.Error == nil {
			r.Problem = nullable(ProblemSilent)
		}
	}

	var changes []healthEvent
	for i := range appRows {
		r := &appRows[i]
		prev, seen := prevApps[r.AppID]
		if r.Problem == nil && r.Error != nil && seen { // no answer: keep the state
			r.Problem = prev.Problem
		}
		r.Since = now
		if seen && prev.TenantID == r.TenantID && (prev.Problem == nil) == (r.Problem == nil) {
			r.Since = prev.Since
			continue
		}
		if seen && prev.TenantID == r.TenantID || r.Problem != nil {
			changes = append(changes, healthEvent{tenantID: r.TenantID, appID: r.AppID, problem: problemOf(r.Problem), detail: appDetail(r), since: now})
		}
	}
	for i := range pageRows {
		r := &pageRows[i]
		k := [2]string{r.PageID, r.AppID}
		prev, seen := prevPages[k]
		if r.Problem == nil && r.Error != nil && seen {
			r.Problem = prev.Problem
		}
		r.Since = now
		if seen && prev.TenantID == r.TenantID && (prev.Problem == nil) == (r.Problem == nil) {
			r.Since = prev.Since
			continue
		}
		if seen && prev.TenantID == r.TenantID || r.Problem != nil {
			changes = append(changes, healthEvent{tenantID: r.TenantID, appID: r.AppID, pageID: r.PageID, problem: problemOf(r.Problem), detail: pageDetail(r), since: now})
		}
	}
	if err := s.writeStates(ctx, appRows, pageRows); err != nil {
		return err
	}
	return s.emit(ctx, changes, now)
}

// checkApp asks Meta for c's subscriptions and judges the one of each
// object the app's Pages use (page when it has none).
func (s *Service) checkApp(ctx context.Context, c *tenant.Credentials, objects []string, want []string, now time.Time) appHealthRow {
	r := appHealthRow{AppID: c.App.AppID, TenantID: c.App.TenantID, CheckedAt: &now, Fields: []string{}, Missing: []string{}}
	if c.Err != nil {
		r.Error = nullable("the app's secret cannot be opened with SECRET_KEY: " + c.Err.Error())
		s.m.checkErrors.WithLabelValues("app").Inc()
		return r
	}
	subs, err := s.client.Subscriptions(ctx, c.App.AppID, c.AppSecret)
	var me *Error
	switch {
	case errors.As(err, &me) && (me.TokenInvalid() || me.Code == 101):
		r.Error, r.Problem = nullable(me.Error()), nullable(ProblemAppTokenInvalid)
		return r
	case err != nil:
		r.Error = nullable(err.Error())
		s.m.checkErrors.WithLabelValues("app").Inc()
		return r
	}
	if len(objects) == 0 {
		objects = []string{string(tenant.ObjectPage)}
	}
	slices.Sort(objects)
	callback := s.CallbackURL(c.App.AppID)
	for i, obj := range slices.Backward(objects) { // page before instagram
		var sub *Subscription
		for j := range subs {
			if subs[j].Object == obj {
				sub = &subs[j]
			}
		}
		problem := ""
		var fields, missing []string
		switch {
		case sub == nil:
			problem = ProblemNotSubscribed
		default:
			fields = slices.Clone(sub.Fields)
			for _, f := range want {
				if !slices.Contains(sub.Fields, f) {
					missing = append(missing, f)
				}
			}
			switch {
			case !sub.Active:
				problem = ProblemInactive
			case sub.CallbackURL != callback:
				problem = ProblemCallbackMismatch
			case len(missing) > 0:
				problem = ProblemMissingFields
			}
		}
		if i == len(objects)-1 || (problem != "" && r.Problem == nil) {
			if sub != nil {
				r.Active, r.CallbackURL, r.CallbackURLMatches = sub.Active, sub.CallbackURL, sub.CallbackURL == callback
			} else {
				r.Active, r.CallbackURL, r.CallbackURLMatches = false, "", false
			}
			r.Fields, r.Missing = orEmpty(fields), orEmpty(missing)
		}
		if problem != "" && r.Problem == nil {
			r.Problem = nullable(problem)
		}
	}
	return r
}

// checkPage asks Meta which apps are subscribed to c's Page (with the
// Page's token), when it has one.
func (s *Service) checkPage(ctx context.Context, c *tenant.Credentials, want []string, now time.Time) pageHealthRow {
	r := pageHealthRow{PageID: c.Page.PageID, AppID: c.Page.AppID, TenantID: c.Page.TenantID, Fields: []string{}, Missing: []string{}}
	switch {
	case c.Err != nil:
		r.CheckedAt = &now
		r.Error = nullable("the Page's token or app secret cannot be opened with SECRET_KEY: " + c.Err.Error())
		s.m.checkErrors.WithLabelValues("page").Inc()
		return r
	case c.PageToken == "":
		r.CheckedAt = &now
		return r // nothing to ask Meta: silence only
	}
	r.CheckedAt = &now
	apps, err := s.client.PageSubscriptions(ctx, c.Page.PageID, c.PageToken, c.AppSecret)
	var me *Error
	switch {
	case errors.As(err, &me) && !me.RateLimited() && me.Status < 500:
		// 190: expired, revoked, password changed; 200/10: permission
		// lost; 100: the token is another app's (the proof fails).
		r.Error, r.Problem = nullable(me.Error()), nullable(ProblemPageTokenInvalid)
		return r
	case err != nil:
		r.Error = nullable(err.Error())
		s.m.checkErrors.WithLabelValues("page").Inc()
		return r
	}
	i := slices.IndexFunc(apps, func(a SubscribedApp) bool { return a.ID == c.Page.AppID })
	if i < 0 {
		r.Missing = slices.Clone(want)
		r.Problem = nullable(ProblemAppNotSubscribed)
		return r
	}
	r.Fields = orEmpty(slices.Clone(apps[i].SubscribedFields))
	for _, f := range want {
		if !slices.Contains(r.Fields, f) {
			r.Missing = append(r.Missing, f)
		}
	}
	if len(r.Missing) > 0 {
		r.Problem = nullable(ProblemMissingFields)
	}
	return r
}

func orEmpty(v []string) []string {
	if v == nil {
		return []string{}
	}
	return v
}

func appDetail(r *appHealthRow) string {
	switch problemOf(r.Problem) {
	case "":
		return "the app's webhook subscription is active, points at the gateway and has every field"
	case ProblemMissingFields:
		return fmt.Sprintf("the app's subscription lacks %v", r.Missing)
	case ProblemCallbackMismatch:
		return "the app's callback URL is not the gateway's: " + r.CallbackURL
	}
	if r.Error != nil {
		return *r.Error
	}
	return problemOf(r.Problem)
}

func pageDetail(r *pageHealthRow) string {
	switch problemOf(r.Problem) {
	case "":
		return "the Page is subscribed with every field and receiving"
	case ProblemMissingFields:
		return fmt.Sprintf("the Page's subscription lacks %v", r.Missing)
	case ProblemSilent:
		return "no event from the Page for longer than its usual gaps allow"
	}
	if r.Error != nil {
		return *r.Error
	}
	return problemOf(r.Problem)
}

// readStates reads every stored health row.
func (s *Service) readStates(ctx context.Context) (map[string]appHealthRow, map[[2]string]pageHealthRow, error) {
	apps := map[string]appHealthRow{}
	var a appHealthRow
	rows, err := s.db.Pool.Query(ctx, `SELECT `+appHealthCols+` FROM app_health`)
	if err != nil {
		return nil, nil, fmt.Errorf("read app health: %w", err)
	}
	if _, err := pgx.ForEachRow(rows, a.dest(), func() error { apps[a.AppID] = a; return nil }); err != nil {
		return nil, nil, fmt.Errorf("read app health: %w", err)
	}
	pages := map[[2]string]pageHealthRow{}
	var p pageHealthRow
	rows, err = s.db.Pool.Query(ctx, `SELECT `+pageHealthCols+` FROM page_health`)
	if err != nil {
		return nil, nil, fmt.Errorf("read page health: %w", err)
	}
	if _, err := pgx.ForEachRow(rows, p.dest(), func() error { pages[[2]string{p.PageID, p.AppID}] = p; return nil }); err != nil {
		return nil, nil, fmt.Errorf("read page health: %w", err)
	}
	return apps, pages, nil
}

// writeStates stores the checks, in one transaction: a row of an app or
// Page deleted meanwhile is skipped (the insert selects it from its
// table), and every row not checked now (deleted apps' and Pages') is
// gone by the foreign keys' cascade already.
func (s *Service) writeStates(ctx context.Context, apps []appHealthRow, pages []pageHealthRow) error {
	b := &pgx.Batch{}
	for _, r := range apps {
		b.Queue(`INSERT INTO app_health (app_id, tenant_id, active, callback_url, callback_url_matches, fields, missing_fields, checked_at, error, problem, since)
			SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11 FROM apps WHERE app_id = $1 AND tenant_id = $2
			ON CONFLICT (app_id) DO UPDATE SET tenant_id = EXCLUDED.tenant_id, active = EXCLUDED.active, callback_url = EXCLUDED.callback_url,
				callback_url_matches = EXCLUDED.callback_url_matches, fields = EXCLUDED.fields, missing_fields = EXCLUDED.missing_fields,
				checked_at = EXCLUDED.checked_at, error = EXCLUDED.error, problem = EXCLUDED.problem, since = EXCLUDED.since`,
			r.AppID, r.TenantID, r.Active, r.CallbackURL, r.CallbackURLMatches, r.Fields, r.Missing, r.CheckedAt, r.Error, r.Problem, r.Since)
	}
	for _, r := range pages {
		b.Queue(`INSERT INTO page_health (page_id, app_id, tenant_id, subscribed_fields, missing_fields, checked_at, error, silent, problem, since)
			SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10 FROM pages WHERE page_id = $1 AND app_id = $2 AND tenant_id = $3
			ON CONFLICT (page_id, app_id) DO UPDATE SET tenant_id = EXCLUDED.tenant_id, subscribed_fields = EXCLUDED.subscribed_fields,
				missing_fields = EXCLUDED.missing_fields, checked_at = EXCLUDED.checked_at, error = EXCLUDED.error,
				silent = EXCLUDED.silent, problem = EXCLUDED.problem, since = EXCLUDED.since`,
			r.PageID, r.AppID, r.TenantID, r.Fields, r.Missing, r.CheckedAt, r.Error, r.Silent, r.Problem, r.Since)
	}
	if b.Len() == 0 {
		return nil
	}
	if err := pgx.BeginFunc(ctx, s.db.Pool, func(tx pgx.Tx) error { return tx.SendBatch(ctx, b).Close() }); err != nil {
		return fmt.Errorf("store health checks: %w", err)
	}
	return nil
}

// emit stores one postgate.health event per change of state; the
// endpoints whose events name it get it like any event.
func (s *Service) emit(ctx context.Context, changes []healthEvent, now time.Time) error {
	if len(changes) == 0 {
		return nil
	}
	var b event.Batch
	for _, h := range changes {
		id := uuid.Must(uuid.NewV7())
		subject := "app:" + h.appID
		if h.pageID != "" {
			subject = "page:" + h.pageID + ":" + h.appID
		}
		b.Add(&event.New{
			ID: id, TenantID: h.tenantID, PageID: h.pageID, AppID: h.appID,
			DedupKey: "h:" + subject + ":" + h.since.UTC().Format(time.RFC3339Nano),
			Type:     event.TypeHealth, ReceivedAt: now, Body: healthBody(id, h, now),
		})
		s.log.Info("meta health changed", "tenant_id", h.tenantID, "app_id", h.appID, "page_id", h.pageID, "problem", h.problem)
	}
	if err := s.events.Insert(ctx, &b, func([16]byte) {}); err != nil {
		return fmt.Errorf("store postgate.health events: %w", err)
	}
	if err := s.events.Wake(ctx); err != nil {
		s.log.Warn("wake delivery workers", "err", err)
	}
	return nil
}

func appendJSON(b []byte, s string) []byte {
	j, _ := json.Marshal(s)
	return append(b, j...)
}

// leadership state of the checker.
type leadership struct {
	leading atomic.Bool
	checks  atomic.Int64
}
