package api_test

import (
	"fmt"
	"reflect"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
)

// Placeholders in a wanted answer for values the server makes up.
const (
	anyTime   = "<an RFC 3339 time>"
	anyUUID   = "<a uuid>"
	anySecret = "<a whsec_ secret>"
)

var reSigningSecret = regexp.MustCompile(`^whsec_[A-Za-z0-9+/]{32}$`)

// addedTenantKeys are the keys a tenant answer gained with endpoints. They
// are additions a first-version client can ignore; every other key, and
// every value, must be as the first version answered.
var addedTenantKeys = []string{"default_endpoint_id"}

// wantAnswer fails unless got has exactly want's keys (plus extra, which
// must then be present) and want's values; a placeholder value only says
// what kind of value it must be.
func wantAnswer(t *testing.T, what string, got, want map[string]any, extra ...string) {
	t.Helper()
	var gotKeys, wantKeys []string
	for k := range got {
		gotKeys = append(gotKeys, k)
	}
	for k := range want {
		wantKeys = append(wantKeys, k)
	}
	wantKeys = append(wantKeys, extra...)
	slices.Sort(gotKeys)
	slices.Sort(wantKeys)
	if !slices.Equal(gotKeys, wantKeys) {
		t.Errorf("%s: got keys %q, want %q", what, gotKeys, wantKeys)
	}
	for k, w := range want {
		g, ok := got[k]
		if !ok {
			continue
		}
		switch w {
		case anyTime:
			s, _ := g.(string)
			if _, err := time.Parse(time.RFC3339Nano, s); err != nil {
				t.Errorf("%s: %s is %v, want an RFC 3339 time", what, k, g)
			}
		case anyUUID:
			s, _ := g.(string)
			if _, err := uuid.Parse(s); err != nil {
				t.Errorf("%s: %s is %v, want a uuid", what, k, g)
			}
		case anySecret:
			s, _ := g.(string)
			if !reSigningSecret.MatchString(s) {
				t.Errorf("%s: %s is %q, want whsec_ and 32 base64 characters", what, k, s)
			}
		default:
			if !reflect.DeepEqual(norm(g), norm(w)) {
				t.Errorf("%s: %s is %#v, want %#v", what, k, g, w)
			}
		}
	}
}

// norm is v with every time in it cut to microseconds: an answer that
// wrote a row shows the time it wrote, a read the time Postgres kept (the
// first version did the same).
func norm(v any) any {
	switch v := v.(type) {
	case string:
		if at, err := time.Parse(time.RFC3339Nano, v); err == nil {
			return at.Truncate(time.Microsecond).UTC().Format(time.RFC3339Nano)
		}
		return v
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, x := range v {
			out[k] = norm(x)
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, x := range v {
			out[i] = norm(x)
		}
		return out
	}
	return v
}

// with returns a copy of m with kv (key, value, ...) set; a nil value
// deletes the key.
func with(m map[string]any, kv ...any) map[string]any {
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		if kv[i+1] == nil {
			delete(out, kv[i].(string))
		} else {
			out[kv[i].(string)] = kv[i+1]
		}
	}
	return out
}

// strs is a JSON array of strings as encoding/json decodes it.
func strs(s ...string) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}

func timeOf(t *testing.T, m map[string]any, key string) time.Time {
	t.Helper()
	s, _ := m[key].(string)
	at, err := time.Parse(time.RFC3339Nano, s)
	if err != nil {
		t.Fatalf("%s is %v, not an RFC 3339 time", key, m[key])
	}
	return at.Truncate(time.Microsecond)
}

