//go:build e2e

package e2e

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	graphapi "github.com/postgate/postgate/internal/meta"
	"github.com/postgate/postgate/internal/meta/metatest"
)

// TestE2EMetaHealth is SPEC's "Meta set-up and health" on the built
// binary, against a fake Graph API that behaves like Meta: a tenant goes
// from an app id, its secret and a Page token to a subscribed app and
// Page with API calls only (Meta's verification GET reaching the
// gateway's webhook route); then a subscription Meta turns off shows in
// the health route, /metrics and one postgate.health event to the
// endpoint that asked for them, within an interval, and again when it is
// back; no secret or token reaches the log.
func TestE2EMetaHealth(t *testing.T) {
	const (
		appID     = "31000000001"
		appSecret = "e2e-meta-app-secret-4f9c2a"
		pageID    = "32000000001"
		pageToken = "EAAE2EPageToken7d1b0c"
	)
	graph := metatest.New(t)
	graph.AddApp(appID, appSecret, "E2E Bot")
	graph.AddPageToken(pageID, appID, pageToken)
	s := newStack(t, "GRAPH_API_URL="+graph.URL, "HEALTH_INTERVAL=1s")
	g := s.startGateway("gateway", "all")
	a := s.admin(g, s.adminToken("--role", "admin"))

	var mu sync.Mutex
	var health []map[string]any
	hooks := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var m map[string]any
		if json.Unmarshal(b, &m) == nil && m["type"] == "postgate.health" {
			mu.Lock()
			health = append(health, m)
			mu.Unlock()
		}
	}))
	t.Cleanup(hooks.Close)
	healthEvents := func() []map[string]any {
		mu.Lock()
		defer mu.Unlock()
		return append([]map[string]any(nil), health...)
	}

	var ten struct {
		ID string `json:"id"`
	}
	a.must(http.StatusCreated, "POST", "/tenants", map[string]any{"name": "meta", "callback_url": hooks.URL + "/bot"}, &ten)
	tp := "/tenants/" + ten.ID
	a.must(http.StatusCreated, "POST", tp+"/endpoints", map[string]any{"url": hooks.URL + "/ops", "events": []string{"postgate.health"}}, nil)
	if code, raw := a.do("POST", tp+"/apps", map[string]any{"app_id": appID, "app_secret": "not-the-secret"}, nil); code != http.StatusUnprocessableEntity {
		t.Fatalf("app with a wrong secret: %d %s, want 422", code, raw)
	}
	var app struct {
		Name string `json:"name"`
	}
	a.must(http.StatusCreated, "POST", tp+"/apps", map[string]any{"app_id": appID, "app_secret": appSecret}, &app)
	if app.Name != "E2E Bot" {
		t.Errorf("app name %q, want Meta's", app.Name)
	}
	a.must(http.StatusCreated, "POST", tp+"/pages", map[string]any{"page_id": pageID, "app_id": appID, "page_access_token": pageToken}, nil)
	var sub struct {
		Active      bool   `json:"active"`
		CallbackURL string `json:"callback_url"`
	}
	a.must(http.StatusOK, "POST", tp+"/apps/"+appID+"/subscribe", nil, &sub)
	if !sub.Active || sub.CallbackURL != g.url("/webhook/"+appID) {
		t.Errorf("subscription %+v, want active with the gateway's callback", sub)
	}
	a.must(http.StatusOK, "POST", tp+"/pages/"+pageID+"/subscribe", nil, nil)

	type appHealth struct {
		Active    bool    `json:"active"`
		Problem   *string `json:"problem"`
		CheckedAt *string `json:"checked_at"`
	}
	readHealth := func() appHealth {
		var h appHealth
		a.must(http.StatusOK, "GET", tp+"/apps/"+appID+"/health", nil, &h)
		return h
	}
	if !waitUntil(10*time.Second, func() bool { h := readHealth(); return h.CheckedAt != nil && h.Problem == nil && h.Active }) {
		t.Fatalf("app health never healthy: %+v", readHealth())
	}
	var page struct {
		Problem *string `json:"problem"`
	}
	a.must(http.StatusOK, "GET", tp+"/pages/"+pageID+"/health", nil, &page)
	if page.Problem != nil {
		t.Errorf("Page health problem %q, want none", *page.Problem)
	}

	// Meta turns the subscription off.
	good, _ := graph.Subscription(appID, "page")
	off := good
	off.Active = false
	graph.SetSubscription(appID, off)
	turned := time.Now()
	if !waitUntil(10*time.Second, func() bool { return len(healthEvents()) == 1 }) {
		t.Fatalf("no postgate.health event after the subscription went inactive: %v", healthEvents())
	}
	t.Logf("inactive subscription reported in %s (HEALTH_INTERVAL=1s)", fmtDur(time.Since(turned)))
	if ev := healthEvents()[0]; ev["problem"] != "inactive" || ev["app_id"] != appID {
		t.Errorf("health event %v, want problem inactive for the app", ev)
	}
	if h := readHealth(); h.Problem == nil || *h.Problem != "inactive" {
		t.Errorf("health route: %+v, want problem inactive", h)
	}
	if !waitUntil(5*time.Second, func() bool {
		m, err := g.metrics()
		return err == nil && strings.Contains(m, `postgate_meta_subscription_active{app_id="`+appID+`"} 0`)
	}) {
		t.Error("postgate_meta_subscription_active is not 0 for the app")
	}

	// Back on: one event back, and no more while it holds.
	graph.SetSubscription(appID, good)
	if !waitUntil(10*time.Second, func() bool { return len(healthEvents()) == 2 }) {
		t.Fatalf("no postgate.health event after the subscription came back: %v", healthEvents())
	}
	if ev := healthEvents()[1]; ev["problem"] != nil {
		t.Errorf("second health event %v, want problem null", ev)
	}
	time.Sleep(3 * time.Second) // three more checks
	if n := len(healthEvents()); n != 2 {
		t.Errorf("%d health events while the state held, want 2", n)
	}

	logs := tail(g.logPath, 100000)
	for _, secret := range []string{appSecret, pageToken, graphapi.AppSecretProof(pageToken, appSecret)} {
		if strings.Contains(logs, secret) {
			t.Errorf("a secret or token is in the gateway's log")
		}
	}
}
