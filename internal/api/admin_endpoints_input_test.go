package api_test

import (
	"encoding/json"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/postgate/postgate/internal/event"
)

// mark is put in bad values: an answer that contains it echoes the input.
const mark = "MARKq7"

// wantField fails unless r is a problem+json with status want, naming
// location (huma names a missing property at its parent, "expected
// required property x ..."), never carrying the input (errors[].value or
// the mark).
func wantField(t *testing.T, r response, want int, location string) {
	t.Helper()
	if r.status != want {
		t.Fatalf("got status %d, want %d: %s", r.status, want, r.body)
	}
	if ct := r.header.Get("Content-Type"); ct != "application/problem+json" {
		t.Errorf("got Content-Type %q, want application/problem+json", ct)
	}
	if strings.Contains(string(r.body), mark) {
		t.Errorf("the problem echoes the input: %s", r.body)
	}
	var p struct {
		Errors []map[string]any `json:"errors"`
	}
	if err := json.Unmarshal(r.body, &p); err != nil {
		t.Fatalf("problem is not JSON: %v: %s", err, r.body)
	}
	if location == "" {
		return
	}
	parent, field, _ := strings.Cut(location, ".")
	var locs []string
	found := false
	for _, e := range p.Errors {
		loc, _ := e["location"].(string)
		msg, _ := e["message"].(string)
		locs = append(locs, loc)
		found = found || loc == location || (loc == parent && strings.Contains(msg, "property "+field+" "))
		if _, ok := e["value"]; ok {
			t.Errorf("problem carries the input value at %s: %s", loc, r.body)
		}
	}
	if !found {
		t.Errorf("got error locations %q, want %q: %s", locs, location, r.body)
	}
}