// TestFirstVersionScript runs a script written against the first version
// of the admin API (one callback per tenant) and checks that every answer
// has the first version's keys and values: the tenant fields now read and
// write the default endpoint, and a first-version client must not see the
// difference. It then checks that the default endpoint is an ordinary
// endpoint of the endpoints API, and that changes made there show through
// the tenant's first-version fields.
func TestFirstVersionScript(t *testing.T) {
	h := newHarness(t)
	const url = "https://hooks.example.com/meta"

	created := h.must(201, "POST", "/admin/v1/tenants", h.admin, map[string]any{
		"name": "Acme", "callback_url": url, "events": []string{"message_reads", "messages", "messages"},
		"rate": 50, "burst": 100,
	})
	id, _ := created["id"].(string)
	secret, _ := created["signing_secret"].(string)
	tp := "/admin/v1/tenants/" + id
	// The first version's answer: events de-duplicated in event.Types
	// order, zero limits absent, enabled, no rotation yet.
	want := map[string]any{
		"id": anyUUID, "name": "Acme", "callback_url": url, "events": strs("messages", "message_reads"),
		"rate": float64(50), "burst": float64(100), "deliver_test_events": true, "endpoint_enabled": true,
		"created_at": anyTime, "updated_at": anyTime,
	}
	wantAnswer(t, "create", created, with(want, "signing_secret", anySecret), addedTenantKeys...)
	createdAt, updatedAt := created["created_at"], timeOf(t, created, "updated_at")

	got := h.must(200, "GET", tp, h.admin, nil)
	wantAnswer(t, "GET after create", got, with(want, "id", id, "created_at", createdAt, "updated_at", created["updated_at"]), addedTenantKeys...)
	def, _ := got["default_endpoint_id"].(string)
	if !regexp.MustCompile(`^ep_[0-9a-f]{32}$`).MatchString(def) {
		t.Errorf("default_endpoint_id is %q, want ep_ and 32 hex digits", def)
	}

	// Each PATCH answers the whole tenant, as GET would, with a new
	// updated_at and no signing_secret.
	steps := []struct {
		name  string
		patch map[string]any
		kv    []any // how want changes
	}{
		{"events", map[string]any{"events": []string{"message_echoes"}}, []any{"events", strs("message_echoes")}},
		{"no events", map[string]any{"events": []string{}}, []any{"events", strs()}},
		{"events again", map[string]any{"events": []string{"standby", "messages"}}, []any{"events", strs("messages", "standby")}},
		{"rate 0 is the default", map[string]any{"rate": 0}, []any{"rate", nil}},
		{"deliver_test_events", map[string]any{"deliver_test_events": false}, []any{"deliver_test_events", false}},
		{"disable", map[string]any{"endpoint_enabled": false}, []any{"endpoint_enabled", false,
			"endpoint_disabled_at", anyTime, "endpoint_disabled_reason", "disabled through the admin API"}},
		{"disable again", map[string]any{"endpoint_enabled": false}, nil},
		{"enable", map[string]any{"endpoint_enabled": true}, []any{"endpoint_enabled", true,
			"endpoint_disabled_at", nil, "endpoint_disabled_reason", nil}},
		{"callback, name, concurrency", map[string]any{"callback_url": "https://hooks2.example.com/v2", "name": "  Acme 2 ", "concurrency": 4},
			[]any{"callback_url", "https://hooks2.example.com/v2", "name", "Acme 2", "concurrency", float64(4)}},
		{"burst 0", map[string]any{"burst": 0}, []any{"burst", nil}},
	}
	for _, st := range steps {
		want = with(want, st.kv...)
		p := h.must(200, "PATCH", tp, h.admin, st.patch)
		wantAnswer(t, "PATCH "+st.name, p, with(want, "id", id, "created_at", createdAt), addedTenantKeys...)
		if at := timeOf(t, p, "updated_at"); !at.After(updatedAt) {
			t.Errorf("PATCH %s: updated_at %v, want after %v", st.name, at, updatedAt)
		} else {
			updatedAt = at
		}
		g := h.must(200, "GET", tp, h.admin, nil)
		if !reflect.DeepEqual(norm(g), norm(p)) {
			t.Errorf("GET after PATCH %s: got %v, want the PATCH's answer %v", st.name, g, p)
		}
	}

	rot := h.must(200, "POST", tp+"/signing-secret/rotate", h.admin, nil)
	want = with(want, "id", id, "created_at", createdAt, "previous_signing_secret_expires_at", anyTime)
	wantAnswer(t, "rotate", rot, with(want, "signing_secret", anySecret), addedTenantKeys...)
	if rot["signing_secret"] == secret {
		t.Error("rotate answered the old signing secret")
	}
	if exp := timeOf(t, rot, "previous_signing_secret_expires_at"); exp.Sub(time.Now().Add(24*time.Hour)).Abs() > time.Minute {
		t.Errorf("previous_signing_secret_expires_at %v, want 24h from now", exp)
	}
	// The first version stamped updated_at on a rotation, as on any change.
	if at := timeOf(t, rot, "updated_at"); !at.After(updatedAt) {
		t.Errorf("rotate: updated_at %v, want after the last change %v", at, updatedAt)
	}
	got = h.must(200, "GET", tp, h.admin, nil)
	wantAnswer(t, "GET after rotate", got, with(want, "updated_at", rot["updated_at"],
		"previous_signing_secret_expires_at", rot["previous_signing_secret_expires_at"]), addedTenantKeys...)

	// A tenant created with nothing but a callback shows no events (the
	// first version's []), and the default limits.
	bare := h.must(201, "POST", "/admin/v1/tenants", h.admin, map[string]any{"name": "Bare", "callback_url": url})
	wantAnswer(t, "create bare", bare, map[string]any{
		"id": anyUUID, "name": "Bare", "callback_url": url, "events": strs(), "deliver_test_events": true,
		"endpoint_enabled": true, "created_at": anyTime, "updated_at": anyTime, "signing_secret": anySecret,
	}, addedTenantKeys...)
	bareGot := h.must(200, "GET", "/admin/v1/tenants/"+bare["id"].(string), h.admin, nil)

	// The list shows each tenant exactly as GET does.
	l := h.must(200, "GET", "/admin/v1/tenants?limit=1", h.admin, nil)
	items, _ := l["items"].([]any)
	next, _ := l["next_cursor"].(string)
	if len(items) != 1 || !reflect.DeepEqual(norm(items[0]), norm(got)) || next == "" {
		t.Fatalf("list, first page: got %v, want [the first tenant] and a cursor", l)
	}
	l = h.must(200, "GET", "/admin/v1/tenants?limit=1&cursor="+next, h.admin, nil)
	if items, _ := l["items"].([]any); len(items) != 1 || !reflect.DeepEqual(norm(items[0]), norm(bareGot)) || l["next_cursor"] != nil {
		t.Errorf("list, second page: got %v, want [the bare tenant] and no cursor", l)
	}

	t.Run("default endpoint", func(t *testing.T) {
		eps := h.must(200, "GET", tp+"/endpoints", h.admin, nil)
		items, _ := eps["items"].([]any)
		if len(items) != 1 {
			t.Fatalf("GET endpoints: got %v, want the default endpoint alone", eps)
		}
		ep := items[0].(map[string]any)
		for k, v := range map[string]any{
			"id": def, "default": true, "url": "https://hooks2.example.com/v2",
			"events": strs("messaging_postbacks", "messages", "standby"), "pages": strs(), "format": "standard",
			"signature": "hmac", "ordering": "none", "concurrency": float64(4), "deliver_test_events": false,
			"enabled": true, "previous_signing_secret_expires_at": rot["previous_signing_secret_expires_at"],
		} {
			if !reflect.DeepEqual(norm(ep[k]), norm(v)) {
				t.Errorf("default endpoint %s: got %#v, want %#v", k, ep[k], v)
			}
		}
		for _, k := range []string{"rate", "burst", "signing_secret", "public_key", "disabled_at"} {
			if _, ok := ep[k]; ok {
				t.Errorf("default endpoint has %s: %v", k, ep)
			}
		}

		// Changed through the endpoints API, read through the tenant.
		h.must(200, "PATCH", tp+"/endpoints/"+def, h.admin, map[string]any{
			"url": "https://hooks.example.com/v3", "events": []string{"messaging_postbacks", "message_reactions"},
			"rate": 7, "burst": 9, "concurrency": 0, "deliver_test_events": true, "enabled": false,
		})
		tn := h.must(200, "GET", tp, h.admin, nil)
		wantAnswer(t, "GET after the endpoint's PATCH", tn, with(want, "callback_url", "https://hooks.example.com/v3",
			"events", strs("message_reactions"), "rate", float64(7), "burst", float64(9), "concurrency", nil,
			"deliver_test_events", true, "endpoint_enabled", false, "endpoint_disabled_at", anyTime,
			"endpoint_disabled_reason", "disabled through the admin API", "updated_at", anyTime,
			"previous_signing_secret_expires_at", rot["previous_signing_secret_expires_at"]), addedTenantKeys...)
		h.must(200, "PATCH", tp+"/endpoints/"+def, h.admin, map[string]any{"enabled": true})
		if tn := h.must(200, "GET", tp, h.admin, nil); tn["endpoint_enabled"] != true || tn["endpoint_disabled_at"] != nil {
			t.Errorf("after enabling the default endpoint: got %v, want endpoint_enabled and no endpoint_disabled_at", tn)
		}
		// And the other way: the tenant's rotation is the endpoint's.
		r := h.must(200, "POST", tp+"/signing-secret/rotate", h.admin, nil)
		if e := h.must(200, "GET", tp+"/endpoints/"+def, h.admin, nil); norm(e["previous_signing_secret_expires_at"]) != norm(r["previous_signing_secret_expires_at"]) {
			t.Errorf("after the tenant's rotation the endpoint shows %v, want %v", e["previous_signing_secret_expires_at"], r["previous_signing_secret_expires_at"])
		}
	})

	r := h.do("DELETE", tp, h.admin, nil)
	if r.status != 204 || len(r.body) != 0 {
		t.Fatalf("DELETE: got %d %q, want 204 and no body", r.status, r.body)
	}
	wantProblem(t, h.do("GET", tp, h.admin, nil), 404, "")
	wantProblem(t, h.do("GET", tp+"/endpoints/"+def, h.admin, nil), 404, "")
	wantProblem(t, h.do("DELETE", tp, h.admin, nil), 404, "")
	l = h.must(200, "GET", "/admin/v1/tenants", h.admin, nil)
	if items, _ := l["items"].([]any); len(items) != 1 || items[0].(map[string]any)["id"] != bare["id"] {
		t.Errorf("list after DELETE: got %v, want the bare tenant alone", l)
	}
}

