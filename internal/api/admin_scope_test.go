package api_test

import (
	"strings"
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
