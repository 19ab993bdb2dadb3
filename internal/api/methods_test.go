package api_test

import (
	"net/http"
	"strings"
	"testing"
)

// TestMethodNotAllowed: an admin path that exists answers another method
// with 405 and the methods it takes in Allow (RFC 9110 section 15.5.6), as
// problem+json like every admin error; a path that does not exist stays
// 404 whatever the method.
func TestMethodNotAllowed(t *testing.T) {
	h := newHarness(t)
	id, _ := h.createTenant("allow")
	tests := []struct {
		method, path string
		want         int
		allow        []string // each must be listed
		notAllow     string   // must not be listed
	}{
		{http.MethodPut, "/admin/v1/tenants", 405, []string{"GET", "POST"}, "PUT"},
		{http.MethodDelete, "/admin/v1/tenants", 405, []string{"GET", "POST"}, "DELETE"},
		{http.MethodPost, "/admin/v1/tenants/" + id, 405, []string{"GET", "PATCH", "DELETE"}, "POST"},
		{http.MethodPut, "/admin/v1/tenants/" + id + "/apps/1001", 405, []string{"GET", "PATCH", "DELETE"}, "PUT"},
		{http.MethodGet, "/admin/v1/tenants/" + id + "/replay", 405, []string{"POST"}, "GET"},
		{http.MethodPost, "/admin/v1/openapi.json", 405, []string{"GET"}, "POST"},
		{http.MethodGet, "/admin/v1/nope", 404, nil, ""},
		{http.MethodPut, "/admin/v1/nope", 404, nil, ""},
		{http.MethodPut, "/admin/v1/tenants/" + id + "/nope", 404, nil, ""},
	}
	for _, tt := range tests {
		for _, token := range []string{h.admin, ""} {
			r := h.do(tt.method, tt.path, token, nil)
			name := tt.method + " " + tt.path
			if r.status != tt.want {
				t.Errorf("%s: got %d, want %d: %s", name, r.status, tt.want, r.body)
				continue
			}
			if ct := r.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/problem+json") {
				t.Errorf("%s: got Content-Type %q, want application/problem+json", name, ct)
			}
			if got := r.json(t)["status"]; got != float64(tt.want) {
				t.Errorf("%s: problem status %v, want %d", name, got, tt.want)
			}
			allow := r.header.Get("Allow")
			if tt.want == 404 {
				if allow != "" {
					t.Errorf("%s: 404 with Allow %q", name, allow)
				}
				continue
			}
			methods := map[string]bool{}
			for _, m := range strings.Split(allow, ",") {
				methods[strings.TrimSpace(m)] = true
			}
			for _, m := range tt.allow {
				if !methods[m] {
					t.Errorf("%s: Allow %q lacks %s", name, allow, m)
				}
			}
			if methods[tt.notAllow] {
				t.Errorf("%s: Allow %q lists the refused method", name, allow)
			}
		}
	}
}
