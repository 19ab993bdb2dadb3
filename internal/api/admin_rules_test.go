package api_test

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestCallbackURLEveryReason: an http callback on the metadata address is
// one 422 naming callback_url that gives both reasons, not only the first.
func TestCallbackURLEveryReason(t *testing.T) {
	h := newHarness(t)
	id, _ := h.createTenant("acme")
	for _, r := range []response{
		h.do("POST", "/admin/v1/tenants", h.admin, map[string]any{"name": "x", "callback_url": "http://169.254.169.254/latest/meta-data"}),
		h.do("PATCH", "/admin/v1/tenants/"+id, h.admin, map[string]any{"callback_url": "http://169.254.169.254/"}),
	} {
		wantProblem(t, r, 422, "body.callback_url")
		for _, w := range []string{"https", "cloud metadata"} {
			if !strings.Contains(string(r.body), w) {
				t.Errorf("problem does not say %q: %s", w, r.body)
			}
		}
	}
}

// TestRegistrationRevealsNoOtherTenant: registering an app or a Page
// tells tenant A nothing about tenant B beyond "this app is taken": a Page
// on B's app is the same 422 as on an app nobody has, and an app B holds
// is the same 409 as one A holds. B's data is untouched.
func TestRegistrationRevealsNoOtherTenant(t *testing.T) {
	h := newHarness(t)
	a, _ := h.createTenant("tenant-a")
	b, _ := h.createTenant("tenant-b-secret-name")
	ta := h.tenantToken(a)
	h.must(201, "POST", "/admin/v1/tenants/"+a+"/apps", ta, map[string]any{"app_id": "1001", "app_secret": "app-secret-a"})
	h.must(201, "POST", "/admin/v1/tenants/"+a+"/pages", ta, map[string]any{"page_id": "5005", "app_id": "1001"})
	h.must(201, "POST", "/admin/v1/tenants/"+b+"/apps", h.admin, map[string]any{"app_id": "2002", "app_secret": "app-secret-b"})
	h.must(201, "POST", "/admin/v1/tenants/"+b+"/pages", h.admin, map[string]any{"page_id": "6006", "app_id": "2002"})
	h.must(201, "POST", "/admin/v1/tenants/"+b+"/pages", h.admin, map[string]any{"page_id": "5005", "app_id": "2002"})
	before := snapshot(h, b)

	noLeak := func(t *testing.T, r response) {
		t.Helper()
		for _, s := range []string{b, "tenant-b-secret-name", "2002", "6006"} {
			if strings.Contains(string(r.body), s) {
				t.Errorf("the answer reveals %q: %s", s, r.body)
			}
		}
	}
	pages := "/admin/v1/tenants/" + a + "/pages"
	t.Run("Page on another tenant's app is the 422 of an unknown app", func(t *testing.T) {
		unknown := h.do("POST", pages, ta, map[string]any{"page_id": "7007", "app_id": "9999"})
		wantProblem(t, unknown, 422, "body.app_id")
		for _, page := range []string{"6006", "7007"} { // B has 6006 on 2002; nobody has 7007
			r := h.do("POST", pages, ta, map[string]any{"page_id": page, "app_id": "2002"})
			wantProblem(t, r, 422, "body.app_id")
			noLeak(t, r)
			if string(r.body) != string(unknown.body) {
				t.Errorf("Page %s on another tenant's app: got %s, want the answer for an unknown app %s", page, r.body, unknown.body)
			}
		}
	})
	t.Run("an app another tenant holds is the 409 of one this tenant holds", func(t *testing.T) {
		own := h.do("POST", "/admin/v1/tenants/"+a+"/apps", ta, map[string]any{"app_id": "1001", "app_secret": "x"})
		wantProblem(t, own, 409, "body.app_id")
		r := h.do("POST", "/admin/v1/tenants/"+a+"/apps", ta, map[string]any{"app_id": "2002", "app_secret": "x"})
		wantProblem(t, r, 409, "body.app_id")
		noLeak(t, r)
		if strings.ReplaceAll(string(own.body), "1001", "2002") != string(r.body) {
			t.Errorf("app held by another tenant: got %s, want the answer for this tenant's own app %s", r.body, own.body)
		}
	})
	t.Run("a (Page, app) this tenant has is a 409 about its own data", func(t *testing.T) {
		r := h.do("POST", pages, ta, map[string]any{"page_id": "5005", "app_id": "1001"})
		wantProblem(t, r, 409, "body.page_id")
		noLeak(t, r)
	})
	if after := snapshot(h, b); after != before {
		t.Errorf("tenant B changed:\nbefore %s\nafter  %s", before, after)
	}
}

