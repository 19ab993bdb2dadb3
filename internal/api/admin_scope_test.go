package api_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/postgate/postgate/internal/event"
)

// snapshot is everything an admin can read of a tenant, as the API
// answers it: the tenant, its apps, Pages, events (each with its detail)
// and quarantine. Two equal snapshots mean nothing of the tenant changed.
func snapshot(h *harness, id string) string {
	h.t.Helper()
	base := "/admin/v1/tenants/" + id
	var b strings.Builder
	get := func(path string) map[string]any {
		r := h.do("GET", path, h.admin, nil)
		if r.status != 200 {
			h.t.Fatalf("snapshot: GET %s: got %d: %s", path, r.status, r.body)
		}
		b.WriteString(path + " " + string(r.body) + "\n")
		return r.json(h.t)
	}
	get(base)
	for _, it := range get(base + "/apps?limit=200")["items"].([]any) {
		get(base + "/apps/" + it.(map[string]any)["app_id"].(string))
	}
	get(base + "/pages?limit=200")
	for _, it := range get(base + "/events?limit=200")["items"].([]any) {
		get(base + "/events/" + it.(map[string]any)["id"].(string))
	}
	get(base + "/quarantine?limit=200")
	return b.String()
}

// TestTenantScoping: a tenant token of A reaches none of B's data through
// any tenant-scoped operation, whether B's tenant id is in the path or
// B's app, Page and event ids are under A's own path. Each answers 404
// (403 for admin-only operations), registrations on B's app answer as if
// it were unknown or taken, lists under A's path show nothing of B, and
// afterwards B reads back exactly as before.
func TestTenantScoping(t *testing.T) {
	h := newHarness(t)
	a, _ := h.createTenant("tenant-a")
	b, _ := h.createTenant("tenant-b")
	ta := h.tenantToken(a)
	h.must(201, "POST", "/admin/v1/tenants/"+a+"/apps", h.admin, map[string]any{"app_id": "1001", "app_secret": "app-secret-a"})
	h.must(201, "POST", "/admin/v1/tenants/"+a+"/pages", h.admin, map[string]any{"page_id": "5005", "app_id": "1001"})
	h.must(201, "POST", "/admin/v1/tenants/"+b+"/apps", h.admin, map[string]any{"app_id": "2002", "app_secret": "app-secret-b"})
	h.must(201, "POST", "/admin/v1/tenants/"+b+"/pages", h.admin, map[string]any{"page_id": "6006", "app_id": "2002"})
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	insertEvents(t, h, a, 2, base)
	bEvents := insertEvents(t, h, b, 3, base)
	if _, err := h.db.Pool.Exec(context.Background(), `UPDATE events SET status = 'dead', attempts = 11, delivered_at = NULL, dead_at = received_at WHERE id = $1`, bEvents[0]); err != nil {
		t.Fatal(err)
	}
	bQuarantine := uuid.Must(uuid.NewV7())
	if _, err := h.db.Pool.Exec(context.Background(), `INSERT INTO quarantine (id, tenant_id, app_id, reason, body) VALUES ($1, $2, '2002', 'not JSON', 'x')`, bQuarantine, b); err != nil {
		t.Fatal(err)
	}
	evtB := event.FormatID(bEvents[0])
	before := snapshot(h, b)

	pa, pb := "/admin/v1/tenants/"+a, "/admin/v1/tenants/"+b
	tests := []struct {
		method, path string
		body         any
		want         int
	}{
		// B's tenant id in the path.
		{"GET", pb, nil, 404},
		{"GET", "/admin/v1/tenants/" + strings.ToUpper(b), nil, 404},
		{"PATCH", pb, map[string]any{"name": "taken over", "callback_url": "https://hooks2.example.com/", "endpoint_enabled": false}, 404},
		{"DELETE", pb, nil, 404},
		{"POST", pb + "/signing-secret/rotate", nil, 404},
		{"POST", pb + "/tokens", map[string]any{"ttl": "1h"}, 403},
		{"POST", pb + "/apps", map[string]any{"app_id": "3003", "app_secret": "s"}, 404},
		{"GET", pb + "/apps", nil, 404},
		{"GET", pb + "/apps/2002", nil, 404},
		{"PATCH", pb + "/apps/2002", map[string]any{"app_secret": "rotated-by-a", "legacy_sha1": true}, 404},
		{"DELETE", pb + "/apps/2002", nil, 404},
		{"POST", pb + "/pages", map[string]any{"page_id": "7007", "app_id": "2002"}, 404},
		{"GET", pb + "/pages", nil, 404},
		{"DELETE", pb + "/pages/6006", nil, 404},
		{"DELETE", pb + "/pages/6006?app_id=2002", nil, 404},
		{"GET", pb + "/events", nil, 404},
		{"GET", pb + "/events?status=dead", nil, 404},
		{"GET", pb + "/events/" + evtB, nil, 404},
		{"POST", pb + "/events/" + evtB + "/replay", nil, 404},
		{"POST", pb + "/replay", map[string]any{"status": "dead"}, 404},
		{"GET", pb + "/quarantine", nil, 404},
		{"GET", pb + "/quarantine/" + event.FormatQuarantineID(bQuarantine), nil, 404},
		// Admin-only operations.
		{"GET", "/admin/v1/tenants", nil, 403},
		{"POST", "/admin/v1/tenants", map[string]any{"name": "x", "callback_url": "https://hooks.example.com/"}, 403},
		// B's ids under A's own path.
		{"GET", pa + "/apps/2002", nil, 404},
		{"PATCH", pa + "/apps/2002", map[string]any{"app_secret": "rotated-by-a"}, 404},
		{"DELETE", pa + "/apps/2002", nil, 404},
		{"DELETE", pa + "/pages/6006", nil, 404},
		{"DELETE", pa + "/pages/6006?app_id=2002", nil, 404},
		{"GET", pa + "/events/" + evtB, nil, 404},
		{"POST", pa + "/events/" + evtB + "/replay", nil, 404},
		{"GET", pa + "/quarantine/" + event.FormatQuarantineID(bQuarantine), nil, 404},
		// Registrations that name B's app: as if unknown (a Page) or taken (the app).
		{"POST", pa + "/pages", map[string]any{"page_id": "6006", "app_id": "2002"}, 422},
		{"POST", pa + "/pages", map[string]any{"page_id": "7007", "app_id": "2002"}, 422},
		{"POST", pa + "/apps", map[string]any{"app_id": "2002", "app_secret": "s"}, 409},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+strings.ReplaceAll(strings.ReplaceAll(tt.path, a, "A"), b, "B"), func(t *testing.T) {
			r := h.do(tt.method, tt.path, ta, tt.body)
			wantProblem(t, r, tt.want, "")
			if strings.Contains(string(r.body), b) || strings.Contains(string(r.body), "tenant-b") {
				t.Errorf("the answer names tenant B: %s", r.body)
			}
		})
	}

	// A's own lists, filters and bulk replay see nothing of B.
	for _, path := range []string{pa + "/apps", pa + "/pages", pa + "/events", pa + "/events?page_id=6006", pa + "/events?status=dead", pa + "/quarantine"} {
		r := h.do("GET", path, ta, nil)
		if r.status != 200 {
			t.Errorf("GET %s: got %d, want 200: %s", path, r.status, r.body)
		}
		for _, s := range []string{b, "2002", "6006", evtB, event.FormatQuarantineID(bQuarantine)} {
			if strings.Contains(string(r.body), s) {
				t.Errorf("GET %s shows B's %s: %s", path, s, r.body)
			}
		}
	}
	if q := h.must(202, "POST", pa+"/replay", ta, map[string]any{"status": "dead"}); q["queued"] != float64(0) {
		t.Errorf("A's bulk replay of dead events: queued %v, want 0 (only B has one)", q["queued"])
	}

	if after := snapshot(h, b); after != before {
		t.Errorf("tenant B changed:\nbefore %s\nafter  %s", before, after)
	}
}
