package api_test

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/postgate/postgate/internal/api"
	"github.com/postgate/postgate/internal/event"
	"github.com/postgate/postgate/internal/meta"
	"github.com/postgate/postgate/internal/meta/metatest"
	"github.com/postgate/postgate/internal/tenant"
	"github.com/postgate/postgate/internal/testenv"
	"github.com/postgate/postgate/internal/webhook"
)

const (
	metaAppID     = "7100"
	metaAppSecret = "meta-route-test-secret-abcdef"
	metaPageID    = "8100"
	metaPageToken = "EAAPageTokenOfTheRouteTest0123456789"
)

// metaHarness is a harness whose gateway also listens on a real port, so
// the fake Graph API's verification GET reaches the gateway's own webhook
// route, and whose registry follows changes as a replica's does.
type metaHarness struct {
	*harness
	graph *metatest.Graph
	meta  *meta.Service
	base  string
	// sigFailures is the ingress's counter; tests flush it by hand.
	sigFailures *meta.SignatureFailures
}

func newMetaHarness(t *testing.T) *metaHarness {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	db := testenv.Postgres(t)
	keys := testenv.Keyring(t)
	a := newAdmin(t, db, keys, false)
	logs := &syncBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	graph := metatest.New(t)
	client, err := meta.NewClient(meta.ClientConfig{BaseURL: graph.URL, Version: "v24.0", Backoff: func(int) time.Duration { return time.Millisecond }})
	if err != nil {
		t.Fatal(err)
	}
	a.Meta = meta.NewService(meta.Config{PublicURL: base}, client, a.Tenants, tenant.NewStore(db), event.NewStore(db), db, log, nil)
	a.Tenants.SetProver(a.Meta)

	rdb, prefix := testenv.Redis(t)
	reg := tenant.NewRegistry(tenant.RegistryConfig{}, db.Pool, keys, log, nil)
	if err := reg.Load(ctx); err != nil {
		t.Fatal(err)
	}
	go reg.Run(ctx)
	sigFailures := meta.NewSignatureFailures(db, log, nil)
	ing, err := webhook.NewIngestor(webhook.Config{KeyPrefix: prefix, SignatureFailed: sigFailures.Add}, reg, event.NewStore(db), rdb, nil, log)
	if err != nil {
		t.Fatal(err)
	}
	go ing.Run(ctx)
	s := api.New(api.Config{Version: "test"}, api.Deps{Log: log, Admin: a, Ingest: ing})
	go func() { _ = s.Serve(ln) }()
	t.Cleanup(func() { _ = s.Shutdown(context.Background()) })
	h := &harness{t: t, server: s, db: db, tokens: a.Tokens, keys: keys, logs: logs, admin: adminToken(t, a.Tokens)}
	return &metaHarness{harness: h, graph: graph, meta: a.Meta, base: base, sigFailures: sigFailures}
}

