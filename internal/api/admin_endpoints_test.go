package api_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/postgate/postgate/internal/event"
)

var (
	reEndpointID = regexp.MustCompile(`^ep_[0-9a-f]{32}$`)
	rePublicKey  = regexp.MustCompile(`^whpk_[A-Za-z0-9+/]{43}=$`)
)

// createEndpoint creates an endpoint of tenant id with body and returns
// the answer.
func (h *harness) createEndpoint(id string, body map[string]any) map[string]any {
	h.t.Helper()
	return h.must(201, "POST", "/admin/v1/tenants/"+id+"/endpoints", h.admin, body)
}

// wantPublicKey fails unless k is whpk_ and the base64 of 32 bytes.
func wantPublicKey(t *testing.T, what string, k any) {
	t.Helper()
	s, _ := k.(string)
	raw, err := base64.StdEncoding.DecodeString(strings.TrimPrefix(s, "whpk_"))
	if !rePublicKey.MatchString(s) || err != nil || len(raw) != 32 {
		t.Errorf("%s: public_key %q, want whpk_ and the base64 of 32 bytes", what, s)
	}
}

// TestEndpointsCRUD: create (hmac, ed25519, meta), list with a cursor,
// get, patch every field, disable and enable, rotate, delete. A secret is
// in the answer that made it and nowhere else.
func TestEndpointsCRUD(t *testing.T) {
	h := newHarness(t)
	id, _ := h.createTenant("acme")
	tp := "/admin/v1/tenants/" + id
	start := time.Now()

	// hmac, every default.
	hm := h.createEndpoint(id, map[string]any{"url": "https://hooks.example.com/crm"})
	hmID, _ := hm["id"].(string)
	secret, _ := hm["signing_secret"].(string)
	if !reEndpointID.MatchString(hmID) {
		t.Errorf("endpoint id %q, want ep_ and 32 hex digits", hmID)
	}
	if !reSigningSecret.MatchString(secret) {
		t.Errorf("hmac endpoint: signing_secret %q, want whsec_ and the base64 of 24 bytes", secret)
	}
	wantAnswer(t, "create hmac", hm, map[string]any{
		"id": hmID, "default": false, "url": "https://hooks.example.com/crm", "description": "",
		"events": strs("messaging_postbacks"), "pages": strs(), "format": "standard", "signature": "hmac",
		"ordering": "none", "deliver_test_events": true, "enabled": true, "created_at": anyTime, "updated_at": anyTime,
		"signing_secret": secret,
	})

	// ed25519: a public key, no secret.
	ed := h.createEndpoint(id, map[string]any{
		"url": "https://hooks2.example.com/ed", "signature": "ed25519", "description": "analytics",
		"events": []string{"messages", "*", "postgate.health"}, "pages": []string{"200", "100", "200"},
		"rate": 10, "burst": 20, "concurrency": 3, "deliver_test_events": false,
	})
	edID, _ := ed["id"].(string)
	if _, ok := ed["signing_secret"]; ok {
		t.Errorf("ed25519 endpoint answers a signing_secret: %v", ed)
	}
	wantPublicKey(t, "create ed25519", ed["public_key"])
	wantAnswer(t, "create ed25519", ed, map[string]any{
		"id": edID, "default": false, "url": "https://hooks2.example.com/ed", "description": "analytics",
		"events": strs("*", "postgate.health"), "pages": strs("100", "200"), "format": "standard", "signature": "ed25519",
		"ordering": "none", "rate": float64(10), "burst": float64(20), "concurrency": float64(3),
		"deliver_test_events": false, "enabled": true, "public_key": ed["public_key"], "created_at": anyTime, "updated_at": anyTime,
	})

	// meta: signed with the app's secret, so no secret of its own to show
	// beyond the hmac one it keeps for a later change of format.
	mt := h.createEndpoint(id, map[string]any{"url": "https://hooks.example.com/bot", "format": "meta", "events": []string{"messages", "messaging_postbacks"}})
	mtID, _ := mt["id"].(string)
	if mt["format"] != "meta" || mt["signature"] != "hmac" || !reflect.DeepEqual(mt["events"], strs("messaging_postbacks", "messages")) {
		t.Errorf("create meta: got %v", mt)
	}

	// Reads never show a secret.
	assertNoSecret := func(t *testing.T, what string, body []byte) {
		t.Helper()
		if strings.Contains(string(body), "signing_secret") || strings.Contains(string(body), secret) ||
			strings.Contains(string(body), "whsec_") || strings.Contains(string(body), "whsk_") {
			t.Errorf("%s shows a secret: %s", what, body)
		}
	}
	for _, ep := range []string{hmID, edID, mtID} {
		r := h.do("GET", tp+"/endpoints/"+ep, h.admin, nil)
		if r.status != 200 {
			t.Fatalf("GET %s: got %d: %s", ep, r.status, r.body)
		}
		assertNoSecret(t, "GET "+ep, r.body)
	}
	got := h.must(200, "GET", tp+"/endpoints/"+edID, h.admin, nil)
	if !reflect.DeepEqual(norm(got), norm(with(ed))) {
		t.Errorf("GET ed25519 endpoint: got %v, want the create answer %v", got, ed)
	}

	// List: creation order (the default endpoint first), page by page.
	var listed []string
	cursor := ""
	for page := 0; ; page++ {
		if page > 4 {
			t.Fatal("the list does not end")
		}
		r := h.do("GET", tp+"/endpoints?limit=2&cursor="+cursor, h.admin, nil)
		if r.status != 200 {
			t.Fatalf("list: got %d: %s", r.status, r.body)
		}
		assertNoSecret(t, "list", r.body)
		l := r.json(t)
		items, _ := l["items"].([]any)
		for _, it := range items {
			listed = append(listed, it.(map[string]any)["id"].(string))
		}
		next, _ := l["next_cursor"].(string)
		if next == "" {
			break
		}
		if len(items) != 2 {
			t.Errorf("a page with a next_cursor has %d items, want 2", len(items))
		}
		cursor = next
	}
	def := h.must(200, "GET", tp, h.admin, nil)["default_endpoint_id"].(string)
	if want := []string{def, hmID, edID, mtID}; !reflect.DeepEqual(listed, want) {
		t.Errorf("listed %v, want %v", listed, want)
	}

	// PATCH every field.
	patch := map[string]any{
		"url": "https://hooks2.example.com/crm2", "description": "CRM ✓", "events": []string{"message_reads", "messages"},
		"pages": []string{"300"}, "format": "meta", "ordering": "none", "rate": 5, "burst": 6, "concurrency": 7,
		"deliver_test_events": false, "enabled": false,
	}
	p := h.must(200, "PATCH", tp+"/endpoints/"+hmID, h.admin, patch)
	wantAnswer(t, "PATCH every field", p, map[string]any{
		"id": hmID, "default": false, "url": "https://hooks2.example.com/crm2", "description": "CRM ✓",
		"events": strs("messages", "message_reads"), "pages": strs("300"), "format": "meta", "signature": "hmac",
		"ordering": "none", "rate": float64(5), "burst": float64(6), "concurrency": float64(7),
		"deliver_test_events": false, "enabled": false, "disabled_at": anyTime, "disabled_reason": "disabled through the admin API",
		"created_at": hm["created_at"], "updated_at": anyTime,
	})
	if got := h.must(200, "GET", tp+"/endpoints/"+hmID, h.admin, nil); !reflect.DeepEqual(norm(got), norm(p)) {
		t.Errorf("GET after PATCH: got %v, want the PATCH's answer %v", got, p)
	}
	// Zero limits return to the defaults; enabling clears the disabled state.
	// Back to the standard format: a meta endpoint's own secret was never
	// shown, so a new one is made and shown in this answer.
	p = h.must(200, "PATCH", tp+"/endpoints/"+hmID, h.admin, map[string]any{"rate": 0, "burst": 0, "concurrency": 0, "enabled": true, "format": "standard", "pages": []string{}})
	if sec, _ := p["signing_secret"].(string); !strings.HasPrefix(sec, "whsec_") {
		t.Errorf("PATCH meta to standard: signing_secret %v, want a new whsec_ secret", p["signing_secret"])
	}
	for _, k := range []string{"rate", "burst", "concurrency", "disabled_at", "disabled_reason"} {
		if _, ok := p[k]; ok {
			t.Errorf("PATCH back to defaults and enabled: %s is still there: %v", k, p)
		}
	}
	if p["enabled"] != true || p["format"] != "standard" || !reflect.DeepEqual(p["pages"], strs()) {
		t.Errorf("PATCH back: got %v", p)
	}
	// A new signature makes new signing material, shown in that answer.
	p = h.must(200, "PATCH", tp+"/endpoints/"+hmID, h.admin, map[string]any{"signature": "ed25519"})
	wantPublicKey(t, "PATCH to ed25519", p["public_key"])
	if _, ok := p["signing_secret"]; ok || p["signature"] != "ed25519" {
		t.Errorf("PATCH to ed25519: got %v, want a public key and no signing_secret", p)
	}
	p = h.must(200, "PATCH", tp+"/endpoints/"+hmID, h.admin, map[string]any{"signature": "hmac"})
	if s, _ := p["signing_secret"].(string); !reSigningSecret.MatchString(s) || s == secret || p["public_key"] != nil {
		t.Errorf("PATCH back to hmac: got %v, want a new whsec_ secret and no public key", p)
	} else {
		secret = s
	}
	// An empty PATCH changes nothing but is fine.
	h.must(200, "PATCH", tp+"/endpoints/"+hmID, h.admin, map[string]any{})

	// Rotation: a new secret; the old one signs until 24h from now.
	rot := h.must(200, "POST", tp+"/endpoints/"+hmID+"/signing-secret/rotate", h.admin, nil)
	if s, _ := rot["signing_secret"].(string); !reSigningSecret.MatchString(s) || s == secret {
		t.Errorf("rotate hmac: signing_secret %v, want a new whsec_ secret", rot["signing_secret"])
	}
	if exp := timeOf(t, rot, "previous_signing_secret_expires_at"); exp.Sub(start.Add(24*time.Hour)).Abs() > time.Minute {
		t.Errorf("rotate hmac: previous_signing_secret_expires_at %v, want 24h from now", exp)
	}
	if _, ok := rot["previous_public_key"]; ok {
		t.Errorf("rotate hmac shows a previous_public_key: %v", rot)
	}
	rot = h.must(200, "POST", tp+"/endpoints/"+edID+"/signing-secret/rotate", h.admin, nil)
	wantPublicKey(t, "rotate ed25519", rot["public_key"])
	if rot["public_key"] == ed["public_key"] || rot["previous_public_key"] != ed["public_key"] || rot["signing_secret"] != nil ||
		rot["previous_signing_secret_expires_at"] == nil {
		t.Errorf("rotate ed25519: got %v, want a new public key, the old one as previous_public_key, an expiry, no signing_secret", rot)
	}
	if got := h.must(200, "GET", tp+"/endpoints/"+edID, h.admin, nil); got["previous_public_key"] != ed["public_key"] || got["public_key"] != rot["public_key"] {
		t.Errorf("GET after rotating ed25519: got %v", got)
	}

	// Delete: gone from GET and the list; a second delete is a 404.
	r := h.do("DELETE", tp+"/endpoints/"+mtID, h.admin, nil)
	if r.status != 204 || len(r.body) != 0 {
		t.Fatalf("DELETE: got %d %q, want 204", r.status, r.body)
	}
	for _, m := range []string{"GET", "DELETE"} {
		wantProblem(t, h.do(m, tp+"/endpoints/"+mtID, h.admin, nil), 404, "")
	}
	wantProblem(t, h.do("PATCH", tp+"/endpoints/"+mtID, h.admin, map[string]any{"enabled": true}), 404, "")
	wantProblem(t, h.do("POST", tp+"/endpoints/"+mtID+"/signing-secret/rotate", h.admin, nil), 404, "")
	wantProblem(t, h.do("POST", tp+"/endpoints/"+mtID+"/test", h.admin, nil), 404, "")
	l := h.must(200, "GET", tp+"/endpoints", h.admin, nil)
	if strings.Contains(asJSON(l), mtID) || len(l["items"].([]any)) != 3 {
		t.Errorf("list after DELETE: got %v, want 3 endpoints without %s", l, mtID)
	}
	// The default endpoint can be deleted too; the tenant then has none.
	h.must(204, "DELETE", tp+"/endpoints/"+def, h.admin, nil)
	if tn := h.must(200, "GET", tp, h.admin, nil); tn["default_endpoint_id"] != nil || tn["callback_url"] != "" {
		t.Errorf("tenant after deleting its default endpoint: got %v", tn)
	}
}

