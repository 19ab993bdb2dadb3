package api_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/postgate/postgate/internal/api"
	"github.com/postgate/postgate/internal/tenant"
	"github.com/postgate/postgate/internal/testenv"
)

// liveGateway is an ingress (webhooks and admin API) serving on a real
// 127.0.0.1 listener, with every metric on one registry, as `serve` runs it.
type liveGateway struct {
	base  string // http://127.0.0.1:port
	reg   *prometheus.Registry
	admin string // an admin token
	appID string // a registered app, signed with hookSecret
}

func startLiveGateway(t *testing.T) *liveGateway {
	t.Helper()
	ctx := context.Background()
	db := testenv.Postgres(t)
	keys := testenv.Keyring(t)
	a := newAdmin(t, db, keys, false)
	svc := a.Tenants
	ten, _, err := svc.CreateTenant(ctx, tenant.TenantInput{Name: "metrics", CallbackURL: "https://hooks.example.com/meta"})
	if err != nil {
		t.Fatal(err)
	}
	const appID = "1001"
	if _, err := svc.RegisterApp(ctx, ten.ID, tenant.AppInput{AppID: appID, AppSecret: hookSecret}); err != nil {
		t.Fatal(err)
	}
	reg := prometheus.NewRegistry()
	s := api.New(api.Config{Version: "test"}, api.Deps{Metrics: reg, Ingest: startIngestor(t, db, keys, reg), Admin: a})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Serve(ln) }()
	t.Cleanup(func() { _ = s.Shutdown(context.Background()) })
	return &liveGateway{base: "http://" + ln.Addr().String(), reg: reg, admin: adminToken(t, a.Tokens), appID: appID}
}

// TestMetricsAfterManyRequests: fasthttp reuses a connection's buffers for
// its next request, so a label kept from a zero-copy string changes under
// Prometheus' feet ("GETT", "POS", then a duplicate series and a 500 on
// /metrics). Mixed admin and webhook requests over a few keep-alive
// connections, then every series must carry a real label value and
// /metrics must answer 200 (SPEC guarantee 6).
func TestMetricsAfterManyRequests(t *testing.T) {
	g := startLiveGateway(t)
	client := &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{MaxIdleConnsPerHost: 4, MaxConnsPerHost: 4},
	}
	t.Cleanup(client.CloseIdleConnections)
	body := []byte(postback)
	requests := []struct {
		method, path, sig, body string
		token                   bool
	}{
		{http.MethodGet, "/admin/v1/tenants?limit=5", "", "", true},
		{http.MethodPost, "/admin/v1/tenants", "", `{"name":"load","callback_url":"https://hooks.example.com/x"}`, true},
		{http.MethodPatch, "/admin/v1/tenants/00000000-0000-7000-8000-000000000000", "", `{"name":"nope"}`, true},
		{http.MethodDelete, "/admin/v1/tenants/00000000-0000-7000-8000-000000000000", "", "", true},
		{http.MethodPut, "/admin/v1/tenants", "", `{}`, true},
		{http.MethodOptions, "/admin/v1/tenants/x/apps/1001", "", "", false},
		{http.MethodHead, "/healthz", "", "", false},
		{http.MethodGet, "/admin/v1/openapi.json", "", "", false},
		{http.MethodGet, "/webhook/" + g.appID + "?hub.mode=subscribe&hub.verify_token=wrong&hub.challenge=1", "", "", false},
		{http.MethodPost, "/webhook/" + g.appID, "", string(body), false},                                 // no signature: counted for the app
		{http.MethodPost, "/webhook/" + g.appID, testenv.SignMeta("other", body), string(body), false},    // wrong secret
		{http.MethodPost, "/webhook/" + g.appID, testenv.SignMeta(hookSecret, body), string(body), false}, // accepted (unroutable Page)
		{http.MethodPost, "/webhook", testenv.SignMeta(hookSecret, body), string(body), false},            // shared endpoint
		{http.MethodGet, "/no/such/route/at/all", "", "", false},
	}
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for w := range 8 {
		wg.Go(func() {
			for i := range 60 {
				r := requests[(w*7+i)%len(requests)]
				req, err := http.NewRequest(r.method, g.base+r.path, strings.NewReader(r.body))
				if err != nil {
					errs <- err
					return
				}
				if r.body != "" {
					req.Header.Set("Content-Type", "application/json")
				}
				if r.token {
					req.Header.Set("Authorization", "Bearer "+g.admin)
				}
				if r.sig != "" {
					req.Header.Set("X-Hub-Signature-256", r.sig)
				}
				req.Header.Set("X-Request-Id", fmt.Sprintf("req-%d-%d-%s", w, i, strings.Repeat("x", i%13)))
				resp, err := client.Do(req)
				if err != nil {
					errs <- fmt.Errorf("%s %s: %w", r.method, r.path, err)
					return
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	families, err := g.reg.Gather()
	if err != nil {
		t.Fatalf("gather: %v", err)
	}
	methods := map[string]bool{}
	for _, m := range []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "CONNECT", "OPTIONS", "TRACE"} {
		methods[m] = true
	}
	seen := map[string]int{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				switch {
				case l.GetName() == "method":
					seen[l.GetValue()]++
					if !methods[l.GetValue()] {
						t.Errorf("%s has method label %q, want an HTTP method", f.GetName(), l.GetValue())
					}
				case l.GetName() == "app_id" && l.GetValue() != g.appID:
					t.Errorf("%s has app_id label %q, want %q", f.GetName(), l.GetValue(), g.appID)
				case l.GetName() == "route" && !strings.HasPrefix(l.GetValue(), "/") && l.GetValue() != "unmatched":
					t.Errorf("%s has route label %q, want a route template", f.GetName(), l.GetValue())
				}
			}
		}
	}
	if seen["GET"] == 0 || seen["POST"] == 0 || seen["PATCH"] == 0 {
		t.Errorf("method labels seen: %v, want GET, POST and PATCH among them", seen)
	}
	rec := httptest.NewRecorder()
	promhttp.HandlerFor(g.reg, promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("/metrics: got %d, want 200: %s", rec.Code, firstLine(rec.Body.Bytes()))
	}
}

func firstLine(b []byte) string {
	line, _, _ := bytes.Cut(b, []byte("\n"))
	return string(line)
}
