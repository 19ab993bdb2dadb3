package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/postgate/postgate/internal/event"
	"github.com/postgate/postgate/internal/tenant"
)

// TestWalkthrough follows the README's "Admin API walk-through": create a
// tenant, register an app, register a Page, list them. It checks the
// shapes the README shows.
func TestWalkthrough(t *testing.T) {
	h := newHarness(t)

	tn := h.must(201, "POST", "/admin/v1/tenants", h.admin, map[string]any{
		"name": "Acme", "callback_url": "https://hooks.example.com/meta", "events": []string{"messages"},
	})
	id, _ := tn["id"].(string)
	if _, err := uuid.Parse(id); err != nil {
		t.Fatalf("tenant id %q is not a uuid", id)
	}
	if s, _ := tn["signing_secret"].(string); !regexp.MustCompile(`^whsec_[A-Za-z0-9+/]{32}$`).MatchString(s) {
		t.Errorf("got signing_secret %q, want whsec_ and the base64 of 24 bytes", s)
	}
	for k, want := range map[string]any{"name": "Acme", "callback_url": "https://hooks.example.com/meta", "deliver_test_events": true, "endpoint_enabled": true} {
		if tn[k] != want {
			t.Errorf("tenant %s: got %v, want %v", k, tn[k], want)
		}
	}
	if _, ok := tn["$schema"]; ok {
		t.Error("response carries huma's $schema field")
	}

	r := h.do("POST", "/admin/v1/tenants/"+id+"/apps", h.admin, map[string]any{"app_id": "123456789012345", "app_secret": "0123456789abcdef0123456789abcdef"})
	if r.status != 201 {
		t.Fatalf("register app: got %d, want 201: %s", r.status, r.body)
	}
	if l := r.header.Get("Link"); l != "" {
		t.Errorf("got a Link header %q, want none", l)
	}
	app := r.json(t)
	if got, want := app["webhook_url"], publicURL+"/webhook/123456789012345"; got != want {
		t.Errorf("got webhook_url %v, want %s", got, want)
	}
	if vt, _ := app["verify_token"].(string); len(vt) != 43 {
		t.Errorf("got verify_token %q, want 43 base64url characters (32 random bytes)", vt)
	}
	if _, ok := app["app_secret"]; ok {
		t.Error("the app's answer contains app_secret")
	}

	pg := h.must(201, "POST", "/admin/v1/tenants/"+id+"/pages", h.admin, map[string]any{"page_id": "987654321", "app_id": "123456789012345"})
	if pg["object"] != "page" || pg["tenant_id"] != id {
		t.Errorf("got Page %v, want object page of tenant %s", pg, id)
	}

	for _, tt := range []struct {
		path string
		key  string
		want string
	}{
		{"/admin/v1/tenants/" + id + "/apps", "app_id", "123456789012345"},
		{"/admin/v1/tenants/" + id + "/pages", "page_id", "987654321"},
		{"/admin/v1/tenants", "id", id},
	} {
		l := h.must(200, "GET", tt.path, h.admin, nil)
		items, _ := l["items"].([]any)
		if len(items) != 1 || items[0].(map[string]any)[tt.key] != tt.want {
			t.Errorf("GET %s: got %v, want one item with %s %s", tt.path, l, tt.key, tt.want)
		}
		if _, ok := l["next_cursor"]; ok {
			t.Errorf("GET %s: got next_cursor on the only page", tt.path)
		}
	}

	// The tenant's own token, minted by the admin, reaches the tenant.
	tok := h.must(201, "POST", "/admin/v1/tenants/"+id+"/tokens", h.admin, map[string]any{"ttl": "720h"})
	tt, _ := tok["token"].(string)
	exp, _ := time.Parse(time.RFC3339, tok["expires_at"].(string))
	if d := time.Until(exp); d < 719*time.Hour || d > 721*time.Hour {
		t.Errorf("got token expiring in %s, want 720h", d)
	}
	h.must(200, "GET", "/admin/v1/tenants/"+id+"/pages", tt, nil)
	h.must(201, "POST", "/admin/v1/tenants/"+id+"/tokens", h.admin, nil) // ttl defaults
}

