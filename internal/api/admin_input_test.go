package api_test

import (
	"encoding/base64"
	"encoding/json"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/postgate/postgate/internal/event"
)

// badText is a value Postgres cannot store in a text column, spelled once
// for a JSON body and once for a query or path.
type badText struct {
	name  string
	json  string // inside a JSON string literal
	query string // URL-escaped
}

var badTexts = []badText{
	{"NUL", `x\u0000y`, "x%00y"},
	{"invalid UTF-8", "x\xffy", "x%FFy"},
}

// TestAdminTextInputs sends a NUL byte and invalid UTF-8 in every body
// field, query parameter and path parameter of every admin operation: none
// may answer 500 (Guarantee 5), and each answers a 422 problem whose
// errors[].location names the field.
func TestAdminTextInputs(t *testing.T) {
	h := newHarness(t)
	id, _ := h.createTenant("acme")
	h.must(201, "POST", "/admin/v1/tenants/"+id+"/apps", h.admin, map[string]any{"app_id": "1001", "app_secret": "app-secret-1001"})
	h.must(201, "POST", "/admin/v1/tenants/"+id+"/pages", h.admin, map[string]any{"page_id": "5005", "app_id": "1001"})
	tp := "/admin/v1/tenants/" + id

	// A body is JSON with @ where the bad value goes, inside a string.
	tests := []struct {
		name     string
		method   string
		path     string // @ is replaced by the escaped bad value
		body     string
		location string
	}{
		{"create tenant name", "POST", "/admin/v1/tenants", `{"name":"@","callback_url":"https://hooks.example.com/"}`, "body.name"},
		{"create tenant callback_url", "POST", "/admin/v1/tenants", `{"name":"n","callback_url":"https://hooks.example.com/@"}`, "body.callback_url"},
		{"create tenant events", "POST", "/admin/v1/tenants", `{"name":"n","callback_url":"https://hooks.example.com/","events":["@"]}`, "body.events[0]"},
		{"patch tenant name", "PATCH", tp, `{"name":"@"}`, "body.name"},
		{"patch tenant callback_url", "PATCH", tp, `{"callback_url":"https://hooks.example.com/@"}`, "body.callback_url"},
		{"patch tenant events", "PATCH", tp, `{"events":["@"]}`, "body.events[0]"},
		{"token ttl", "POST", tp + "/tokens", `{"ttl":"@"}`, "body.ttl"},
		{"app app_id", "POST", tp + "/apps", `{"app_id":"@","app_secret":"s"}`, "body.app_id"},
		{"app app_secret", "POST", tp + "/apps", `{"app_id":"3003","app_secret":"@"}`, "body.app_secret"},
		{"app verify_token", "POST", tp + "/apps", `{"app_id":"3003","app_secret":"s","verify_token":"0123456789abcdef@"}`, "body.verify_token"},
		{"patch app app_secret", "PATCH", tp + "/apps/1001", `{"app_secret":"@"}`, "body.app_secret"},
		{"page page_id", "POST", tp + "/pages", `{"page_id":"@","app_id":"1001"}`, "body.page_id"},
		{"page app_id", "POST", tp + "/pages", `{"page_id":"6006","app_id":"@"}`, "body.app_id"},
		{"page object", "POST", tp + "/pages", `{"page_id":"6006","app_id":"1001","object":"@"}`, "body.object"},
		{"bulk replay status", "POST", tp + "/replay", `{"status":"@"}`, "body.status"},
		{"bulk replay since", "POST", tp + "/replay", `{"status":"dead","since":"@"}`, "body.since"},
		{"bulk replay until", "POST", tp + "/replay", `{"status":"dead","until":"@"}`, "body.until"},

		{"tenants cursor", "GET", "/admin/v1/tenants?cursor=@", "", "query.cursor"},
		{"tenants limit", "GET", "/admin/v1/tenants?limit=@", "", "query.limit"},
		{"apps cursor", "GET", tp + "/apps?cursor=@", "", "query.cursor"},
		{"pages cursor", "GET", tp + "/pages?cursor=@", "", "query.cursor"},
		{"delete page app_id", "DELETE", tp + "/pages/5005?app_id=@", "", "query.app_id"},
		{"events status", "GET", tp + "/events?status=@", "", "query.status"},
		{"events type", "GET", tp + "/events?type=@", "", "query.type"},
		{"events page_id", "GET", tp + "/events?page_id=@", "", "query.page_id"},
		{"events mid", "GET", tp + "/events?mid=@", "", "query.mid"},
		{"events since", "GET", tp + "/events?since=@", "", "query.since"},
		{"events until", "GET", tp + "/events?until=@", "", "query.until"},
		{"events cursor", "GET", tp + "/events?cursor=@", "", "query.cursor"},
		{"events limit", "GET", tp + "/events?limit=@", "", "query.limit"},
		{"quarantine cursor", "GET", tp + "/quarantine?cursor=@", "", "query.cursor"},

		{"tenant id", "GET", "/admin/v1/tenants/@", "", "path.tenant_id"},
		{"app id", "GET", tp + "/apps/@", "", "path.app_id"},
		{"patch app id", "PATCH", tp + "/apps/@", `{"legacy_sha1":true}`, "path.app_id"},
		{"delete app id", "DELETE", tp + "/apps/@", "", "path.app_id"},
		{"delete page id", "DELETE", tp + "/pages/@", "", "path.page_id"},
		{"event id", "GET", tp + "/events/@", "", "path.event_id"},
		{"quarantine id", "GET", tp + "/quarantine/@", "", "path.quarantine_id"},
		{"replay event id", "POST", tp + "/events/@/replay", "", "path.event_id"},
	}
	for _, bt := range badTexts {
		for _, tt := range tests {
			t.Run(bt.name+"/"+tt.name, func(t *testing.T) {
				path := strings.ReplaceAll(tt.path, "@", bt.query)
				var body any
				if tt.body != "" {
					body = strings.ReplaceAll(tt.body, "@", bt.json)
				}
				r := h.do(tt.method, path, h.admin, body)
				wantProblem(t, r, 422, tt.location)
			})
		}
	}

	// Cursors are opaque, but a crafted one decodes to any key: a NUL in
	// it must not reach Postgres either.
	for _, list := range []string{"/apps", "/pages"} {
		for _, key := range []string{`["\u0000"]`, `["1\u0000","2"]`} {
			t.Run("crafted cursor "+list+" "+key, func(t *testing.T) {
				c := base64.RawURLEncoding.EncodeToString([]byte(key))
				wantProblem(t, h.do("GET", tp+list+"?cursor="+url.QueryEscape(c), h.admin, nil), 422, "query.cursor")
			})
		}
	}

	// A stray byte after an escaped backslash is still inside the string;
	// after a lone backslash it makes an invalid escape: a syntax error.
	t.Run("invalid UTF-8 after an escaped backslash", func(t *testing.T) {
		wantProblem(t, h.do("PATCH", tp, h.admin, "{\"name\":\"a\\\\\xff\"}"), 422, "body.name")
	})
	t.Run("invalid UTF-8 as an escape", func(t *testing.T) {
		wantProblem(t, h.do("PATCH", tp, h.admin, "{\"name\":\"a\\\xff\"}"), 400, "")
	})

	// Nothing was stored: the tenant is as it was, with its one app and Page.
	got := h.must(200, "GET", tp, h.admin, nil)
	if got["name"] != "acme" || got["callback_url"] != "https://hooks.example.com/meta" {
		t.Errorf("the tenant changed: %v", got)
	}
	for _, l := range []string{"/apps", "/pages"} {
		if items := h.must(200, "GET", tp+l, h.admin, nil)["items"].([]any); len(items) != 1 {
			t.Errorf("GET %s: got %d items, want 1", l, len(items))
		}
	}
	if items := h.must(200, "GET", "/admin/v1/tenants", h.admin, nil)["items"].([]any); len(items) != 1 {
		t.Errorf("got %d tenants, want 1", len(items))
	}
}

