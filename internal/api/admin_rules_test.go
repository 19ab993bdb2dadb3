package api_test

import (
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