// TestSecretsNeverShown: after creation no answer and no log line holds an
// app secret or a signing secret (the rotate answer holds only the new one).
func TestSecretsNeverShown(t *testing.T) {
	h := newHarness(t)
	id, signing := h.createTenant("acme")
	const appSecret = "app-secret-0123456789abcdef"
	const appSecret2 = "app-secret-rotated-0123456789"
	var bodies []string
	record := func(r response) response {
		bodies = append(bodies, string(r.body))
		return r
	}
	record(h.do("POST", "/admin/v1/tenants/"+id+"/apps", h.admin, map[string]any{"app_id": "42", "app_secret": appSecret}))
	// Failing requests that carry the secret must not echo it either.
	record(h.do("POST", "/admin/v1/tenants/"+id+"/apps", h.admin, map[string]any{"app_id": "42", "app_secret": appSecret}))
	record(h.do("POST", "/admin/v1/tenants/"+id+"/apps", h.admin, map[string]any{"app_id": "x", "app_secret": appSecret}))
	record(h.do("POST", "/admin/v1/tenants/"+id+"/apps", h.admin, map[string]any{"app_id": "43", "app_secret": strings.Repeat(appSecret, 20)}))
	record(h.do("POST", "/admin/v1/tenants", h.admin, map[string]any{"name": "x", "callback_url": "https://u:" + appSecret + "@hooks.example.com/"}))
	record(h.do("PATCH", "/admin/v1/tenants/"+id+"/apps/42", h.admin, map[string]any{"app_secret": appSecret2}))
	record(h.do("PATCH", "/admin/v1/tenants/"+id+"/apps/42", h.admin, map[string]any{"app_secret": appSecret2, "extra": appSecret}))
	for _, p := range []string{"", "/apps", "/apps/42", "/pages", "/events", "/quarantine"} {
		record(h.do("GET", "/admin/v1/tenants/"+id+p, h.admin, nil))
	}
	record(h.do("GET", "/admin/v1/tenants", h.admin, nil))
	rot := record(h.do("POST", "/admin/v1/tenants/"+id+"/signing-secret/rotate", h.admin, nil))
	newSigning, _ := rot.json(t)["signing_secret"].(string)
	if newSigning == "" || newSigning == signing {
		t.Fatalf("rotate: got signing_secret %q, want a new one", newSigning)
	}
	record(h.do("GET", "/admin/v1/tenants/"+id, h.admin, nil))

	for i, b := range bodies {
		for _, s := range []string{appSecret, appSecret2, signing} {
			if strings.Contains(b, s) {
				t.Errorf("answer %d contains a secret: %s", i, b)
			}
		}
	}
	logs := h.logs.String()
	if logs == "" {
		t.Fatal("no log lines captured; the test would prove nothing")
	}
	for _, s := range []string{appSecret, appSecret2, signing, newSigning, h.admin} {
		if strings.Contains(logs, s) {
			t.Errorf("the log holds a secret or token:\n%s", logs)
		}
	}

	// At rest the secrets are sealed: the plaintext is nowhere in the row.
	var raw []byte
	if err := h.db.Pool.QueryRow(context.Background(), `SELECT secret || coalesce(previous_secret, '') FROM apps WHERE app_id = '42'`).Scan(&raw); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(raw), appSecret) || strings.Contains(string(raw), appSecret2) {
		t.Error("an app secret is stored in plaintext")
	}
}