// wantProblem fails unless r is a problem+json with status want whose
// errors[].location includes location (when not empty). It never accepts
// a 500.
func wantProblem(t *testing.T, r response, want int, location string) {
	t.Helper()
	if r.status != want {
		t.Fatalf("got status %d, want %d: %s", r.status, want, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("got Content-Type %q, want application/problem+json", ct)
	}
	if location == "" {
		return
	}
	var p struct {
		Errors []struct {
			Location string `json:"location"`
			Message  string `json:"message"`
		} `json:"errors"`
	}
	if err := json.Unmarshal(r.body, &p); err != nil {
		t.Fatalf("problem is not JSON: %v: %s", err, r.body)
	}
	var locs []string
	for _, e := range p.Errors {
		if e.Location == location {
			return
		}
		locs = append(locs, e.Location)
	}
	t.Errorf("got error locations %q, want %q: %s", locs, location, r.body)
}

// TestEventTypeFilterEnum: the type filter of the events list accepts
// exactly event.Types, and says so in the OpenAPI document.
func TestEventTypeFilterEnum(t *testing.T) {
	h := newHarness(t)
	var doc struct {
		Paths map[string]map[string]struct {
			Parameters []struct {
				Name   string `json:"name"`
				Schema struct {
					Enum []string `json:"enum"`
				} `json:"schema"`
			} `json:"parameters"`
		} `json:"paths"`
	}
	if err := json.Unmarshal(h.do("GET", "/admin/v1/openapi.json", "", nil).body, &doc); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, p := range doc.Paths["/tenants/{tenant_id}/events"]["get"].Parameters {
		if p.Name == "type" {
			got = p.Schema.Enum
		}
	}
	if !slices.Equal(got, event.Types) {
		t.Errorf("events type filter enum: got %v, want event.Types %v", got, event.Types)
	}
	id, _ := h.createTenant("acme")
	for _, typ := range event.Types {
		h.must(200, "GET", "/admin/v1/tenants/"+id+"/events?type="+typ, h.admin, nil)
	}
	wantProblem(t, h.do("GET", "/admin/v1/tenants/"+id+"/events?type=message", h.admin, nil), 422, "query.type")
}