// TestMetaSetUpByAPI is the seed's set-up steps done with API calls only:
// an app id, its secret and a Page token take a tenant to a subscribed
// app and Page, whose health then reads healthy; Meta's verification GET
// is answered by the gateway's own webhook route.
func TestMetaSetUpByAPI(t *testing.T) {
	h := newMetaHarness(t)
	h.graph.AddApp(metaAppID, metaAppSecret, "Acme Bot")
	h.graph.AddPageToken(metaPageID, metaAppID, metaPageToken)
	tid, _ := h.createTenant("acme")
	tok := h.tenantToken(tid)
	apps := "/admin/v1/tenants/" + tid + "/apps"

	// Proof of ownership: a wrong secret or an unknown app is Meta's 422.
	r := h.do("POST", apps, tok, map[string]any{"app_id": metaAppID, "app_secret": "a-guessed-secret"})
	if r.status != 422 || !strings.Contains(string(r.body), "body.app_secret") || !strings.Contains(string(r.body), "Invalid OAuth access token signature") {
		t.Fatalf("wrong secret: %d %s, want 422 on body.app_secret with Meta's message", r.status, r.body)
	}
	if strings.Contains(string(r.body), "a-guessed-secret") {
		t.Errorf("the refused secret is echoed: %s", r.body)
	}
	if r := h.do("POST", apps, tok, map[string]any{"app_id": "7199", "app_secret": "whatever"}); r.status != 422 || !strings.Contains(string(r.body), "body.app_id") {
		t.Errorf("unknown app: %d %s, want 422 on body.app_id", r.status, r.body)
	}
	app := h.must(201, "POST", apps, tok, map[string]any{"app_id": metaAppID, "app_secret": metaAppSecret})
	if app["name"] != "Acme Bot" {
		t.Errorf("app name %v, want Meta's", app["name"])
	}

	// Subscribe the app, right after registering it: Meta's GET reaches
	// the gateway, which answers it with the app's verify token.
	sub := h.must(200, "POST", apps+"/"+metaAppID+"/subscribe", tok, nil)
	if sub["active"] != true || sub["callback_url"] != h.base+"/webhook/"+metaAppID || !contains(sub["fields"], "messaging_postbacks") {
		t.Fatalf("subscription %v", sub)
	}
	if vt, _ := h.graph.VerifyToken(metaAppID, "page"); vt != app["verify_token"] {
		t.Errorf("Meta holds verify token %q, want the app's", vt)
	}

	// A Page with its token; the token is never shown.
	pages := "/admin/v1/tenants/" + tid + "/pages"
	page := h.do("POST", pages, tok, map[string]any{"page_id": metaPageID, "app_id": metaAppID, "page_access_token": metaPageToken})
	if page.status != 201 || strings.Contains(string(page.body), metaPageToken) || page.json(t)["has_access_token"] != true {
		t.Fatalf("register Page: %d %s", page.status, page.body)
	}
	psub := h.must(200, "POST", pages+"/"+metaPageID+"/subscribe", tok, map[string]any{"fields": []string{"messages", "messaging_postbacks"}})
	if !contains(psub["subscribed_fields"], "messaging_postbacks") || psub["app_id"] != metaAppID {
		t.Errorf("Page subscription %v", psub)
	}
	if got, _ := h.graph.PageFields(metaPageID, metaAppID); !contains(anySlice(got), "messaging_postbacks") {
		t.Errorf("Meta holds Page fields %v", got)
	}

	// Health: not checked yet, then healthy.
	health := h.must(200, "GET", apps+"/"+metaAppID+"/health", tok, nil)
	if health["checked_at"] != nil || health["problem"] != nil {
		t.Errorf("health before a check: %v", health)
	}
	if err := h.meta.CheckOnce(context.Background()); err != nil {
		t.Fatal(err)
	}
	health = h.must(200, "GET", apps+"/"+metaAppID+"/health", tok, nil)
	if health["active"] != true || health["callback_url_matches"] != true || health["problem"] != nil || health["checked_at"] == nil {
		t.Errorf("app health: %v", health)
	}
	for _, k := range []string{"fields", "missing_fields", "last_event_at", "signature_failures_1h", "error", "since"} {
		if _, ok := health[k]; !ok {
			t.Errorf("app health lacks %q: %v", k, health)
		}
	}
	phealth := h.must(200, "GET", pages+"/"+metaPageID+"/health", tok, nil)
	if phealth["problem"] != nil || phealth["silent"] != false || !contains(phealth["subscribed_fields"], "messaging_postbacks") {
		t.Errorf("Page health: %v", phealth)
	}
	for _, k := range []string{"missing_fields", "checked_at", "error", "last_event_at", "events_24h"} {
		if _, ok := phealth[k]; !ok {
			t.Errorf("Page health lacks %q: %v", k, phealth)
		}
	}

	// Two forged webhook POSTs count in signature_failures_1h once the
	// ingress's counter is flushed (serve flushes every 5 s).
	for range 2 {
		req := signedPost("/webhook/"+metaAppID, []byte(postback), "not-the-secret")
		if code, _, _ := do(t, h.server, req); code != 401 {
			t.Fatalf("forged POST: %d, want 401", code)
		}
	}
	h.sigFailures.Flush(context.Background())
	if n := h.must(200, "GET", apps+"/"+metaAppID+"/health", tok, nil)["signature_failures_1h"]; n != 2.0 {
		t.Errorf("signature_failures_1h = %v, want 2", n)
	}

	// A token of another app: Meta refuses the proof, 502 with its message.
	h.graph.AddApp("7101", "another-secret", "Other")
	h.graph.AddPageToken(metaPageID, "7101", "EAATokenOfAnotherApp")
	h.must(200, "PATCH", pages+"/"+metaPageID, tok, map[string]any{"page_access_token": "EAATokenOfAnotherApp"})
	r = h.do("POST", pages+"/"+metaPageID+"/subscribe", tok, nil)
	if r.status != 502 || !strings.Contains(string(r.body), "appsecret_proof") || strings.Contains(string(r.body), "EAATokenOfAnotherApp") {
		t.Errorf("subscribe with another app's token: %d %s, want 502 with Meta's proof message", r.status, r.body)
	}
	if strings.Contains(h.logs.String(), metaAppSecret) || strings.Contains(h.logs.String(), metaPageToken) {
		t.Error("a secret or token is in the logs")
	}
}