func TestSecretRotation(t *testing.T) {
	h := newHarness(t)
	id, signing := h.createTenant("acme")
	h.must(201, "POST", "/admin/v1/tenants/"+id+"/apps", h.admin, map[string]any{"app_id": "42", "app_secret": "old-secret"})

	app := h.must(200, "PATCH", "/admin/v1/tenants/"+id+"/apps/42", h.admin, map[string]any{"app_secret": "new-secret", "legacy_sha1": true})
	if app["legacy_sha1"] != true {
		t.Errorf("got legacy_sha1 %v, want true", app["legacy_sha1"])
	}
	exp, err := time.Parse(time.RFC3339, fmt.Sprint(app["previous_secret_expires_at"]))
	if err != nil || time.Until(exp) < 23*time.Hour || time.Until(exp) > 25*time.Hour {
		t.Errorf("got previous_secret_expires_at %v, want about 24h from now", app["previous_secret_expires_at"])
	}
	var cur, prev []byte
	if err := h.db.Pool.QueryRow(context.Background(), `SELECT secret, previous_secret FROM apps WHERE app_id = '42'`).Scan(&cur, &prev); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		ct      []byte
		binding string
		want    string
	}{{cur, tenant.AppSecretBinding("42"), "new-secret"}, {prev, tenant.AppPreviousSecretBinding("42"), "old-secret"}} {
		got, err := h.keys.Open(c.ct, c.binding)
		if err != nil || string(got) != c.want {
			t.Errorf("open %s: got %q, %v; want %q", c.binding, got, err, c.want)
		}
	}

	rot := h.must(200, "POST", "/admin/v1/tenants/"+id+"/signing-secret/rotate", h.admin, nil)
	newSigning, _ := rot["signing_secret"].(string)
	var ep string
	if err := h.db.Pool.QueryRow(context.Background(), `SELECT id::text, signing_secret, previous_signing_secret FROM endpoints
		WHERE tenant_id = $1 AND is_default`, id).Scan(&ep, &cur, &prev); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		ct      []byte
		binding string
		want    string
	}{{cur, tenant.SigningSecretBinding(ep), newSigning}, {prev, tenant.PreviousSigningSecretBinding(ep), signing}} {
		got, err := h.keys.Open(c.ct, c.binding)
		if err != nil || string(got) != c.want {
			t.Errorf("open %s: got %v; want the %s secret", c.binding, err, map[bool]string{true: "new", false: "old"}[c.want == newSigning])
		}
	}
	if rot["previous_signing_secret_expires_at"] == nil {
		t.Error("rotate: no previous_signing_secret_expires_at")
	}
}

func TestPatchTenant(t *testing.T) {
	h := newHarness(t)
	id, _ := h.createTenant("acme")
	if _, err := h.db.Pool.Exec(context.Background(),
		`UPDATE endpoints SET disabled_at = now(), disabled_reason = 'endpoint answered 410' WHERE tenant_id = $1 AND is_default`, id); err != nil {
		t.Fatal(err)
	}
	got := h.must(200, "GET", "/admin/v1/tenants/"+id, h.admin, nil)
	if got["endpoint_enabled"] != false || got["endpoint_disabled_reason"] != "endpoint answered 410" {
		t.Fatalf("got %v, want a disabled endpoint", got)
	}
	got = h.must(200, "PATCH", "/admin/v1/tenants/"+id, h.admin, map[string]any{
		"endpoint_enabled": true, "rate": 5, "events": []string{"message_reads", "messages", "messages"},
		"name": "Acme 2", "deliver_test_events": false, "callback_url": "https://hooks2.example.com/x",
	})
	want := map[string]any{"endpoint_enabled": true, "rate": float64(5), "name": "Acme 2", "deliver_test_events": false, "callback_url": "https://hooks2.example.com/x"}
	for k, w := range want {
		if got[k] != w {
			t.Errorf("after PATCH %s: got %v, want %v", k, got[k], w)
		}
	}
	if _, ok := got["endpoint_disabled_at"]; ok {
		t.Error("endpoint_disabled_at still set after re-enabling")
	}
	if ev := fmt.Sprint(got["events"]); ev != "[messages message_reads]" {
		t.Errorf("got events %s, want [messages message_reads] (deduplicated, in EventTypes order)", ev)
	}
	got = h.must(200, "PATCH", "/admin/v1/tenants/"+id, h.admin, map[string]any{"rate": 0})
	if _, ok := got["rate"]; ok {
		t.Errorf("rate 0 should return to the default (absent), got %v", got["rate"])
	}
	if got["name"] != "Acme 2" {
		t.Errorf("a PATCH without name changed it to %v", got["name"])
	}
}