// TestFirstVersionEventsNamingPostbacks: the first version kept a tenant's
// events as given, so a script that named messaging_postbacks read it
// back. The default endpoint always takes postbacks, and the tenant's
// events are its events without them (tenant.legacyEvents): naming them
// changes nothing delivered, and they read back without them. This is the
// one difference a first-version script can see, documented in
// docs/forwarding.md; a column to echo them was not worth its keep.
func TestFirstVersionEventsNamingPostbacks(t *testing.T) {
	h := newHarness(t)
	created := h.must(201, "POST", "/admin/v1/tenants", h.admin, map[string]any{
		"name": "Acme", "callback_url": "https://hooks.example.com/meta", "events": []string{"messages", "messaging_postbacks"},
	})
	tp := "/admin/v1/tenants/" + created["id"].(string)
	for _, tt := range []struct {
		what string
		got  map[string]any
		want []any
	}{
		{"create", created, strs("messages")},
		{"GET", h.must(200, "GET", tp, h.admin, nil), strs("messages")},
		{"PATCH", h.must(200, "PATCH", tp, h.admin, map[string]any{"events": []string{"messaging_postbacks"}}), strs()},
		{"GET after PATCH", h.must(200, "GET", tp, h.admin, nil), strs()},
	} {
		if !reflect.DeepEqual(tt.got["events"], tt.want) {
			t.Errorf("%s: events %v, want %v", tt.what, tt.got["events"], tt.want)
		}
	}
	def := h.must(200, "GET", tp+"/endpoints/"+created["default_endpoint_id"].(string), h.admin, nil)
	if !reflect.DeepEqual(def["events"], strs("messaging_postbacks")) {
		t.Errorf("the default endpoint's events: got %v, want postbacks (always taken)", def["events"])
	}
}

