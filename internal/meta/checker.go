package meta

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
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
	if err := conn.QueryRow(ctx, `SELECT pg_try_advisory_lock($1)`, int64(checkerLockKey)).Scan(&ok); err != nil {
		// The server may have granted the lock before the answer was
		// lost: never hand this session back to the pool.
		conn.Hijack().Close(context.Background()) //nolint:errcheck
		return nil
	}
	if !ok {
		conn.Release()
		return nil
	}
	// A holder whose machine vanishes without closing its connection
	// holds the lock until the server notices: make that a minute, not
	// the kernel's two hours of TCP keepalive.
	if _, err := conn.Exec(ctx, `SET tcp_keepalives_idle = 30; SET tcp_keepalives_interval = 10; SET tcp_keepalives_count = 3`); err != nil {
		s.log.Warn("meta health checker: set keepalives on the lock session", "err", err)
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
	// Activity is known up to scannedTo: silence is measured from there,
	// and only once the scan has caught up (after a long pause it folds
	// days over several runs; until then silence keeps its last value).
	scannedTo, caughtUp, err := s.summarize(ctx, now)
	if err != nil {
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
	var acts map[[2]string][]dayActivity
	if caughtUp {
		if acts, err = s.quietActivity(ctx, scannedTo); err != nil {
			return err
		}
	}

	objects := map[string][]string{} // app -> objects its Pages use
	for _, p := range pages {
		if !slices.Contains(objects[p.Page.AppID], string(p.Page.Object)) {
			objects[p.Page.AppID] = append(objects[p.Page.AppID], string(p.Page.Object))
		}
	}
	appRows := make([]appHealthRow, len(apps))
	pageRows := make([]pageHealthRow, len(pages))
	// A fixed pool of callers, not a goroutine per app and Page.
	work := make(chan int)
	var wg sync.WaitGroup
	for range s.cfg.Concurrency {
		wg.Go(func() {
			for i := range work {
				if i < len(apps) {
					c := &apps[i]
					appRows[i] = s.checkApp(ctx, c, objects[c.App.AppID], wantedFields(types[c.App.TenantID]), now)
					continue
				}
				c := &pages[i-len(apps)]
				pageRows[i-len(apps)] = s.checkPage(ctx, c, wantedFields(types[c.Page.TenantID]), now)
			}
		})
	}
	for i := range len(apps) + len(pages) {
		if ctx.Err() != nil {
			break
		}
		work <- i
	}
	close(work)
	wg.Wait()
	if ctx.Err() != nil {
		return ctx.Err()
	}

	var changes []healthEvent
	for i := range appRows {
		r := &appRows[i]
		prev, seen := prevApps[r.AppID]
		seen = seen && prev.TenantID == r.TenantID
		if r.Problem == nil && r.Error != nil && seen {
			// No answer from Meta: the state and what it showed stay.
			r.Problem, r.Active, r.CallbackURL, r.CallbackURLMatches = prev.Problem, prev.Active, prev.CallbackURL, prev.CallbackURLMatches
			r.Fields, r.Missing = prev.Fields, prev.Missing
		}
		var announce bool
		r.Since, r.Announced, announce = transition(seen, prev.Problem, prev.Since, prev.Announced, r.Problem, now)
		if announce {
			changes = append(changes, healthEvent{tenantID: r.TenantID, appID: r.AppID, problem: deref(r.Problem),
				detail: appDetail(r), since: now, left: prev.Since})
		}
	}
	for i := range pageRows {
		r := &pageRows[i]
		prev, seen := prevPages[[2]string{r.PageID, r.AppID}]
		seen = seen && prev.TenantID == r.TenantID
		if r.Problem == nil && r.Error != nil && seen {
			// No answer from Meta: the subscription's state stays; the
			// silence is the gateway's own and is computed again below.
			if deref(prev.Problem) != ProblemSilent {
				r.Problem = prev.Problem
			}
			r.Fields, r.Missing = prev.Fields, prev.Missing
		}
		if caughtUp {
			r.Silent, _ = silence(acts[[2]string{r.TenantID, r.PageID}], scannedTo, s.cfg.SilenceAfter)
		} else {
			r.Silent = seen && prev.Silent
		}
		if r.Silent && r.Problem == nil {
			r.Problem = nullable(ProblemSilent)
		}
		var announce bool
		r.Since, r.Announced, announce = transition(seen, prev.Problem, prev.Since, prev.Announced, r.Problem, now)
		if announce {
			changes = append(changes, healthEvent{tenantID: r.TenantID, appID: r.AppID, pageID: r.PageID, problem: deref(r.Problem),
				detail: pageDetail(r), since: now, left: prev.Since})
		}
	}
	return s.save(ctx, appRows, pageRows, changes, now)
}

// transition is what a check's state makes of the stored one: when the
// state began, whether it is announced, and whether to announce it now
// (a postgate.health event). Only a change between healthy and unhealthy
// is announced: not the first state of a new app or Page (no change: the
// health route and the metrics show it), nor the end of a problem that
// was never announced. A problem that changes into another stays the
// same unhealthy state.
func transition(seen bool, prevProblem *string, prevSince time.Time, prevAnnounced bool, problem *string, now time.Time) (since time.Time, announced, announce bool) {
	switch {
	case !seen:
		return now, false, false
	case (prevProblem == nil) == (problem == nil):
		return prevSince, prevAnnounced, false
	case problem != nil: // healthy -> unhealthy
		return now, true, true
	default: // unhealthy -> healthy
		return now, prevAnnounced, prevAnnounced
	}
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
	case errors.As(err, &me) && (me.TokenInvalid() || me.Code == 10 || me.Code == 200 || me.Code == 210 || me.Code == 100):
		// 190/102: expired, revoked, password changed; 10/200/210:
		// permission or Page task lost; 100: the token is another
		// app's (its appsecret_proof fails). Anything else is a check
		// that could not be made.
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
	switch deref(r.Problem) {
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
	return deref(r.Problem)
}

func pageDetail(r *pageHealthRow) string {
	switch deref(r.Problem) {
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
	return deref(r.Problem)
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

// save writes the checks and their postgate.health events in one
// transaction, a statement per table whatever the number of apps and
// Pages: a row of an app or Page deleted meanwhile is skipped (the
// insert joins its table) and so is its event; the rows of apps and
// Pages deleted before are gone by the foreign keys' cascade. Field
// lists travel comma-joined (Meta's field names have no comma).
func (s *Service) save(ctx context.Context, apps []appHealthRow, pages []pageHealthRow, changes []healthEvent, now time.Time) error {
	var a struct {
		ids, tenants, callbacks, fields, missing, errs, problems []*string
		active, matches, announced                               []bool
		checked, since                                           []*time.Time
	}
	for i := range apps {
		r := &apps[i]
		a.ids = append(a.ids, &r.AppID)
		a.tenants = append(a.tenants, &r.TenantID)
		a.callbacks = append(a.callbacks, &r.CallbackURL)
		a.fields = append(a.fields, joined(r.Fields))
		a.missing = append(a.missing, joined(r.Missing))
		a.errs, a.problems = append(a.errs, r.Error), append(a.problems, r.Problem)
		a.active, a.matches = append(a.active, r.Active), append(a.matches, r.CallbackURLMatches)
		a.checked, a.since = append(a.checked, r.CheckedAt), append(a.since, &r.Since)
		a.announced = append(a.announced, r.Announced)
	}
	var p struct {
		ids, apps, tenants, fields, missing, errs, problems []*string
		silent, announced                                   []bool
		checked, since                                      []*time.Time
	}
	for i := range pages {
		r := &pages[i]
		p.ids, p.apps, p.tenants = append(p.ids, &r.PageID), append(p.apps, &r.AppID), append(p.tenants, &r.TenantID)
		p.fields, p.missing = append(p.fields, joined(r.Fields)), append(p.missing, joined(r.Missing))
		p.errs, p.problems, p.silent = append(p.errs, r.Error), append(p.problems, r.Problem), append(p.silent, r.Silent)
		p.checked, p.since = append(p.checked, r.CheckedAt), append(p.since, &r.Since)
		p.announced = append(p.announced, r.Announced)
	}
	written := map[string]bool{} // "app:<id>", "page:<id>:<app>"
	err := pgx.BeginFunc(ctx, s.db.Pool, func(tx pgx.Tx) error {
		if len(apps) > 0 {
			rows, err := tx.Query(ctx, `INSERT INTO app_health (app_id, tenant_id, active, callback_url, callback_url_matches, fields, missing_fields, checked_at, error, problem, since, announced)
				SELECT u.app_id, u.tenant_id, u.active, u.callback_url, u.matches, string_to_array(u.fields, ','), string_to_array(u.missing, ','), u.checked_at, u.error, u.problem, u.since, u.announced
				FROM unnest($1::text[], $2::uuid[], $3::bool[], $4::text[], $5::bool[], $6::text[], $7::text[], $8::timestamptz[], $9::text[], $10::text[], $11::timestamptz[], $12::bool[])
					AS u(app_id, tenant_id, active, callback_url, matches, fields, missing, checked_at, error, problem, since, announced)
				JOIN apps ON apps.app_id = u.app_id AND apps.tenant_id = u.tenant_id
				ON CONFLICT (app_id) DO UPDATE SET tenant_id = EXCLUDED.tenant_id, active = EXCLUDED.active, callback_url = EXCLUDED.callback_url,
					callback_url_matches = EXCLUDED.callback_url_matches, fields = EXCLUDED.fields, missing_fields = EXCLUDED.missing_fields,
					checked_at = EXCLUDED.checked_at, error = EXCLUDED.error, problem = EXCLUDED.problem, since = EXCLUDED.since,
					announced = EXCLUDED.announced
				RETURNING app_id`,
				a.ids, a.tenants, a.active, a.callbacks, a.matches, a.fields, a.missing, a.checked, a.errs, a.problems, a.since, a.announced)
			if err := collect(rows, err, func(id string) { written["app:"+id] = true }); err != nil {
				return err
			}
		}
		if len(pages) > 0 {
			rows, err := tx.Query(ctx, `INSERT INTO page_health (page_id, app_id, tenant_id, subscribed_fields, missing_fields, checked_at, error, silent, problem, since, announced)
				SELECT u.page_id, u.app_id, u.tenant_id, string_to_array(u.fields, ','), string_to_array(u.missing, ','), u.checked_at, u.error, u.silent, u.problem, u.since, u.announced
				FROM unnest($1::text[], $2::text[], $3::uuid[], $4::text[], $5::text[], $6::timestamptz[], $7::text[], $8::bool[], $9::text[], $10::timestamptz[], $11::bool[])
					AS u(page_id, app_id, tenant_id, fields, missing, checked_at, error, silent, problem, since, announced)
				JOIN pages ON pages.page_id = u.page_id AND pages.app_id = u.app_id AND pages.tenant_id = u.tenant_id
				ON CONFLICT (page_id, app_id) DO UPDATE SET tenant_id = EXCLUDED.tenant_id, subscribed_fields = EXCLUDED.subscribed_fields,
					missing_fields = EXCLUDED.missing_fields, checked_at = EXCLUDED.checked_at, error = EXCLUDED.error,
					silent = EXCLUDED.silent, problem = EXCLUDED.problem, since = EXCLUDED.since, announced = EXCLUDED.announced
				RETURNING page_id || ':' || app_id`,
				p.ids, p.apps, p.tenants, p.fields, p.missing, p.checked, p.errs, p.silent, p.problems, p.since, p.announced)
			if err := collect(rows, err, func(id string) { written["page:"+id] = true }); err != nil {
				return err
			}
		}
		return s.emit(ctx, tx, changes, written, now)
	})
	if err != nil {
		return fmt.Errorf("store health checks: %w", err)
	}
	return nil
}

// joined is a field list comma-joined, for writeStates.
func joined(fields []string) *string {
	s := strings.Join(fields, ",")
	return &s
}

// collect calls f with each row's one text column.
func collect(rows pgx.Rows, err error, f func(string)) error {
	if err != nil {
		return err
	}
	var v string
	_, err = pgx.ForEachRow(rows, []any{&v}, func() error { f(v); return nil })
	return err
}

// emit stores, in tx, one postgate.health event per change of state of
// a row that was written (its app or Page still exists); the endpoints
// whose events name it get it like any event. The dedup key names the
// state left (its since), so two replicas that both saw the change (a
// takeover in the middle of a run) store one event.
func (s *Service) emit(ctx context.Context, tx pgx.Tx, changes []healthEvent, written map[string]bool, now time.Time) error {
	var b event.Batch
	for _, h := range changes {
		subject := "app:" + h.appID
		if h.pageID != "" {
			subject = "page:" + h.pageID + ":" + h.appID
		}
		if !written[subject] {
			continue
		}
		id := uuid.Must(uuid.NewV7())
		b.Add(&event.New{
			ID: id, TenantID: h.tenantID, PageID: h.pageID, AppID: h.appID,
			DedupKey: "h:" + subject + ":" + h.left.UTC().Format(time.RFC3339Nano),
			Type:     event.TypeHealth, ReceivedAt: now, Body: healthBody(id, h, now),
		})
		s.log.Info("meta health changed", "tenant_id", h.tenantID, "app_id", h.appID, "page_id", h.pageID, "problem", h.problem)
	}
	if b.Len() == 0 {
		return nil
	}
	if err := s.events.InsertTx(ctx, tx, &b, func([16]byte) {}); err != nil {
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
