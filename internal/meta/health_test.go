package meta_test

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/postgate/postgate/internal/database"
	"github.com/postgate/postgate/internal/event"
	"github.com/postgate/postgate/internal/meta"
	"github.com/postgate/postgate/internal/meta/metatest"
	"github.com/postgate/postgate/internal/tenant"
	"github.com/postgate/postgate/internal/testenv"
)

const (
	hApp        = "4100"
	hSecret     = "meta-test-app-secret-0123456789"
	hPage       = "5100"
	hToken      = "EAAPageTokenForTheHealthTests0123456789"
	hOtherPage  = "5101"
	hOtherToken = "EAAOtherPageToken987654321"
)

// syncBuffer collects log lines (testenv.Buffer).
type syncBuffer = testenv.Buffer

// clock is a settable time.
type clock struct{ ns atomic.Int64 }

func (c *clock) Now() time.Time          { return time.Unix(0, c.ns.Load()).UTC() }
func (c *clock) Set(t time.Time)         { c.ns.Store(t.UnixNano()) }
func (c *clock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// env is a gateway's Meta side on real Postgres, against the fake Graph
// API: a tenant with an endpoint that takes postgate.health, an app and a
// Page with a token, and a stand-in for the gateway's verification GET.
type env struct {
	db       *database.DB
	tenants  *tenant.Service
	store    *tenant.Store
	events   *event.Store
	graph    *metatest.Graph
	svc      *meta.Service
	reg      *prometheus.Registry
	logs     *syncBuffer
	clock    *clock
	tenantID string
	gateway  *httptest.Server
}

func newEnv(t testing.TB) *env {
	t.Helper()
	ctx := context.Background()
	e := &env{db: testenv.Postgres(t), graph: metatest.New(t), logs: &syncBuffer{}, clock: &clock{}, reg: prometheus.NewRegistry()}
	e.clock.Set(time.Now().UTC())
	keys := testenv.Keyring(t)
	e.store = tenant.NewStore(e.db)
	var err error
	e.gateway = httptest.NewServer(http.HandlerFunc(e.verify))
	t.Cleanup(e.gateway.Close)
	e.tenants, err = tenant.NewService(tenant.Config{PublicURL: e.gateway.URL, AllowPrivateCallbacks: true}, e.store, keys, nil,
		testenv.Resolver{"hooks.example.com": {"93.184.215.14"}, "ops.example.com": {"93.184.215.15"}}, nil)
	if err != nil {
		t.Fatal(err)
	}
	e.events = event.NewStore(e.db)
	e.svc = e.newService(t, e.reg)
	e.tenants.SetProver(e.svc)
	e.graph.AddApp(hApp, hSecret, "Acme Bot")
	e.graph.AddPageToken(hPage, hApp, hToken)
	e.graph.AddPageToken(hOtherPage, hApp, hOtherToken)

	ten, _, err := e.tenants.CreateTenant(ctx, tenant.TenantInput{Name: "acme", CallbackURL: "https://hooks.example.com/bot"})
	if err != nil {
		t.Fatal(err)
	}
	e.tenantID = ten.ID
	if _, _, err := e.tenants.CreateEndpoint(ctx, ten.ID, tenant.EndpointInput{URL: "https://ops.example.com/health",
		Events: &[]string{event.TypeHealth}}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.tenants.RegisterApp(ctx, ten.ID, tenant.AppInput{AppID: hApp, AppSecret: hSecret}); err != nil {
		t.Fatal(err)
	}
	for page, token := range map[string]string{hPage: hToken, hOtherPage: hOtherToken} {
		if _, err := e.tenants.RegisterPage(ctx, ten.ID, tenant.PageInput{PageID: page, AppID: hApp, AccessToken: token}); err != nil {
			t.Fatal(err)
		}
	}
	return e
}

func (e *env) newService(t testing.TB, reg prometheus.Registerer) *meta.Service {
	t.Helper()
	client, err := meta.NewClient(meta.ClientConfig{BaseURL: e.graph.URL, Version: "v24.0", Backoff: func(int) time.Duration { return time.Millisecond }})
	if err != nil {
		t.Fatal(err)
	}
	log := slog.New(slog.NewJSONHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	return meta.NewService(meta.Config{PublicURL: e.gateway.URL, Interval: 200 * time.Millisecond, SilenceAfter: time.Hour, Now: e.clock.Now},
		client, e.tenants, e.store, e.events, e.db, log, reg)
}

// verify answers Meta's verification GET as the gateway does: the
// challenge when the mode is subscribe and the token is the app's.
func (e *env) verify(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	a, err := e.tenants.AppCredentials(r.Context(), e.tenantID, strings.TrimPrefix(r.URL.Path, "/webhook/"))
	if err != nil || q.Get("hub.mode") != "subscribe" || q.Get("hub.verify_token") != a.App.VerifyToken {
		http.Error(w, "forbidden", http.StatusForbidden)
		return
	}
	_, _ = w.Write([]byte(q.Get("hub.challenge")))
}

// subscribeAll makes everything healthy: the app subscribed with the
// gateway's callback, both Pages subscribed with every field.
func (e *env) subscribeAll(t *testing.T) {
	t.Helper()
	ctx := context.Background()
	if _, err := e.svc.SubscribeApp(ctx, e.tenantID, hApp, "", nil); err != nil {
		t.Fatalf("subscribe app: %v", err)
	}
	for _, p := range []string{hPage, hOtherPage} {
		if _, err := e.svc.SubscribePage(ctx, e.tenantID, p, "", nil); err != nil {
			t.Fatalf("subscribe page %s: %v", p, err)
		}
	}
}

func (e *env) check(t *testing.T) {
	t.Helper()
	if err := e.svc.CheckOnce(context.Background()); err != nil {
		t.Fatalf("check: %v", err)
	}
}

// healthEvents lists the bodies of the tenant's postgate.health events in
// arrival order.
func (e *env) healthEvents(t *testing.T) []map[string]any {
	t.Helper()
	rows, err := e.db.Pool.Query(context.Background(), `SELECT body FROM events WHERE tenant_id = $1 AND type = $2 ORDER BY id`, e.tenantID, event.TypeHealth)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	var out []map[string]any
	for rows.Next() {
		var b []byte
		if err := rows.Scan(&b); err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("health body is not JSON: %v: %s", err, b)
		}
		out = append(out, m)
	}
	return out
}

// TestAppHealthTransitions: a healthy subscription that Meta marks
// inactive, that loses messaging_postbacks, or that points elsewhere
// shows up in the health read and the gauge at the next check, with
// exactly one postgate.health event each way, none while a state holds.
func TestAppHealthTransitions(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.subscribeAll(t)
	e.check(t)
	h, err := e.svc.AppHealth(ctx, e.tenantID, hApp)
	if err != nil {
		t.Fatal(err)
	}
	if h.Problem != "" || !h.Active || !h.CallbackURLMatches || h.CheckedAt == nil || !slices.Contains(h.Fields, "messaging_postbacks") {
		t.Fatalf("after subscribing: got %+v, want healthy", h)
	}
	if got := e.healthEvents(t); len(got) != 0 {
		t.Fatalf("healthy from the start: got %d health events, want none", len(got))
	}
	// (The checks before subscribing saw problems; a new app's first
	// state is not announced, nor the end of a problem never announced:
	// TestFirstStateNotAnnounced.)

	good, _ := e.graph.Subscription(hApp, "page")
	breaks := []struct {
		name    string
		change  func(*meta.Subscription)
		problem string
	}{
		{"inactive", func(s *meta.Subscription) { s.Active = false }, meta.ProblemInactive},
		{"field dropped", func(s *meta.Subscription) {
			s.Fields = slices.DeleteFunc(slices.Clone(s.Fields), func(f string) bool { return f == "messaging_postbacks" })
		}, meta.ProblemMissingFields},
		{"callback elsewhere", func(s *meta.Subscription) { s.CallbackURL = "https://elsewhere.example.com/hook" }, meta.ProblemCallbackMismatch},
	}
	for i, b := range breaks {
		broken := good
		broken.Fields = slices.Clone(good.Fields)
		b.change(&broken)
		e.graph.SetSubscription(hApp, broken)
		e.clock.Advance(time.Minute)
		e.check(t)
		e.check(t) // the state holds: no second event
		h, err := e.svc.AppHealth(ctx, e.tenantID, hApp)
		if err != nil {
			t.Fatal(err)
		}
		if h.Problem != b.problem {
			t.Errorf("%s: problem %q, want %q (%+v)", b.name, h.Problem, b.problem, h)
		}
		if err := e.svc.Refresh(ctx); err != nil {
			t.Fatal(err)
		}
		if v := testutil.ToFloat64(gauge(t, e.reg, "postgate_meta_subscription_active", hApp)); v != 0 {
			t.Errorf("%s: postgate_meta_subscription_active = %v, want 0", b.name, v)
		}
		evs := e.healthEvents(t)
		if len(evs) != 2*i+1 {
			t.Fatalf("%s: %d health events, want %d", b.name, len(evs), 2*i+1)
		}
		if last := evs[len(evs)-1]; last["problem"] != b.problem || last["app_id"] != hApp || last["type"] != event.TypeHealth || last["healthy"] != false {
			t.Errorf("%s: event %v", b.name, last)
		}

		e.graph.SetSubscription(hApp, good)
		e.clock.Advance(time.Minute)
		e.check(t)
		e.check(t)
		if h, _ := e.svc.AppHealth(ctx, e.tenantID, hApp); h.Problem != "" {
			t.Errorf("%s repaired: problem %q, want none", b.name, h.Problem)
		}
		evs = e.healthEvents(t)
		if len(evs) != 2*i+2 {
			t.Fatalf("%s repaired: %d health events, want %d", b.name, len(evs), 2*i+2)
		}
		if last := evs[len(evs)-1]; last["problem"] != nil || last["healthy"] != true {
			t.Errorf("%s repaired: event %v, want problem null", b.name, last)
		}
	}
	if err := e.svc.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if v := testutil.ToFloat64(gauge(t, e.reg, "postgate_meta_subscription_active", hApp)); v != 1 {
		t.Errorf("postgate_meta_subscription_active = %v, want 1", v)
	}

	// The health events reach the endpoint that names postgate.health,
	// and only it: one delivery each.
	var deliveries, toDefault int
	if err := e.db.Pool.QueryRow(ctx, `SELECT count(*), count(*) FILTER (WHERE ep.is_default) FROM deliveries d
		JOIN endpoints ep ON ep.id = d.endpoint_id JOIN events ev ON ev.id = d.event_id AND ev.tenant_id = d.tenant_id
		WHERE ev.type = $1`, event.TypeHealth).Scan(&deliveries, &toDefault); err != nil {
		t.Fatal(err)
	}
	if deliveries != 6 || toDefault != 0 {
		t.Errorf("health deliveries: %d (%d to the default endpoint), want 6, none to the default", deliveries, toDefault)
	}
}

// TestFirstStateNotAnnounced: registering an app and a Page and then
// subscribing them is onboarding, not an incident: the checks that see
// them not yet subscribed, then subscribed, announce nothing; the first
// real breakage after that is announced.
func TestFirstStateNotAnnounced(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.check(t) // registered, not subscribed
	if h, _ := e.svc.AppHealth(ctx, e.tenantID, hApp); h.Problem != meta.ProblemNotSubscribed {
		t.Fatalf("app registered, not subscribed: problem %q, want not_subscribed", h.Problem)
	}
	if h, _ := e.svc.PageHealth(ctx, e.tenantID, hPage, ""); h.Problem != meta.ProblemAppNotSubscribed {
		t.Fatalf("Page registered, not subscribed: problem %q, want app_not_subscribed", h.Problem)
	}
	e.subscribeAll(t)
	e.clock.Advance(time.Minute)
	e.check(t)
	if h, _ := e.svc.AppHealth(ctx, e.tenantID, hApp); h.Problem != "" {
		t.Fatalf("after subscribing: problem %q", h.Problem)
	}
	if n := len(e.healthEvents(t)); n != 0 {
		t.Fatalf("onboarding made %d health events, want none", n)
	}
	e.graph.SetPageFields(hPage, hApp, nil)
	e.clock.Advance(time.Minute)
	e.check(t)
	if evs := e.healthEvents(t); len(evs) != 1 || evs[0]["problem"] != meta.ProblemAppNotSubscribed {
		t.Fatalf("health events %v, want one: app_not_subscribed", evs)
	}
}

// TestCheckErrorsKeepState: Meta rate limiting or down is a check error,
// counted, not a change of health.
func TestCheckErrorsKeepState(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.subscribeAll(t)
	e.check(t)
	e.graph.FailNext(1000, 4, "")
	e.check(t)
	h, err := e.svc.AppHealth(ctx, e.tenantID, hApp)
	if err != nil {
		t.Fatal(err)
	}
	if h.Problem != "" || h.Error == "" {
		t.Errorf("Meta rate limiting: got problem %q error %q, want no problem and the error", h.Problem, h.Error)
	}
	if !h.Active || !h.CallbackURLMatches || !slices.Contains(h.Fields, "messaging_postbacks") {
		t.Errorf("Meta rate limiting: %+v, want what the last answer showed kept", h)
	}
	if n := len(e.healthEvents(t)); n != 0 {
		t.Errorf("check errors made %d health events, want none", n)
	}
	errs := testutil.ToFloat64(counter(t, e.reg, "postgate_meta_check_errors_total", "app"))
	if errs < 1 {
		t.Errorf("postgate_meta_check_errors_total{check=app} = %v, want at least 1", errs)
	}
}

// TestPageHealth: a revoked Page token, an app Meta unsubscribed from the
// Page, and a Page re-authorised without messaging_postbacks each show,
// with one event each way.
func TestPageHealth(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.subscribeAll(t)
	e.check(t)
	h, err := e.svc.PageHealth(ctx, e.tenantID, hPage, "")
	if err != nil {
		t.Fatal(err)
	}
	if h.Problem != "" || !h.HasToken || !slices.Contains(h.SubscribedFields, "messaging_postbacks") {
		t.Fatalf("subscribed Page: %+v, want healthy", h)
	}

	e.graph.SetPageFields(hPage, hApp, []string{"messages"})
	e.graph.SetPageFields(hOtherPage, hApp, nil)
	e.clock.Advance(time.Minute)
	e.check(t)
	e.check(t)
	if h, _ := e.svc.PageHealth(ctx, e.tenantID, hPage, ""); h.Problem != meta.ProblemMissingFields || !slices.Contains(h.MissingFields, "messaging_postbacks") {
		t.Errorf("re-authorised without postbacks: %+v", h)
	}
	if h, _ := e.svc.PageHealth(ctx, e.tenantID, hOtherPage, ""); h.Problem != meta.ProblemAppNotSubscribed {
		t.Errorf("unsubscribed by Meta: %+v", h)
	}
	if n := len(e.healthEvents(t)); n != 2 {
		t.Fatalf("%d health events, want 2 (one per Page)", n)
	}

	e.graph.RevokeToken(hToken, 460)
	e.clock.Advance(time.Minute)
	e.check(t)
	h, _ = e.svc.PageHealth(ctx, e.tenantID, hPage, "")
	if h.Problem != meta.ProblemPageTokenInvalid || !strings.Contains(h.Error, "190") {
		t.Errorf("revoked token: %+v, want page_token_invalid with Meta's code", h)
	}
	if n := len(e.healthEvents(t)); n != 2 {
		t.Errorf("unhealthy to unhealthy: %d health events, want still 2", n)
	}
	if err := e.svc.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if v := testutil.ToFloat64(gauge(t, e.reg, "postgate_meta_pages_unhealthy", "")); v != 2 {
		t.Errorf("postgate_meta_pages_unhealthy = %v, want 2", v)
	}

	// A new token and a new subscription: healthy again, one event.
	e.graph.AddPageToken(hPage, hApp, hToken+"-new")
	if _, err := e.tenants.SetPageToken(ctx, e.tenantID, hPage, "", hToken+"-new"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.SubscribePage(ctx, e.tenantID, hPage, "", nil); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(time.Minute)
	e.check(t)
	if h, _ := e.svc.PageHealth(ctx, e.tenantID, hPage, ""); h.Problem != "" {
		t.Errorf("after a new token and subscribe: %+v", h)
	}
	evs := e.healthEvents(t)
	if len(evs) != 3 || evs[2]["page_id"] != hPage || evs[2]["problem"] != nil {
		t.Errorf("health events %v, want a third, for %s, healthy", evs, hPage)
	}
}

// TestSubscribeErrors: the subscribe calls' failures are Meta's, and a
// Page without a token cannot be subscribed.
func TestSubscribeErrors(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	// The gateway answers the verification with something else.
	e.gateway.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) { _, _ = w.Write([]byte("OK")) })
	_, err := e.svc.SubscribeApp(ctx, e.tenantID, hApp, "", nil)
	if err == nil || !strings.Contains(err.Error(), "2201") {
		t.Fatalf("handshake echo wrong: got %v, want Meta's #2201", err)
	}
	if _, ok := e.graph.Subscription(hApp, "page"); ok {
		t.Error("a failed handshake left a subscription at Meta")
	}
	if _, err := e.tenants.RegisterPage(ctx, e.tenantID, tenant.PageInput{PageID: "5199", AppID: hApp}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.SubscribePage(ctx, e.tenantID, "5199", "", nil); err == nil || !strings.Contains(err.Error(), "page_access_token") {
		t.Errorf("Page without a token: got %v, want a page_access_token error", err)
	}
	// A token of another app: the proof made with this app's secret fails.
	e.graph.AddApp("4199", "another-apps-secret", "Other")
	e.graph.AddPageToken("5198", "4199", "EAAOtherAppsToken")
	if _, err := e.tenants.RegisterPage(ctx, e.tenantID, tenant.PageInput{PageID: "5198", AppID: hApp, AccessToken: "EAAOtherAppsToken"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.svc.SubscribePage(ctx, e.tenantID, "5198", "", nil); err == nil || !strings.Contains(err.Error(), "appsecret_proof") {
		t.Errorf("token of another app: got %v, want Meta's appsecret_proof refusal", err)
	}
}

// TestOwnershipProof: registering an app needs its real secret, and keeps
// its name; rotating to a secret Meta does not know is refused.
func TestOwnershipProof(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.graph.AddApp("4200", "the-real-secret", "Support Inbox")
	_, err := e.tenants.RegisterApp(ctx, e.tenantID, tenant.AppInput{AppID: "4200", AppSecret: "a-guessed-secret"})
	var fe *tenant.FieldError
	if !errorsAs(err, &fe) || fe.Field != "app_secret" || !strings.Contains(fe.Message, "Invalid OAuth access token signature") {
		t.Fatalf("wrong secret: got %v, want a 422 on app_secret with Meta's message", err)
	}
	if _, err := e.tenants.RegisterApp(ctx, e.tenantID, tenant.AppInput{AppID: "4299", AppSecret: "x"}); !errorsAs(err, &fe) || fe.Field != "app_id" {
		t.Errorf("unknown app: got %v, want a 422 on app_id", err)
	}
	a, err := e.tenants.RegisterApp(ctx, e.tenantID, tenant.AppInput{AppID: "4200", AppSecret: "the-real-secret"})
	if err != nil {
		t.Fatal(err)
	}
	if a.Name != "Support Inbox" {
		t.Errorf("name %q, want Meta's", a.Name)
	}
	bad := "not-the-new-secret"
	if _, err := e.tenants.UpdateApp(ctx, e.tenantID, "4200", tenant.AppPatch{AppSecret: &bad}); !errorsAs(err, &fe) {
		t.Errorf("rotating to a secret Meta does not know: got %v, want 422", err)
	}
}

// TestSilence: a Page that received steadily and stopped becomes silent;
// a Page that naturally receives every few hours does not, at the same
// silence; both from the summaries, kept as the events are scanned once.
func TestSilence(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.subscribeAll(t)
	// Half past an hour: a two-minute step never moves the 24-hour window
	// past an hour boundary (events_24h counts whole hours).
	now := time.Now().UTC().Truncate(time.Hour).Add(30 * time.Minute)
	start := now.Add(-3 * 24 * time.Hour)
	var b event.Batch
	add := func(page string, at time.Time) {
		id := v7At(at)
		b.Add(&event.New{ID: id, TenantID: e.tenantID, PageID: page, AppID: hApp, DedupKey: "k:" + uuid.UUID(id).String(),
			Type: "messages", ReceivedAt: at, Body: []byte(`{}`)})
	}
	// Busy Page: every 2 minutes for 3 days, then nothing for 2 hours.
	for at := start; at.Before(now.Add(-2 * time.Hour)); at = at.Add(2 * time.Minute) {
		add(hPage, at)
	}
	// Sparse Page: every 6 hours, last one 3 hours ago.
	for at := now.Add(-3 * time.Hour); at.After(start); at = at.Add(-6 * time.Hour) {
		add(hOtherPage, at)
	}
	// A first check, before any of it: both Pages healthy (a first state
	// is never announced; the change to silent will be).
	e.clock.Set(start.Add(-time.Hour))
	e.check(t)
	if err := e.events.Insert(ctx, &b, func([16]byte) {}); err != nil {
		t.Fatal(err)
	}
	e.clock.Set(now)
	e.check(t)
	busy, err := e.svc.PageHealth(ctx, e.tenantID, hPage, "")
	if err != nil {
		t.Fatal(err)
	}
	if !busy.Silent || busy.Problem != meta.ProblemSilent || busy.LastEventAt == nil || busy.Events24h == 0 {
		t.Errorf("busy Page quiet for 2h: %+v, want silent with its last event and 24h count", busy)
	}
	sparse, _ := e.svc.PageHealth(ctx, e.tenantID, hOtherPage, "")
	if sparse.Silent || sparse.Problem != "" {
		t.Errorf("sparse Page 3h after its last event: %+v, want not silent (its median gap is 6h)", sparse)
	}
	if err := e.svc.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	if v := testutil.ToFloat64(gauge(t, e.reg, "postgate_meta_pages_silent", "")); v != 1 {
		t.Errorf("postgate_meta_pages_silent = %v, want 1", v)
	}
	evs := e.healthEvents(t)
	if len(evs) != 1 || evs[0]["problem"] != meta.ProblemSilent || evs[0]["page_id"] != hPage {
		t.Errorf("health events %v, want one: silent, for the busy Page", evs)
	}

	// The busy Page receives again: healthy, one event back; the events
	// are read once (the watermark moved), not counted twice.
	var more event.Batch
	b = more
	add(hPage, now.Add(-30*time.Second))
	if err := e.events.Insert(ctx, &b, func([16]byte) {}); err != nil {
		t.Fatal(err)
	}
	e.clock.Set(now.Add(2 * time.Minute))
	e.check(t)
	busy2, _ := e.svc.PageHealth(ctx, e.tenantID, hPage, "")
	if busy2.Silent || busy2.Problem != "" || busy2.Events24h != busy.Events24h+1 {
		t.Errorf("busy Page receiving again: %+v, want not silent and one more event in 24h (was %d)", busy2, busy.Events24h)
	}
	if evs := e.healthEvents(t); len(evs) != 2 || evs[1]["problem"] != nil {
		t.Errorf("health events %v, want a second, healthy", evs)
	}
}

// TestSilenceAfterLongPause: a checker that did not run for ten days (the
// Graph API off, say) neither calls a Page silent on summaries that stop
// days ago nor forgets its last event: the scan skips what is older than
// silence looks at, catches up, and only then judges.
func TestSilenceAfterLongPause(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.subscribeAll(t)
	now := time.Now().UTC().Truncate(time.Minute)
	e.clock.Set(now)
	e.check(t)
	if _, err := e.db.Pool.Exec(ctx, `UPDATE meta_scan SET scanned_to = $1`, now.Add(-10*24*time.Hour)); err != nil {
		t.Fatal(err)
	}
	var b event.Batch
	for at := now.Add(-6 * 24 * time.Hour); at.Before(now.Add(-2 * time.Minute)); at = at.Add(5 * time.Minute) {
		id := v7At(at)
		b.Add(&event.New{ID: id, TenantID: e.tenantID, PageID: hPage, AppID: hApp, DedupKey: uuid.UUID(id).String(),
			Type: "messages", ReceivedAt: at, Body: []byte(`{}`)})
	}
	// The other Page's last event was three days ago.
	old := now.Add(-3 * 24 * time.Hour)
	b.Add(&event.New{ID: v7At(old), TenantID: e.tenantID, PageID: hOtherPage, AppID: hApp, DedupKey: "old",
		Type: "messages", ReceivedAt: old, Body: []byte(`{}`)})
	if err := e.events.Insert(ctx, &b, func([16]byte) {}); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(time.Minute)
	e.check(t)
	h, err := e.svc.PageHealth(ctx, e.tenantID, hPage, "")
	if err != nil {
		t.Fatal(err)
	}
	if h.Silent || h.Problem != "" {
		t.Errorf("a Page receiving every 5 minutes, after a 10-day pause of the checker: %+v, want not silent", h)
	}
	if n := len(e.healthEvents(t)); n != 0 {
		t.Errorf("%d health events, want none", n)
	}
	o, _ := e.svc.PageHealth(ctx, e.tenantID, hOtherPage, "")
	if o.LastEventAt == nil || !o.LastEventAt.Equal(old.Truncate(time.Millisecond)) || o.Events24h != 0 {
		t.Errorf("Page last heard of 3 days ago: last_event_at %v, events_24h %d; want %v and 0", o.LastEventAt, o.Events24h, old)
	}
}

// TestOneChecker: two replicas, one checks; when it stops, the other
// takes over within an interval.
func TestOneChecker(t *testing.T) {
	e := newEnv(t)
	e.subscribeAll(t)
	a, b := e.svc, e.newService(t, nil)
	ctxA, stopA := context.WithCancel(context.Background())
	ctxB, stopB := context.WithCancel(context.Background())
	defer stopB()
	doneA := make(chan struct{})
	go func() { a.Run(ctxA); close(doneA) }()
	waitFor(t, "a to lead and check", func() bool { return a.Leading() && a.Checks() > 0 })
	go b.Run(ctxB)
	waitFor(t, "a to check three more times", func() bool { return a.Checks() >= 4 })
	if b.Leading() || b.Checks() != 0 {
		t.Fatalf("while a leads, b leads %v and checked %d times", b.Leading(), b.Checks())
	}
	stopA()
	<-doneA
	// Within one interval (200ms) b takes the lock and checks.
	waitFor(t, "b to take over", func() bool { return b.Leading() && b.Checks() > 0 })
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestNoSecretInLogs: a whole life (proof, subscribe, checks, failures,
// revoked tokens) logs no app secret and no Page token.
func TestNoSecretInLogs(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	e.subscribeAll(t)
	e.check(t)
	e.graph.RevokeToken(hToken, 463)
	e.graph.FailNext(3, 2, "")
	e.check(t)
	e.check(t)
	ctxRun, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { e.svc.Run(ctxRun); close(done) }()
	time.Sleep(500 * time.Millisecond)
	stop()
	<-done
	logs := e.logs.String()
	if logs == "" {
		t.Fatal("nothing was logged: the test proves nothing")
	}
	for _, secret := range []string{hSecret, hToken, hOtherToken, meta.AppSecretProof(hToken, hSecret)} {
		if strings.Contains(logs, secret) {
			t.Errorf("a secret is in the logs: %s", logs)
		}
	}
}

func errorsAs(err error, target **tenant.FieldError) bool {
	fe, ok := err.(*tenant.FieldError)
	if !ok {
		return false
	}
	*target = fe
	return true
}

// v7At is a UUIDv7 of the millisecond at, random otherwise.
func v7At(at time.Time) [16]byte {
	u := uuid.Must(uuid.NewV7())
	var ms [8]byte
	binary.BigEndian.PutUint64(ms[:], uint64(at.UnixMilli()))
	copy(u[:6], ms[2:])
	return u
}

func gauge(t *testing.T, reg *prometheus.Registry, name, app string) prometheus.Collector {
	t.Helper()
	return collected(t, reg, name, "app_id", app)
}

func counter(t *testing.T, reg *prometheus.Registry, name, check string) prometheus.Collector {
	t.Helper()
	return collected(t, reg, name, "check", check)
}

// collected is one series of a gathered family, as a collector testutil
// can read.
func collected(t *testing.T, reg *prometheus.Registry, name, label, value string) prometheus.Collector {
	t.Helper()
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			if value != "" && !slices.ContainsFunc(m.GetLabel(), func(l *dto.LabelPair) bool {
				return l.GetName() == label && l.GetValue() == value
			}) {
				continue
			}
			v := m.GetGauge().GetValue() + m.GetCounter().GetValue()
			g := prometheus.NewGauge(prometheus.GaugeOpts{Name: "x"})
			g.Set(v)
			return g
		}
	}
	t.Fatalf("%s{%s=%q} is not exported", name, label, value)
	return nil
}