// TestEndpointBadInput: every field of the endpoint operations, and the
// endpoint ids of the event operations, answer a bad value with a 4xx
// problem naming the field (422 with errors[].location), without echoing
// the value, and never a 500; nothing is stored.
func TestEndpointBadInput(t *testing.T) {
	h := newHarness(t) // CALLBACK_ALLOW_PRIVATE off
	id, _ := h.createTenant("acme")
	tp := "/admin/v1/tenants/" + id
	ep := h.createEndpoint(id, map[string]any{"url": "https://hooks.example.com/a"})["id"].(string)
	ed := h.createEndpoint(id, map[string]any{"url": "https://hooks.example.com/ed", "signature": "ed25519"})["id"].(string)
	mt := h.createEndpoint(id, map[string]any{"url": "https://hooks.example.com/meta", "format": "meta"})["id"].(string)
	evt := event.FormatID(insertEvents(t, h, id, 1, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))[0])
	epPath := tp + "/endpoints/" + ep

	pages := func(n int) string {
		p := make([]string, n)
		for i := range p {
			p[i] = strconv.Quote(strconv.Itoa(100000 + i))
		}
		return "[" + strings.Join(p, ",") + "]"
	}
	manyEvents := "[" + strings.Repeat(`"messages",`, 32) + `"messages"]`

	// Each body field with its bad values (raw JSON), the location they
	// must name, and whether the check applies to PATCH as well.
	fields := []struct {
		name, value, location string
	}{
		{"url http", `"http://hooks.example.com/` + mark + `"`, "body.url"},
		{"url private", `"https://internal.example.com/` + mark + `"`, "body.url"},
		{"url loopback literal", `"https://127.0.0.1/` + mark + `"`, "body.url"},
		{"url loopback v6", `"https://[::1]/` + mark + `"`, "body.url"},
		{"url metadata", `"https://metadata.example.com/` + mark + `"`, "body.url"},
		{"url one private address", `"https://mixed.example.com/` + mark + `"`, "body.url"},
		{"url unresolvable", `"https://nowhere.example.com/` + mark + `"`, "body.url"},
		{"url user info", `"https://user:` + mark + `@hooks.example.com/"`, "body.url"},
		{"url fragment", `"https://hooks.example.com/#` + mark + `"`, "body.url"},
		{"url relative", `"/` + mark + `"`, "body.url"},
		{"url ftp", `"ftp://hooks.example.com/` + mark + `"`, "body.url"},
		{"url empty", `""`, "body.url"},
		{"url too long", `"https://hooks.example.com/` + mark + strings.Repeat("a", 2048) + `"`, "body.url"},
		{"url NUL", `"https://hooks.example.com/` + mark + `\u0000"`, "body.url"},
		{"url invalid UTF-8", "\"https://hooks.example.com/" + mark + "\xff\"", "body.url"},
		{"url not a string", `5`, "body.url"},
		{"description NUL", `"` + mark + `\u0000"`, "body.description"},
		{"description invalid UTF-8", "\"" + mark + "\xfe\"", "body.description"},
		{"description too long", `"` + mark + strings.Repeat("é", 200) + `"`, "body.description"},
		{"description not a string", `["` + mark + `"]`, "body.description"},
		{"events unknown type", `["message_` + mark + `"]`, "body.events[0]"},
		{"events upper case", `["MESSAGES"]`, "body.events[0]"},
		{"events NUL", `["messages\u0000` + mark + `"]`, "body.events[0]"},
		{"events invalid UTF-8", "[\"messages\xff" + mark + "\"]", "body.events[0]"},
		{"events empty", `[]`, "body.events"},
		{"events too many", manyEvents, "body.events"},
		{"events a string", `"messages"`, "body.events"},
		{"events not strings", `[1]`, "body.events[0]"},
		{"pages not digits", `["12ab` + mark + `"]`, "body.pages"},
		{"pages empty id", `[""]`, "body.pages"},
		{"pages too long id", `["` + strings.Repeat("1", 21) + `"]`, "body.pages"},
		{"pages NUL", `["1\u0000` + mark + `"]`, "body.pages"},
		{"pages invalid UTF-8", "[\"1\xff" + mark + "\"]", "body.pages"},
		{"pages over 1000", pages(1001), "body.pages"},
		{"pages numbers", `[123]`, "body.pages[0]"},
		{"format unknown", `"xml` + mark + `"`, "body.format"},
		{"format NUL", `"standard\u0000` + mark + `"`, "body.format"},
		{"signature unknown", `"rsa` + mark + `"`, "body.signature"},
		{"signature invalid UTF-8", "\"hmac\xff" + mark + "\"", "body.signature"},
		{"ordering unknown", `"random` + mark + `"`, "body.ordering"},
		{"rate negative", `-1`, "body.rate"},
		{"rate too big", `1000001`, "body.rate"},
		{"rate a string", `"5"`, "body.rate"},
		{"rate a fraction", `1.5`, "body.rate"},
		{"burst negative", `-1`, "body.burst"},
		{"burst too big", `1000001`, "body.burst"},
		{"concurrency negative", `-1`, "body.concurrency"},
		{"concurrency too big", `99999999999`, "body.concurrency"},
		{"deliver_test_events a string", `"yes"`, "body.deliver_test_events"},
	}
	for _, f := range fields {
		key, _, _ := strings.Cut(f.name, " ")
		t.Run("create/"+f.name, func(t *testing.T) {
			body := `{"url":"https://hooks.example.com/ok",` + strconv.Quote(key) + `:` + f.value + `}`
			if key == "url" {
				body = `{"url":` + f.value + `}`
			}
			wantField(t, h.do("POST", tp+"/endpoints", h.admin, body), 422, f.location)
		})
		t.Run("patch/"+f.name, func(t *testing.T) {
			wantField(t, h.do("PATCH", epPath, h.admin, `{`+strconv.Quote(key)+`:`+f.value+`}`), 422, f.location)
		})
	}

	other := []struct {
		name         string
		method, path string
		body         string
		want         int
		location     string
	}{
		{"create without url", "POST", tp + "/endpoints", `{"description":"` + mark + `"}`, 422, "body.url"},
		{"create meta with ed25519", "POST", tp + "/endpoints", `{"url":"https://hooks.example.com/` + mark + `","format":"meta","signature":"ed25519"}`, 422, "body.signature"},
		{"create unknown field", "POST", tp + "/endpoints", `{"url":"https://hooks.example.com/","secret":"` + mark + `"}`, 422, "body.secret"},
		{"create with a signing secret", "POST", tp + "/endpoints", `{"url":"https://hooks.example.com/","signing_secret":"whsec_` + mark + `"}`, 422, "body.signing_secret"},
		{"create with an id", "POST", tp + "/endpoints", `{"url":"https://hooks.example.com/","id":"ep_` + mark + `"}`, 422, "body.id"},
		{"create default", "POST", tp + "/endpoints", `{"url":"https://hooks.example.com/","default":true}`, 422, "body.default"},
		{"create enabled", "POST", tp + "/endpoints", `{"url":"https://hooks.example.com/","enabled":false}`, 422, "body.enabled"},
		{"create an array", "POST", tp + "/endpoints", `["` + mark + `"]`, 422, "body"},
		{"create not JSON", "POST", tp + "/endpoints", `{"url":` + mark, 400, ""},
		{"patch unknown field", "PATCH", epPath, `{"public_key":"whpk_` + mark + `"}`, 422, "body.public_key"},
		{"patch enabled a string", "PATCH", epPath, `{"enabled":"` + mark + `"}`, 422, "body.enabled"},
		{"patch meta endpoint to ed25519", "PATCH", tp + "/endpoints/" + mt, `{"signature":"ed25519"}`, 422, "body.signature"},
		{"patch ed25519 endpoint to meta", "PATCH", tp + "/endpoints/" + ed, `{"format":"meta"}`, 422, "body.signature"},

		{"events filter not an endpoint id", "GET", tp + "/events?endpoint_id=ep_" + mark, "", 422, "query.endpoint_id"},
		{"events filter short hex", "GET", tp + "/events?endpoint_id=ep_0123", "", 422, "query.endpoint_id"},
		{"events filter other prefix", "GET", tp + "/events?endpoint_id=evt_" + strings.Repeat("0", 32), "", 422, "query.endpoint_id"},
		{"events filter NUL", "GET", tp + "/events?endpoint_id=ep_%00" + mark, "", 422, "query.endpoint_id"},
		{"events filter invalid UTF-8", "GET", tp + "/events?endpoint_id=ep_%FF" + mark, "", 422, "query.endpoint_id"},
		{"events filter too long", "GET", tp + "/events?endpoint_id=ep_" + mark + strings.Repeat("0", 64), "", 422, "query.endpoint_id"},
		{"events sender NUL", "GET", tp + "/events?sender=%00" + mark, "", 422, "query.sender"},
		{"events sender invalid UTF-8", "GET", tp + "/events?sender=%FF" + mark, "", 422, "query.sender"},
		{"events sender too long", "GET", tp + "/events?sender=" + mark + strings.Repeat("x", 512), "", 422, "query.sender"},
		{"replay endpoint_id malformed", "POST", tp + "/events/" + evt + "/replay", `{"endpoint_id":"ep_` + mark + `"}`, 422, "body.endpoint_id"},
		{"replay endpoint_id NUL", "POST", tp + "/events/" + evt + "/replay", `{"endpoint_id":"ep_\u0000` + mark + `"}`, 422, "body.endpoint_id"},
		{"replay endpoint_id unknown", "POST", tp + "/events/" + evt + "/replay", `{"endpoint_id":"ep_` + strings.Repeat("0", 31) + `1"}`, 422, "body.endpoint_id"},
		// The nil uuid is how the code says "no endpoint": as an id it must
		// not mean "every endpoint".
		{"events filter nil uuid", "GET", tp + "/events?endpoint_id=ep_" + strings.Repeat("0", 32), "", 422, "query.endpoint_id"},
		{"replay endpoint_id nil uuid", "POST", tp + "/events/" + evt + "/replay", `{"endpoint_id":"ep_` + strings.Repeat("0", 32) + `"}`, 422, "body.endpoint_id"},
		{"bulk replay endpoint_id nil uuid", "POST", tp + "/replay", `{"status":"delivered","endpoint_id":"ep_` + strings.Repeat("0", 32) + `"}`, 422, "body.endpoint_id"},
		{"replay endpoint_id a number", "POST", tp + "/events/" + evt + "/replay", `{"endpoint_id":5}`, 422, "body.endpoint_id"},
		{"replay unknown field", "POST", tp + "/events/" + evt + "/replay", `{"endpoint":"` + mark + `"}`, 422, "body.endpoint"},
		{"bulk replay endpoint_id malformed", "POST", tp + "/replay", `{"status":"dead","endpoint_id":"` + mark + `"}`, 422, "body.endpoint_id"},
		{"bulk replay endpoint_id invalid UTF-8", "POST", tp + "/replay", "{\"status\":\"dead\",\"endpoint_id\":\"ep_\xff" + mark + "\"}", 422, "body.endpoint_id"},
		{"bulk replay endpoint_id too long", "POST", tp + "/replay", `{"status":"dead","endpoint_id":"ep_` + mark + strings.Repeat("0", 64) + `"}`, 422, "body.endpoint_id"},
	}
	for _, tt := range other {
		t.Run(tt.name, func(t *testing.T) {
			var body any
			if tt.body != "" {
				body = tt.body
			}
			wantField(t, h.do(tt.method, tt.path, h.admin, body), tt.want, tt.location)
		})
	}

	// A malformed endpoint id in the path names no endpoint: 404 for
	// every operation (422 past the path's length limit).
	for _, bad := range []string{"ep_" + mark, "ep_" + strings.Repeat("g", 32), "ep_" + strings.Repeat("0", 31), mark,
		"evt_" + strings.Repeat("0", 32), "ep_%00" + mark, "ep_%FF" + mark, "ep_" + strings.Repeat("0", 32) + "0", "ep_" + strings.Repeat("0", 32)} {
		for _, op := range []struct{ method, suffix, body string }{
			{"GET", "", ""}, {"PATCH", "", `{"enabled":true}`}, {"DELETE", "", ""},
			{"POST", "/signing-secret/rotate", ""}, {"POST", "/test", ""},
		} {
			t.Run(fmt.Sprintf("path %s %s%s", op.method, bad, op.suffix), func(t *testing.T) {
				var body any
				if op.body != "" {
					body = op.body
				}
				wantField(t, h.do(op.method, tp+"/endpoints/"+bad+op.suffix, h.admin, body), 404, "")
			})
		}
	}
	t.Run("path too long", func(t *testing.T) {
		wantField(t, h.do("GET", tp+"/endpoints/ep_"+mark+strings.Repeat("0", 64), h.admin, nil), 422, "path.endpoint_id")
	})
	// An unknown endpoint id of the right shape: 404, and no events.
	unknown := "ep_" + strings.Repeat("0", 31) + "1"
	wantField(t, h.do("GET", tp+"/endpoints/"+unknown, h.admin, nil), 404, "")
	wantField(t, h.do("GET", tp+"/events?endpoint_id="+unknown, h.admin, nil), 422, "query.endpoint_id")
	// A replay to it, one event or in bulk, names the field (as any other
	// endpoint that is not the tenant's).
	wantField(t, h.do("POST", tp+"/replay", h.admin, map[string]any{"status": "delivered", "endpoint_id": unknown}), 422, "body.endpoint_id")

	// The limits themselves are fine.
	ok := h.createEndpoint(id, map[string]any{"url": "https://hooks.example.com/ok", "description": strings.Repeat("é", 200),
		"pages": json.RawMessage(pages(1000)), "rate": 1000000, "burst": 1000000, "concurrency": 1000000, "events": []string{"*"}})
	if n := len(ok["pages"].([]any)); n != 1000 || len([]rune(ok["description"].(string))) != 200 {
		t.Errorf("1000 Pages and 200 characters of description: got %d Pages, %d characters", n, len([]rune(ok["description"].(string))))
	}

	// Nothing bad was stored: the endpoints are the four created here and
	// the default one, unchanged.
	l := h.must(200, "GET", tp+"/endpoints?limit=200", h.admin, nil)
	items := l["items"].([]any)
	if len(items) != 5 {
		t.Errorf("got %d endpoints, want 5", len(items))
	}
	for _, it := range items {
		e := it.(map[string]any)
		if e["id"] == ep && (e["url"] != "https://hooks.example.com/a" || e["enabled"] != true || e["description"] != "" ||
			asJSON(e["events"]) != `["messaging_postbacks"]` || e["format"] != "standard" || e["signature"] != "hmac" || e["rate"] != nil) {
			t.Errorf("the patched endpoint changed: %v", e)
		}
		if strings.Contains(asJSON(e), mark) {
			t.Errorf("a bad value was stored: %v", e)
		}
	}
	if strings.Contains(h.logs.String(), `"level":"ERROR"`) {
		t.Errorf("a bad input logged an error (a 500 path): %s", h.logs.String())
	}
}