// TestMetaRoutesBadInput: what the Meta routes refuse, and who may reach
// them: never a 500.
func TestMetaRoutesBadInput(t *testing.T) {
	h := newMetaHarness(t)
	h.graph.AddApp(metaAppID, metaAppSecret, "Acme Bot")
	tid, _ := h.createTenant("acme")
	other, _ := h.createTenant("other")
	tok := h.tenantToken(tid)
	h.must(201, "POST", "/admin/v1/tenants/"+tid+"/apps", tok, map[string]any{"app_id": metaAppID, "app_secret": metaAppSecret})
	h.must(201, "POST", "/admin/v1/tenants/"+tid+"/pages", tok, map[string]any{"page_id": metaPageID, "app_id": metaAppID})
	app := "/admin/v1/tenants/" + tid + "/apps/" + metaAppID
	page := "/admin/v1/tenants/" + tid + "/pages/" + metaPageID
	cases := []struct {
		method, path, token string
		body                any
		want                int
		in                  string
	}{
		{"POST", app + "/subscribe", tok, map[string]any{"object": "user"}, 422, "object"},
		{"POST", app + "/subscribe", tok, map[string]any{"fields": []string{"bogus"}}, 422, "fields"},
		{"POST", app + "/subscribe", tok, map[string]any{"fields": []string{}}, 422, "fields"},
		{"POST", app + "/subscribe", tok, map[string]any{"fields": []string{"other"}}, 422, "fields"},
		{"POST", app + "/subscribe", tok, `{"object":`, 400, ""},
		{"POST", app + "/subscribe", tok, map[string]any{"fields": []string{"messages\u0000"}}, 422, "fields"},
		{"POST", page + "/subscribe", tok, nil, 422, "page_access_token"},
		{"PATCH", page, tok, map[string]any{"page_access_token": "has space"}, 422, "page_access_token"},
		{"PATCH", page, tok, map[string]any{"page_access_token": "tok\u0000en"}, 422, "page_access_token"},
		{"PATCH", page, tok, map[string]any{"page_access_token": strings.Repeat("x", 3000)}, 422, "page_access_token"},
		{"POST", "/admin/v1/tenants/" + tid + "/pages", tok, map[string]any{"page_id": "8101", "app_id": metaAppID, "page_access_token": "a\tb"}, 422, "page_access_token"},
		{"GET", "/admin/v1/tenants/" + tid + "/apps/7999/health", tok, nil, 404, ""},
		{"GET", "/admin/v1/tenants/" + tid + "/apps/abc/health", tok, nil, 422, ""},
		{"GET", "/admin/v1/tenants/" + tid + "/pages/8999/health", tok, nil, 404, ""},
		{"GET", app + "/health", h.tenantToken(other), nil, 404, ""},
		{"POST", app + "/subscribe", h.tenantToken(other), nil, 404, ""},
		{"GET", page + "/health", "", nil, 401, ""},
	}
	for _, c := range cases {
		r := h.do(c.method, c.path, c.token, c.body)
		if r.status != c.want || (c.in != "" && !strings.Contains(string(r.body), c.in)) {
			t.Errorf("%s %s %v: %d %s, want %d naming %q", c.method, c.path, c.body, r.status, r.body, c.want, c.in)
		}
	}
}

// TestMetaRoutesOff: with GRAPH_API_URL=off, no call to Meta: apps
// register unproved, and the subscribe and health routes answer 409.
func TestMetaRoutesOff(t *testing.T) {
	h := newHarness(t)
	tid, _ := h.createTenant("acme")
	h.must(201, "POST", "/admin/v1/tenants/"+tid+"/apps", h.admin, map[string]any{"app_id": "7300", "app_secret": "anything"})
	h.must(201, "POST", "/admin/v1/tenants/"+tid+"/pages", h.admin, map[string]any{"page_id": "8300", "app_id": "7300", "page_access_token": "EAAx"})
	for _, c := range [][2]string{
		{"POST", "/apps/7300/subscribe"}, {"GET", "/apps/7300/health"},
		{"POST", "/pages/8300/subscribe"}, {"GET", "/pages/8300/health"},
	} {
		r := h.do(c[0], "/admin/v1/tenants/"+tid+c[1], h.admin, nil)
		if r.status != 409 || !strings.Contains(string(r.body), "GRAPH_API_URL is off") {
			t.Errorf("%s %s: %d %s, want 409 saying GRAPH_API_URL is off", c[0], c[1], r.status, r.body)
		}
	}
}

func contains(v any, s string) bool {
	list, _ := v.([]any)
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

func anySlice(v []string) []any {
	out := make([]any, len(v))
	for i, s := range v {
		out[i] = s
	}
	return out
}