func TestDeletes(t *testing.T) {
	h := newHarness(t)
	id, _ := h.createTenant("acme")
	for _, app := range []string{"1", "2"} {
		h.must(201, "POST", "/admin/v1/tenants/"+id+"/apps", h.admin, map[string]any{"app_id": app, "app_secret": "s"})
		h.must(201, "POST", "/admin/v1/tenants/"+id+"/pages", h.admin, map[string]any{"page_id": "100", "app_id": app})
	}
	h.must(201, "POST", "/admin/v1/tenants/"+id+"/pages", h.admin, map[string]any{"page_id": "200", "app_id": "1", "object": "instagram"})

	r := h.do("DELETE", "/admin/v1/tenants/"+id+"/pages/100", h.admin, nil)
	if r.status != 422 || !strings.Contains(string(r.body), "query.app_id") {
		t.Fatalf("delete a Page on two apps without app_id: got %d %s, want 422 naming query.app_id", r.status, r.body)
	}
	h.must(204, "DELETE", "/admin/v1/tenants/"+id+"/pages/100?app_id=2", h.admin, nil)
	h.must(204, "DELETE", "/admin/v1/tenants/"+id+"/pages/100", h.admin, nil) // now on one app only
	h.must(404, "DELETE", "/admin/v1/tenants/"+id+"/pages/100", h.admin, nil)

	h.must(204, "DELETE", "/admin/v1/tenants/"+id+"/apps/1", h.admin, nil)
	if l := h.must(200, "GET", "/admin/v1/tenants/"+id+"/pages", h.admin, nil); len(l["items"].([]any)) != 0 {
		t.Errorf("deleting an app left its Pages: %v", l)
	}
	h.must(404, "GET", "/admin/v1/tenants/"+id+"/apps/1", h.admin, nil)

	insertEvents(t, h, id, 3, time.Now())
	h.must(204, "DELETE", "/admin/v1/tenants/"+id, h.admin, nil)
	h.must(404, "GET", "/admin/v1/tenants/"+id, h.admin, nil)
	var n int
	if err := h.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM events WHERE tenant_id = $1`, id).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("deleting the tenant left %d events", n)
	}
}

// insertEvents adds n delivered events of tenantID received from at on,
// one millisecond apart, as the ingress would, and returns their ids.
func insertEvents(t *testing.T, h *harness, tenantID string, n int, at time.Time) []uuid.UUID {
	t.Helper()
	ids := make([]uuid.UUID, n)
	for i := range n {
		ids[i] = uuid.Must(uuid.NewV7())
		if _, err := h.db.Pool.Exec(context.Background(), `INSERT INTO events
			(id, tenant_id, page_id, app_id, dedup_key, type, status, attempts, received_at, delivered_at, body)
			VALUES ($1, $2, '100', '1', $3, 'messaging_postbacks', 'delivered', 1, $4, $4, $5)`,
			ids[i], tenantID, ids[i].String(), at.Add(time.Duration(i)*time.Millisecond), []byte(`{"id":"x"}`)); err != nil {
			t.Fatal(err)
		}
		if _, err := h.db.Pool.Exec(context.Background(), `INSERT INTO deliveries (tenant_id, event_id, endpoint_id, status, attempts, settled_at)
			SELECT $1, $2, id, 'delivered', 1, $3 FROM endpoints WHERE tenant_id = $1 AND is_default`,
			tenantID, ids[i], at.Add(time.Duration(i)*time.Millisecond)); err != nil {
			t.Fatal(err)
		}
	}
	return ids
}

func TestEvents(t *testing.T) {
	h := newHarness(t)
	id, _ := h.createTenant("acme")
	other, _ := h.createTenant("other")
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ids := insertEvents(t, h, id, 5, base)
	insertEvents(t, h, other, 2, base)
	if _, err := h.db.Pool.Exec(context.Background(), `UPDATE events SET status = 'dead', attempts = 11, delivered_at = NULL, dead_at = received_at WHERE id = ANY($1)`, ids[3:]); err != nil {
		t.Fatal(err)
	}
	if _, err := h.db.Pool.Exec(context.Background(), `UPDATE deliveries SET status = 'dead', attempts = 11 WHERE event_id = ANY($1)`, ids[3:]); err != nil {
		t.Fatal(err)
	}

	l := h.must(200, "GET", "/admin/v1/tenants/"+id+"/events?status=dead", h.admin, nil)
	items := l["items"].([]any)
	if len(items) != 2 || items[0].(map[string]any)["id"] != event.FormatID(ids[3]) {
		t.Fatalf("dead events: got %v, want %s and %s", l, event.FormatID(ids[3]), event.FormatID(ids[4]))
	}
	q := fmt.Sprintf("?since=%s&until=%s", base.Add(time.Millisecond).Format(time.RFC3339Nano), base.Add(3*time.Millisecond).Format(time.RFC3339Nano))
	if l := h.must(200, "GET", "/admin/v1/tenants/"+id+"/events"+q, h.admin, nil); len(l["items"].([]any)) != 2 {
		t.Errorf("since/until: got %d events, want 2 (since inclusive, until exclusive)", len(l["items"].([]any)))
	}
	if l := h.must(200, "GET", "/admin/v1/tenants/"+id+"/events?type=messages", h.admin, nil); len(l["items"].([]any)) != 0 {
		t.Errorf("type=messages: got %v, want none", l)
	}

	// Search by mid: among the tenant's registered Pages (or the one named),
	// never another tenant's event with the same mid.
	h.must(201, "POST", "/admin/v1/tenants/"+id+"/apps", h.admin, map[string]any{"app_id": "1", "app_secret": "s"})
	h.must(201, "POST", "/admin/v1/tenants/"+id+"/pages", h.admin, map[string]any{"page_id": "100", "app_id": "1"})
	if _, err := h.db.Pool.Exec(context.Background(), `UPDATE events SET dedup_key = 'm:m_AbC-1' WHERE id = $1 OR (tenant_id = $2 AND dedup_key = (SELECT min(dedup_key) FROM events WHERE tenant_id = $2))`,
		ids[1], other); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/events?mid=m_AbC-1", "/events?mid=m_AbC-1&page_id=100", "/events?mid=m_AbC-1&status=delivered"} {
		l := h.must(200, "GET", "/admin/v1/tenants/"+id+path, h.admin, nil)
		if items := l["items"].([]any); len(items) != 1 || items[0].(map[string]any)["id"] != event.FormatID(ids[1]) {
			t.Errorf("%s: got %v, want only %s", path, l, event.FormatID(ids[1]))
		}
	}
	for _, path := range []string{"/events?mid=m_AbC-2", "/events?mid=m_AbC-1&page_id=200", "/events?mid=m_AbC-1&status=dead"} {
		if l := h.must(200, "GET", "/admin/v1/tenants/"+id+path, h.admin, nil); len(l["items"].([]any)) != 0 {
			t.Errorf("%s: got %v, want none", path, l)
		}
	}
	if l := h.must(200, "GET", "/admin/v1/tenants/"+other+"/events?mid=m_AbC-1&page_id=100", h.admin, nil); len(l["items"].([]any)) != 1 ||
		l["items"].([]any)[0].(map[string]any)["id"] == event.FormatID(ids[1]) {
		t.Errorf("the other tenant's search by mid: got %v, want its own event", l)
	}

	evt := event.FormatID(ids[4])
	e := h.must(200, "GET", "/admin/v1/tenants/"+id+"/events/"+evt, h.admin, nil)
	if e["status"] != "dead" || fmt.Sprint(e["attempts"]) != "[]" || fmt.Sprint(e["payload"]) != "map[id:x]" {
		t.Errorf("got event %v, want dead with empty attempts and its payload", e)
	}
	h.must(404, "GET", "/admin/v1/tenants/"+other+"/events/"+evt, h.admin, nil)

	e = h.must(202, "POST", "/admin/v1/tenants/"+id+"/events/"+evt+"/replay", h.admin, nil)
	if e["id"] != evt || e["status"] != "pending" || e["attempt_count"] != float64(0) || e["next_attempt_at"] == nil {
		t.Errorf("replayed event: got %v, want %s pending with 0 attempts", e, evt)
	}
	var status string
	var due bool
	if err := h.db.Pool.QueryRow(context.Background(), `SELECT d.status, d.next_attempt_at <= now() AND d.leased_until IS NULL FROM events e JOIN deliveries d ON d.tenant_id = e.tenant_id AND d.event_id = e.id WHERE e.id = $1`, ids[4]).Scan(&status, &due); err != nil {
		t.Fatal(err)
	}
	if status != "pending" || !due {
		t.Errorf("after replay: got status %s due %v, want pending and due now", status, due)
	}
	h.must(404, "POST", "/admin/v1/tenants/"+other+"/events/"+evt+"/replay", h.admin, nil)

	r := h.must(202, "POST", "/admin/v1/tenants/"+id+"/replay", h.admin, map[string]any{"status": "delivered", "since": base.Add(time.Millisecond)})
	if r["queued"] != float64(2) {
		t.Errorf("bulk replay of delivered since the second event: got %v, want 2", r["queued"])
	}
	r = h.must(202, "POST", "/admin/v1/tenants/"+other+"/replay", h.admin, map[string]any{"status": "dead"})
	if r["queued"] != float64(0) {
		t.Errorf("bulk replay of another tenant's dead events: got %v, want 0", r["queued"])
	}

	qid := uuid.Must(uuid.NewV7())
	if _, err := h.db.Pool.Exec(context.Background(), `INSERT INTO quarantine (id, tenant_id, app_id, reason, body) VALUES ($1, $2, '1', 'not JSON', $3)`,
		qid, id, []byte("\xffnot json")); err != nil {
		t.Fatal(err)
	}
	ql := h.must(200, "GET", "/admin/v1/tenants/"+id+"/quarantine", h.admin, nil)
	qi := ql["items"].([]any)
	// The list carries each body's size and first 4 KiB (whole here, as
	// the first version's list did); a long body is cut there and marked,
	// and the detail route has all of it.
	if len(qi) != 1 || qi[0].(map[string]any)["id"] != event.FormatQuarantineID(qid) || qi[0].(map[string]any)["body_base64"] != "/25vdCBqc29u" ||
		qi[0].(map[string]any)["size"] != float64(9) || qi[0].(map[string]any)["truncated"] != false {
		t.Errorf("quarantine: got %v", ql)
	}
	qd := h.must(200, "GET", "/admin/v1/tenants/"+id+"/quarantine/"+event.FormatQuarantineID(qid), h.admin, nil)
	if qd["body_base64"] != "/25vdCBqc29u" || qd["size"] != float64(9) || qd["truncated"] != false {
		t.Errorf("quarantined body: got %v", qd)
	}
	long := uuid.Must(uuid.NewV7())
	if _, err := h.db.Pool.Exec(context.Background(), `INSERT INTO quarantine (id, tenant_id, app_id, reason, body) VALUES ($1, $2, '1', 'not JSON', $3)`,
		long, id, bytes.Repeat([]byte("x"), 10000)); err != nil {
		t.Fatal(err)
	}
	ql = h.must(200, "GET", "/admin/v1/tenants/"+id+"/quarantine", h.admin, nil)
	if qi := ql["items"].([]any); len(qi) != 2 || len(qi[1].(map[string]any)["body"].(string)) != 4096 ||
		qi[1].(map[string]any)["size"] != float64(10000) || qi[1].(map[string]any)["truncated"] != true {
		t.Errorf("long quarantined body in the list: got %.300v", ql)
	}
	qd = h.must(200, "GET", "/admin/v1/tenants/"+id+"/quarantine/"+event.FormatQuarantineID(long), h.admin, nil)
	if len(qd["body"].(string)) != 10000 || qd["truncated"] != false {
		t.Errorf("long quarantined body: got %d bytes, truncated %v", len(qd["body"].(string)), qd["truncated"])
	}
	// A cut that falls inside a character keeps the text before it.
	euros := uuid.Must(uuid.NewV7())
	if _, err := h.db.Pool.Exec(context.Background(), `INSERT INTO quarantine (id, tenant_id, app_id, reason, body) VALUES ($1, $2, '1', 'not JSON', $3)`,
		euros, id, []byte(strings.Repeat("€", 2000))); err != nil {
		t.Fatal(err)
	}
	ql = h.must(200, "GET", "/admin/v1/tenants/"+id+"/quarantine", h.admin, nil)
	if qi := ql["items"].([]any); len(qi) != 3 || qi[2].(map[string]any)["body"] != strings.Repeat("€", 1365) || qi[2].(map[string]any)["truncated"] != true {
		t.Errorf("a quarantined body cut inside a character: got %.200v", qi[len(qi)-1])
	}
	h.must(404, "GET", "/admin/v1/tenants/"+other+"/quarantine/"+event.FormatQuarantineID(qid), h.admin, nil)
	if l := h.must(200, "GET", "/admin/v1/tenants/"+other+"/quarantine", h.admin, nil); len(l["items"].([]any)) != 0 {
		t.Errorf("another tenant sees the quarantine: %v", l)
	}
}

// TestPaginationStable pages through tenants, Pages and events while rows
// are added between pages: every row that existed at the start is seen
// exactly once, in order, and nothing is seen twice.
func TestPaginationStable(t *testing.T) {
	h := newHarness(t)
	var tenants []string
	for i := range 5 {
		id, _ := h.createTenant(fmt.Sprint("t", i))
		tenants = append(tenants, id)
	}
	owner := tenants[0]
	h.must(201, "POST", "/admin/v1/tenants/"+owner+"/apps", h.admin, map[string]any{"app_id": "1", "app_secret": "s"})
	var pages []string
	for i := range 5 {
		p := fmt.Sprint(100 + i*10)
		h.must(201, "POST", "/admin/v1/tenants/"+owner+"/pages", h.admin, map[string]any{"page_id": p, "app_id": "1"})
		pages = append(pages, p)
	}
	base := time.Now().Add(-time.Hour)
	var events []string
	for _, id := range insertEvents(t, h, owner, 5, base) {
		events = append(events, event.FormatID(id))
	}

	added := 0
	tests := []struct {
		name string
		path string
		key  string
		want []string
		add  func()
	}{
		{"tenants", "/admin/v1/tenants", "id", tenants, func() { h.createTenant(fmt.Sprint("new", added)) }},
		{"pages", "/admin/v1/tenants/" + owner + "/pages", "page_id", pages, func() {
			// Both before and after the cursor in sort order.
			for _, p := range []string{fmt.Sprint(1000 + added), fmt.Sprint(900 + added)} {
				h.must(201, "POST", "/admin/v1/tenants/"+owner+"/pages", h.admin, map[string]any{"page_id": p, "app_id": "1"})
			}
		}},
		{"events", "/admin/v1/tenants/" + owner + "/events", "id", events, func() { insertEvents(t, h, owner, 2, time.Now()) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var seen []string
			cursor := ""
			for range 20 {
				path := tt.path + "?limit=2"
				if cursor != "" {
					path += "&cursor=" + cursor
				}
				l := h.must(200, "GET", path, h.admin, nil)
				for _, it := range l["items"].([]any) {
					seen = append(seen, it.(map[string]any)[tt.key].(string))
				}
				next, _ := l["next_cursor"].(string)
				if next == "" {
					break
				}
				cursor = next
				added++
				tt.add()
			}
			for _, w := range tt.want {
				if c := count(seen, w); c != 1 {
					t.Errorf("%s seen %d times, want once; seen %v", w, c, seen)
				}
			}
			for i, s := range seen {
				if count(seen, s) != 1 {
					t.Errorf("%s seen twice: %v", s, seen)
				}
				if i > 0 && tt.name != "pages" && !sortedAfter(seen[i-1], s) {
					t.Errorf("out of order: %s before %s", seen[i-1], s)
				}
			}
		})
	}
}

func count(s []string, v string) int {
	n := 0
	for _, x := range s {
		if x == v {
			n++
		}
	}
	return n
}

func sortedAfter(a, b string) bool { return strings.Compare(a, b) < 0 }

func TestOpenAPI(t *testing.T) {
	h := newHarness(t)
	r := h.do("GET", "/admin/v1/openapi.json", "", nil)
	if r.status != 200 {
		t.Fatalf("GET /admin/v1/openapi.json without a token: got %d, want 200", r.status)
	}
	var doc struct {
		OpenAPI string                                `json:"openapi"`
		Servers []struct{ URL string }                `json:"servers"`
		Paths   map[string]map[string]json.RawMessage `json:"paths"`
		Comps   struct {
			Schemas map[string]struct {
				Properties map[string]struct {
					Items struct {
						Enum []string `json:"enum"`
					} `json:"items"`
				} `json:"properties"`
				AdditionalProperties *bool `json:"additionalProperties"`
			} `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(r.body, &doc); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(doc.OpenAPI, "3.1") {
		t.Errorf("got openapi %q, want 3.1.x", doc.OpenAPI)
	}
	if len(doc.Servers) != 1 || doc.Servers[0].URL != publicURL+"/admin/v1" {
		t.Errorf("got servers %v, want %s/admin/v1", doc.Servers, publicURL)
	}
	want := []string{
		"POST /tenants", "GET /tenants",
		"GET /tenants/{tenant_id}", "PATCH /tenants/{tenant_id}", "DELETE /tenants/{tenant_id}",
		"POST /tenants/{tenant_id}/tokens", "POST /tenants/{tenant_id}/signing-secret/rotate",
		"POST /tenants/{tenant_id}/apps", "GET /tenants/{tenant_id}/apps",
		"GET /tenants/{tenant_id}/apps/{app_id}", "PATCH /tenants/{tenant_id}/apps/{app_id}", "DELETE /tenants/{tenant_id}/apps/{app_id}",
		"POST /tenants/{tenant_id}/pages", "GET /tenants/{tenant_id}/pages", "DELETE /tenants/{tenant_id}/pages/{page_id}",
		"GET /tenants/{tenant_id}/events", "GET /tenants/{tenant_id}/events/{event_id}",
		"POST /tenants/{tenant_id}/events/{event_id}/replay", "POST /tenants/{tenant_id}/replay",
		"GET /tenants/{tenant_id}/quarantine", "GET /tenants/{tenant_id}/quarantine/{quarantine_id}",
		"POST /tenants/{tenant_id}/endpoints", "GET /tenants/{tenant_id}/endpoints",
		"GET /tenants/{tenant_id}/endpoints/{endpoint_id}", "PATCH /tenants/{tenant_id}/endpoints/{endpoint_id}",
		"DELETE /tenants/{tenant_id}/endpoints/{endpoint_id}", "POST /tenants/{tenant_id}/endpoints/{endpoint_id}/signing-secret/rotate",
		"POST /tenants/{tenant_id}/endpoints/{endpoint_id}/test",
		"PATCH /tenants/{tenant_id}/pages/{page_id}", "POST /tenants/{tenant_id}/portal-links",
		"POST /tenants/{tenant_id}/apps/{app_id}/subscribe", "GET /tenants/{tenant_id}/apps/{app_id}/health",
		"POST /tenants/{tenant_id}/pages/{page_id}/subscribe", "GET /tenants/{tenant_id}/pages/{page_id}/health",
	}
	var got []string
	for p, ops := range doc.Paths {
		for m := range ops {
			got = append(got, strings.ToUpper(m)+" "+p)
		}
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("got operations\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// Request bodies reject unknown fields; the events enum is event.Types
	// (an endpoint's also "*" and postgate.health).
	filterTypes := append(append([]string{"*"}, event.Types...), event.TypeHealth)
	bodies, enums := 0, 0
	for name, s := range doc.Comps.Schemas {
		if !strings.HasSuffix(name, "InBody") { // request bodies
			continue
		}
		bodies++
		if s.AdditionalProperties == nil || *s.AdditionalProperties {
			t.Errorf("schema %s allows additional properties", name)
		}
		if e, ok := s.Properties["events"]; ok {
			enums++
			want := event.Types
			if strings.Contains(name, "Endpoint") {
				want = filterTypes
			}
			if !slices.Equal(e.Items.Enum, want) {
				t.Errorf("schema %s: events enum %v, want %v", name, e.Items.Enum, want)
			}
		}
	}
	if bodies < 9 || enums != 4 {
		t.Errorf("checked %d request bodies and %d events enums, want at least 9 and 4", bodies, enums)
	}
}

// TestInternalErrorIsGeneric: a failure below the service answers 500 with
// a generic problem whose error id is in the log line with the detail.
func TestInternalErrorIsGeneric(t *testing.T) {
	h := newHarness(t)
	id, _ := h.createTenant("acme")
	if _, err := h.db.Pool.Exec(context.Background(), `ALTER TABLE tenants RENAME TO tenants_gone`); err != nil {
		t.Fatal(err)
	}
	r := h.do("GET", "/admin/v1/tenants/"+id, h.admin, nil)
	if r.status != 500 || r.header.Get("Content-Type") != "application/problem+json" {
		t.Fatalf("got %d %s, want a 500 problem", r.status, r.header.Get("Content-Type"))
	}
	p := r.json(t)
	instance, _ := p["instance"].(string)
	errID, ok := strings.CutPrefix(instance, "urn:postgate:error:")
	if !ok || len(errID) != 16 || !strings.Contains(fmt.Sprint(p["detail"]), errID) {
		t.Fatalf("got problem %v, want an error id in instance and detail", p)
	}
	if strings.Contains(string(r.body), "tenants") || strings.Contains(string(r.body), "SQLSTATE") {
		t.Errorf("the 500 shows the underlying error: %s", r.body)
	}
	var line map[string]any
	for _, l := range strings.Split(h.logs.String(), "\n") {
		if strings.Contains(l, errID) {
			_ = json.Unmarshal([]byte(l), &line)
		}
	}
	if line["level"] != "ERROR" || line["tenant_id"] != id || line["op"] != "getTenant" || !strings.Contains(fmt.Sprint(line["err"]), "tenants") {
		t.Errorf("got log line %v, want an ERROR with the error id, tenant_id, op and the detail", line)
	}
}