// openAPIOperation is the OpenAPI description of one operation.
func openAPIOperation(t *testing.T, h *harness, method, path string) (description string, props map[string]string) {
	t.Helper()
	var doc struct {
		Paths map[string]map[string]struct {
			Description string `json:"description"`
			RequestBody struct {
				Content map[string]struct {
					Schema struct {
						Ref string `json:"$ref"`
					} `json:"schema"`
				} `json:"content"`
			} `json:"requestBody"`
		} `json:"paths"`
		Components struct {
			Schemas map[string]struct {
				Properties map[string]struct {
					Description string `json:"description"`
				} `json:"properties"`
			} `json:"schemas"`
		} `json:"components"`
	}
	if err := json.Unmarshal(h.do("GET", "/admin/v1/openapi.json", "", nil).body, &doc); err != nil {
		t.Fatal(err)
	}
	op, ok := doc.Paths[path][strings.ToLower(method)]
	if !ok {
		t.Fatalf("no operation %s %s in the OpenAPI document", method, path)
	}
	props = map[string]string{}
	ref := op.RequestBody.Content["application/json"].Schema.Ref
	for name, p := range doc.Components.Schemas[strings.TrimPrefix(ref, "#/components/schemas/")].Properties {
		props[name] = p.Description
	}
	return op.Description, props
}

// TestRegistrationDocumented: the OpenAPI document says what registering
// an app or a Page answers when the app is not the caller's to use.
func TestRegistrationDocumented(t *testing.T) {
	h := newHarness(t)
	tests := []struct {
		path string
		want []string
	}{
		{"/tenants/{tenant_id}/apps", []string{"409", "one tenant", "never"}},
		{"/tenants/{tenant_id}/pages", []string{"422", "another tenant", "409"}},
	}
	for _, tt := range tests {
		desc, _ := openAPIOperation(t, h, "POST", tt.path)
		for _, w := range tt.want {
			if !strings.Contains(desc, w) {
				t.Errorf("POST %s: description %q does not mention %q", tt.path, desc, w)
			}
		}
	}
}

// TestLimitsZeroMeansDefault: rate, burst and concurrency 0 mean the
// gateway's TENANT_* default on create as on PATCH (the tenant then shows
// none), and the OpenAPI document says so for each field of both.
func TestLimitsZeroMeansDefault(t *testing.T) {
	h := newHarness(t)
	for _, path := range []string{"/tenants", "/tenants/{tenant_id}"} {
		method := map[string]string{"/tenants": "POST", "/tenants/{tenant_id}": "PATCH"}[path]
		_, props := openAPIOperation(t, h, method, path)
		for field, env := range map[string]string{"rate": "TENANT_RATE", "burst": "TENANT_BURST", "concurrency": "TENANT_CONCURRENCY"} {
			if d := props[field]; !strings.Contains(d, "0 ") || !strings.Contains(d, env) {
				t.Errorf("%s %s: %s is documented as %q, want it to say that 0 means %s", method, path, field, d, env)
			}
		}
	}

	created := h.must(201, "POST", "/admin/v1/tenants", h.admin, map[string]any{
		"name": "zero", "callback_url": "https://hooks.example.com/", "rate": 0, "burst": 0, "concurrency": 0})
	id := created["id"].(string)
	set := h.must(200, "PATCH", "/admin/v1/tenants/"+id, h.admin, map[string]any{"rate": 5, "burst": 7, "concurrency": 3})
	reset := h.must(200, "PATCH", "/admin/v1/tenants/"+id, h.admin, map[string]any{"burst": 0})
	for _, tt := range []struct {
		name string
		got  map[string]any
		want map[string]any // nil: absent, the default
	}{
		{"created with 0", created, map[string]any{"rate": nil, "burst": nil, "concurrency": nil}},
		{"patched", set, map[string]any{"rate": float64(5), "burst": float64(7), "concurrency": float64(3)}},
		{"burst patched to 0", reset, map[string]any{"rate": float64(5), "burst": nil, "concurrency": float64(3)}},
		{"read back", h.must(200, "GET", "/admin/v1/tenants/"+id, h.admin, nil), map[string]any{"rate": float64(5), "burst": nil, "concurrency": float64(3)}},
	} {
		for k, w := range tt.want {
			if got, ok := tt.got[k]; got != w || (w == nil && ok) {
				t.Errorf("%s: %s is %v, want %v (nil: absent, the gateway's default)", tt.name, k, got, w)
			}
		}
	}
}