// TestTenantWithoutCallback: callback_url is optional now; a tenant
// without one has no default endpoint, and the first-version fields that
// would need one are refused with a 422 naming callback_url (or a 409 for
// the rotation), never a 500.
func TestTenantWithoutCallback(t *testing.T) {
	h := newHarness(t)
	tn := h.must(201, "POST", "/admin/v1/tenants", h.admin, map[string]any{"name": "Later"})
	id, _ := tn["id"].(string)
	tp := "/admin/v1/tenants/" + id
	if tn["callback_url"] != "" || !reflect.DeepEqual(tn["events"], strs()) || tn["signing_secret"] != nil || tn["default_endpoint_id"] != nil {
		t.Errorf("create without callback: got %v, want an empty callback_url and events, no secret, no default endpoint", tn)
	}
	for _, f := range []map[string]any{{"events": []string{"messages"}}, {"rate": 5}, {"burst": 5}, {"concurrency": 5}, {"deliver_test_events": true}} {
		body := with(f, "name", "x")
		wantProblem(t, h.do("POST", "/admin/v1/tenants", h.admin, body), 422, "body.callback_url")
		wantProblem(t, h.do("PATCH", tp, h.admin, f), 422, "body.callback_url")
	}
	wantProblem(t, h.do("PATCH", tp, h.admin, map[string]any{"endpoint_enabled": true}), 422, "body.callback_url")
	wantProblem(t, h.do("POST", tp+"/signing-secret/rotate", h.admin, nil), 409, "")
	if eps := h.must(200, "GET", tp+"/endpoints", h.admin, nil); fmt.Sprint(eps["items"]) != "[]" {
		t.Errorf("endpoints of a tenant without callback: got %v, want none", eps)
	}

	// A callback_url given later creates the default endpoint, whose
	// secret that answer shows once.
	p := h.must(200, "PATCH", tp, h.admin, map[string]any{"callback_url": "https://hooks.example.com/late", "events": []string{"messages"}})
	if s, _ := p["signing_secret"].(string); !reSigningSecret.MatchString(s) {
		t.Errorf("PATCH creating the default endpoint: signing_secret %q, want a whsec_ secret", s)
	}
	if p["callback_url"] != "https://hooks.example.com/late" || !reflect.DeepEqual(p["events"], strs("messages")) ||
		!strings.HasPrefix(fmt.Sprint(p["default_endpoint_id"]), "ep_") {
		t.Errorf("PATCH creating the default endpoint: got %v", p)
	}
	if p := h.must(200, "PATCH", tp, h.admin, map[string]any{"callback_url": "https://hooks.example.com/later"}); p["signing_secret"] != nil {
		t.Errorf("PATCH of an existing default endpoint shows a signing_secret: %v", p)
	}
}