// asJSON is v as JSON (map keys sorted), to search or compare.
func asJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

// TestEndpointScoping: a tenant token reaches no endpoint of another
// tenant, by that tenant's path or its own; another tenant's endpoint id
// in its own replay or events filter picks nothing of either tenant; and
// the other tenant's endpoints read back as before.
func TestEndpointScoping(t *testing.T) {
	h := newHarness(t)
	a, _ := h.createTenant("tenant-a")
	b, _ := h.createTenant("tenant-b")
	ta := h.tenantToken(a)
	pa, pb := "/admin/v1/tenants/"+a, "/admin/v1/tenants/"+b
	epB := h.createEndpoint(b, map[string]any{"url": "https://hooks.example.com/b", "events": []string{"*"}})["id"].(string)
	epA := h.createEndpoint(a, map[string]any{"url": "https://hooks.example.com/a"})["id"].(string)
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	evA := insertEvents(t, h, a, 1, base)[0]
	evB := insertEvents(t, h, b, 1, base)[0]
	if _, err := h.db.Pool.Exec(context.Background(), `INSERT INTO deliveries (tenant_id, event_id, endpoint_id, status, attempts, settled_at)
		VALUES ($1, $2, $3, 'dead', 3, now())`, b, evB, mustEndpointUUID(t, epB)); err != nil {
		t.Fatal(err)
	}
	endpointsOf := func(tp string) string {
		t.Helper()
		var s strings.Builder
		for _, it := range h.must(200, "GET", tp+"/endpoints", h.admin, nil)["items"].([]any) {
			s.WriteString(asJSON(it) + "\n")
		}
		return s.String()
	}
	beforeB := endpointsOf(pb) + snapshot(h, b)

	tests := []struct {
		method, path string
		body         any
		want         int
	}{
		{"GET", pb + "/endpoints", nil, 404},
		{"POST", pb + "/endpoints", map[string]any{"url": "https://hooks.example.com/steal"}, 404},
		{"GET", pb + "/endpoints/" + epB, nil, 404},
		{"PATCH", pb + "/endpoints/" + epB, map[string]any{"url": "https://hooks.example.com/steal", "enabled": false}, 404},
		{"DELETE", pb + "/endpoints/" + epB, nil, 404},
		{"POST", pb + "/endpoints/" + epB + "/signing-secret/rotate", nil, 404},
		{"POST", pb + "/endpoints/" + epB + "/test", nil, 404},
		{"GET", pa + "/endpoints/" + epB, nil, 404},
		{"PATCH", pa + "/endpoints/" + epB, map[string]any{"url": "https://hooks.example.com/steal", "enabled": false}, 404},
		{"DELETE", pa + "/endpoints/" + epB, nil, 404},
		{"POST", pa + "/endpoints/" + epB + "/signing-secret/rotate", nil, 404},
		{"POST", pa + "/endpoints/" + epB + "/test", nil, 404},
		{"POST", pa + "/events/" + event.FormatID(evA) + "/replay", map[string]any{"endpoint_id": epB}, 422},
		{"POST", pb + "/events/" + event.FormatID(evB) + "/replay", map[string]any{"endpoint_id": epB}, 404},
	}
	for _, tt := range tests {
		t.Run(tt.method+" "+strings.NewReplacer(a, "A", b, "B", epB, "epB").Replace(tt.path), func(t *testing.T) {
			r := h.do(tt.method, tt.path, ta, tt.body)
			wantProblem(t, r, tt.want, "")
			for _, s := range []string{b, epB, "tenant-b", "hooks.example.com/b"} {
				if strings.Contains(string(r.body), s) {
					t.Errorf("the answer names B's %s: %s", s, r.body)
				}
			}
		})
	}
	// A's events filtered by B's endpoint: refused as not A's (B's event
	// was delivered there; nothing of it is read).
	h.must(422, "GET", pa+"/events?endpoint_id="+epB, ta, nil)
	// A's bulk replay to B's endpoint: refused as not A's, nothing queued.
	h.must(422, "POST", pa+"/replay", ta, map[string]any{"status": "dead", "endpoint_id": epB})
	// A's own endpoint works with A's token.
	h.must(200, "GET", pa+"/endpoints/"+epA, ta, nil)
	if l := h.must(200, "GET", pa+"/endpoints", ta, nil); strings.Contains(asJSON(l), epB) || len(l["items"].([]any)) != 2 {
		t.Errorf("A's endpoints: got %v, want its default and %s", l, epA)
	}
	if after := endpointsOf(pb) + snapshot(h, b); after != beforeB {
		t.Errorf("tenant B changed:\nbefore %s\nafter  %s", beforeB, after)
	}
	var status string
	if err := h.db.Pool.QueryRow(context.Background(), `SELECT status FROM deliveries WHERE endpoint_id = $1 AND event_id = $2`,
		mustEndpointUUID(t, epB), evB).Scan(&status); err != nil || status != "dead" {
		t.Errorf("B's delivery: got %q, %v; want dead, untouched", status, err)
	}
}

func mustEndpointUUID(t *testing.T, id string) uuid.UUID {
	t.Helper()
	u, err := event.ParseEndpointID(id)
	if err != nil {
		t.Fatalf("endpoint id %q: %v", id, err)
	}
	return u
}
