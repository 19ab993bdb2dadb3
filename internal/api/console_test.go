package api_test

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/postgate/postgate/internal/api"
	"github.com/postgate/postgate/internal/api/console"
	"github.com/postgate/postgate/internal/session"
	"github.com/postgate/postgate/internal/testenv"
)

// consoleHarness is the gateway's console (and admin API) in process.
type consoleHarness struct {
	*harness
	sessions *session.Store
}

func newConsoleHarness(t *testing.T) *consoleHarness {
	t.Helper()
	db := testenv.Postgres(t)
	keys := testenv.Keyring(t)
	a := newAdmin(t, db, keys, false)
	sessions := session.NewStore(db.Pool, nil)
	a.Sessions = sessions
	logs := &syncBuffer{}
	s := api.New(api.Config{Version: "test"}, api.Deps{Admin: a, Console: &console.Deps{
		Tenants: a.Tenants, Events: a.Events, Tester: a.Tester, Tokens: a.Tokens, Sessions: sessions, PublicURL: publicURL,
	}})
	h := &harness{t: t, server: s, db: db, tokens: a.Tokens, keys: keys, logs: logs, admin: adminToken(t, a.Tokens)}
	return &consoleHarness{harness: h, sessions: sessions}
}

// browser is a cookie jar and the CSRF token of the last page read.
type browser struct {
	h      *consoleHarness
	cookie string
	csrf   string
}

var csrfRe = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func (b *browser) req(method, path string, form url.Values, origin string) (int, http.Header, string) {
	b.h.t.Helper()
	var req *http.Request
	if form != nil {
		req = httptest.NewRequest(method, path, strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	} else {
		req = httptest.NewRequest(method, path, nil)
	}
	req.Host = "gw.example.com"
	if origin != "" {
		req.Header.Set("Origin", origin)
	}
	if b.cookie != "" {
		req.Header.Set("Cookie", b.cookie)
	}
	code, header, body := do(b.h.t, b.h.server, req)
	for _, c := range header.Values("Set-Cookie") {
		if strings.HasPrefix(c, "postgate_console=") {
			b.cookie, _, _ = strings.Cut(c, ";")
		}
	}
	if m := csrfRe.FindStringSubmatch(body); m != nil {
		b.csrf = m[1]
	}
	return code, header, body
}

func (b *browser) get(path string) (int, string) {
	code, _, body := b.req("GET", path, nil, "")
	return code, body
}

func (b *browser) post(path string, form url.Values) (int, http.Header, string) {
	if form == nil {
		form = url.Values{}
	}
	if form.Get("csrf") == "" && b.csrf != "" {
		form.Set("csrf", b.csrf)
	}
	return b.req("POST", path, form, "http://gw.example.com")
}

// signIn signs in with an admin-API token through the form.
func (b *browser) signIn(token string) {
	b.h.t.Helper()
	code, header, body := b.req("POST", "/console/sign-in", url.Values{"token": {token}}, "http://gw.example.com")
	if code != http.StatusSeeOther || b.cookie == "" {
		b.h.t.Fatalf("sign-in: %d %v %s", code, header, body)
	}
}

// TestConsoleSessions: sign-in by token and by one-time link (used once,
// and a GET does not use it up), the session cookie's attributes, the
// headers, sign-out, and what a session without CSRF token or from
// another site gets.
func TestConsoleSessions(t *testing.T) {
	h := newConsoleHarness(t)
	anon := &browser{h: h}
	if code, _, _ := anon.req("GET", "/console/", nil, ""); code != http.StatusSeeOther {
		t.Errorf("console without a session: %d, want a redirect to sign-in", code)
	}
	if code, _, _ := anon.req("POST", "/console/sign-in", url.Values{"token": {"not-a-token"}}, "http://gw.example.com"); code != http.StatusUnauthorized {
		t.Errorf("sign-in with a bad token: %d, want 401", code)
	}
	if code, _, _ := anon.req("POST", "/console/sign-in", url.Values{"token": {h.admin}}, "https://evil.example.net"); code != http.StatusForbidden {
		t.Errorf("sign-in posted from another site: %d, want 403", code)
	}

	// What a browser sends from the console's own page: Sec-Fetch-Site
	// same-origin (Origin may then be "null"); from anywhere else, the
	// browser says so, and a bare "null" Origin is nobody's.
	for _, c := range []struct {
		site, origin string
		want         int
	}{
		{"same-origin", "null", http.StatusSeeOther},
		{"cross-site", "http://gw.example.com", http.StatusForbidden},
		{"", "null", http.StatusForbidden},
		{"", "https://gw.example.com", http.StatusSeeOther}, // PUBLIC_URL's host, behind a proxy
	} {
		req := httptest.NewRequest("POST", "/console/sign-in", strings.NewReader(url.Values{"token": {h.admin}}.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		req.Host = "10.0.0.7:8080"
		if c.site != "" {
			req.Header.Set("Sec-Fetch-Site", c.site)
		}
		req.Header.Set("Origin", c.origin)
		if code, _, _ := do(t, h.server, req); code != c.want {
			t.Errorf("sign-in with Sec-Fetch-Site %q, Origin %q: %d, want %d", c.site, c.origin, code, c.want)
		}
	}
	// A tenant token that outlived its tenant signs nobody in.
	gone, _ := h.createTenant("gone")
	goneTok := h.tenantToken(gone)
	h.must(204, "DELETE", "/admin/v1/tenants/"+gone, h.admin, nil)
	if code, _, _ := anon.req("POST", "/console/sign-in", url.Values{"token": {goneTok}}, "http://gw.example.com"); code != http.StatusUnauthorized {
		t.Errorf("sign-in with the token of a deleted tenant: %d, want 401", code)
	}

	op := &browser{h: h}
	code, header, _ := op.req("POST", "/console/sign-in", url.Values{"token": {h.admin}}, "http://gw.example.com")
	if code != http.StatusSeeOther {
		t.Fatalf("sign-in: %d", code)
	}
	set := strings.ToLower(header.Get("Set-Cookie"))
	for _, want := range []string{"httponly", "samesite=strict", "path=/console"} {
		if !strings.Contains(set, want) {
			t.Errorf("session cookie %q lacks %s", set, want)
		}
	}
	code, hdr, body := op.req("GET", "/console/", nil, "")
	if code != http.StatusOK || !strings.Contains(body, "Overview") {
		t.Fatalf("overview: %d", code)
	}
	if csp := hdr.Get("Content-Security-Policy"); !strings.Contains(csp, "script-src 'self'") || strings.Contains(csp, "unsafe-inline") ||
		hdr.Get("X-Frame-Options") != "DENY" || hdr.Get("Cache-Control") != "no-store" {
		t.Errorf("headers: CSP %q, frame %q, cache %q", csp, hdr.Get("X-Frame-Options"), hdr.Get("Cache-Control"))
	}
	if strings.Contains(body, "<script>") || strings.Contains(body, " onclick=") {
		t.Error("a page carries inline script")
	}

	// A change without the CSRF token, or with another session's, is refused.
	if code, _, _ := op.req("POST", "/console/tenants", url.Values{"name": {"x"}}, "http://gw.example.com"); code != http.StatusForbidden {
		t.Errorf("POST without a CSRF token: %d, want 403", code)
	}
	if code, _, _ := op.req("POST", "/console/tenants", url.Values{"name": {"x"}, "csrf": {"forged"}}, "http://gw.example.com"); code != http.StatusForbidden {
		t.Errorf("POST with a wrong CSRF token: %d, want 403", code)
	}

	// A one-time link: the landing GET (a mail scanner's) does not use it.
	token, _, err := h.sessions.CreateLink(context.Background(), session.RoleAdmin, "", "test", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	viaLink := &browser{h: h}
	for range 2 {
		if code, body := viaLink.get("/console/link/" + token); code != http.StatusOK || !strings.Contains(body, "Sign in") {
			t.Fatalf("link landing page: %d", code)
		}
	}
	if code, _, _ := viaLink.req("POST", "/console/link/"+token, url.Values{}, "http://gw.example.com"); code != http.StatusSeeOther || viaLink.cookie == "" {
		t.Fatalf("using the link: %d", code)
	}
	again := &browser{h: h}
	if code, _, _ := again.req("POST", "/console/link/"+token, url.Values{}, "http://gw.example.com"); code != http.StatusNotFound || again.cookie != "" {
		t.Errorf("the link a second time: %d, want 404 and no session", code)
	}
	if code, _ := again.get("/console/link/" + token); code != http.StatusNotFound {
		t.Errorf("the used link's page: %d, want 404", code)
	}

	// Sign-out ends the session everywhere: its cookie no longer works.
	old := viaLink.cookie
	viaLink.get("/console/")
	if code, _, _ := viaLink.post("/console/sign-out", nil); code != http.StatusSeeOther {
		t.Fatalf("sign-out: %d", code)
	}
	replay := &browser{h: h, cookie: old}
	if code, _ := replay.get("/console/"); code != http.StatusSeeOther {
		t.Errorf("the signed-out cookie: %d, want a redirect to sign-in", code)
	}
}

// TestConsoleTenantScope: a tenant's portal session reaches its own
// tenant's pages and nothing else (404), whatever URL it types; the
// operator pages are 404 to it too.
func TestConsoleTenantScope(t *testing.T) {
	h := newConsoleHarness(t)
	mine, _ := h.createTenant("mine")
	other, _ := h.createTenant("other")
	link := h.must(201, "POST", "/admin/v1/tenants/"+mine+"/portal-links", h.admin, map[string]any{"ttl": "10m"})
	u, err := url.Parse(link["url"].(string))
	if err != nil || !strings.HasPrefix(u.Path, "/console/link/") {
		t.Fatalf("portal link %v", link)
	}
	tb := &browser{h: h}
	if code, _, _ := tb.req("POST", u.Path, url.Values{}, "http://gw.example.com"); code != http.StatusSeeOther {
		t.Fatalf("portal sign-in: %d", code)
	}
	if code, body := tb.get("/console/tenants/" + mine); code != http.StatusOK || !strings.Contains(body, "mine") {
		t.Fatalf("own tenant page: %d", code)
	}
	for _, path := range []string{
		"/console/tenants/" + other, "/console/tenants/" + other + "/events", "/console/tenants/" + other + "/quarantine",
		"/console/tenants/" + other + "/events/evt_01a2518325c67a79bf648a71088f06fb", "/console/tenants", "/console/tenants/not-a-uuid",
	} {
		if code, body := tb.get(path); code != http.StatusNotFound || strings.Contains(body, "other") {
			t.Errorf("tenant session GET %s: %d, want 404 saying nothing", path, code)
		}
	}
	for _, path := range []string{"/console/tenants/" + other + "/apps", "/console/tenants/" + other + "/delete", "/console/tenants/" + mine + "/delete", "/console/tenants"} {
		if code, _, _ := tb.post(path, url.Values{"app_id": {"1"}, "app_secret": {"x"}, "name": {"x"}}); code != http.StatusNotFound {
			t.Errorf("tenant session POST %s: %d, want 404", path, code)
		}
	}
	if code, _ := tb.get("/console/"); code != http.StatusSeeOther {
		t.Errorf("tenant session on the operator's overview: %d, want a redirect to its tenant", code)
	}
	if r := h.do("POST", "/admin/v1/tenants/"+mine+"/portal-links", h.tenantToken(mine), nil); r.status != http.StatusForbidden {
		t.Errorf("a tenant token making a portal link: %d, want 403", r.status)
	}
	if r := h.do("POST", "/admin/v1/tenants/"+mine+"/portal-links", h.admin, map[string]any{"ttl": "forever"}); r.status != 422 {
		t.Errorf("portal link with a bad ttl: %d, want 422", r.status)
	}
}

// TestConsoleBadInput: every console form answers bad input with a
// clear 4xx page, never a 500.
func TestConsoleBadInput(t *testing.T) {
	h := newConsoleHarness(t)
	tid, _ := h.createTenant("acme")
	op := &browser{h: h}
	op.signIn(h.admin)
	op.get("/console/tenants/" + tid)
	base := "/console/tenants/" + tid
	nul := "a\x00b"
	cases := []struct {
		path string
		form url.Values
	}{
		{"/console/tenants", url.Values{"name": {nul}}},
		{"/console/tenants", url.Values{"name": {""}}},
		{"/console/tenants", url.Values{"name": {"x"}, "callback_url": {"ftp://x"}}},
		{"/console/tenants", url.Values{"name": {strings.Repeat("n", 5000)}}},
		{base + "/apps", url.Values{"app_id": {"abc"}, "app_secret": {"s"}}},
		{base + "/apps", url.Values{"app_id": {"1"}, "app_secret": {nul}}},
		{base + "/pages", url.Values{"page_id": {"1"}, "app_id": {"999"}}},
		{base + "/pages", url.Values{"page_id": {"x"}, "app_id": {"1"}}},
		{base + "/pages", url.Values{"page_id": {"1"}, "app_id": {"1"}, "object": {"tv"}}},
		{base + "/endpoints", url.Values{"url": {"not a url"}}},
		{base + "/endpoints", url.Values{"url": {"https://hooks.example.com/x"}, "events": {"bogus"}}},
		{base + "/endpoints", url.Values{"url": {"https://hooks.example.com/x"}, "format": {"xml"}}},
		{base + "/endpoints/ep_nope/test", nil},
		{base + "/endpoints/ep_nope/enable", nil},
		{base + "/endpoints/ep_00000000000000000000000000000000/rotate", nil},
		{base + "/events/evt_nope/replay", nil},
		{base + "/events/replay", url.Values{"status": {"nonsense"}}},
		{base + "/events/replay", url.Values{"status": {"dead"}, "since": {"yesterday"}}},
		{base + "/events/replay", url.Values{"status": {"dead"}, "endpoint_id": {"ep_x"}}},
		{base + "/apps/1/subscribe", nil},
		{base + "/pages/1/delete", nil},
		{base + "/edit", url.Values{"name": {nul}}},
		{base + "/edit", url.Values{"name": {""}}},
		{base + "/endpoints/ep_00000000000000000000000000000000/edit", url.Values{"url": {"https://hooks.example.com/x"}}},
		{base + "/endpoints/ep_x/edit", url.Values{"url": {"x"}}},
	}
	for _, c := range cases {
		code, _, body := op.post(c.path, c.form)
		if code < 400 || code >= 500 {
			t.Errorf("POST %s %v: %d, want a 4xx: %.200s", c.path, c.form, code, body)
		}
	}
	for _, p := range []string{base + "?pages_cursor=%%%", base + "?apps_cursor=bogus", "/console/tenants?cursor=bogus"} {
		if code, _ := op.get(p); code < 400 || code >= 500 {
			t.Errorf("GET %s: %d, want a 4xx", p, code)
		}
	}
	for _, q := range []string{"since=garbage", "mid=%00", "type=nope", "status=nope", "endpoint_id=ep_x", "page_id=abc", "cursor=%%%", "sender=" + strings.Repeat("s", 600)} {
		if code, _ := op.get(base + "/events?" + q); code < 400 || code >= 500 {
			t.Errorf("GET events?%s: %d, want a 4xx", q, code)
		}
	}
}

// TestConsolePagesPaginated: a tenant with more Pages than a page holds
// lists them in pages, every one reachable.
func TestConsolePagesPaginated(t *testing.T) {
	h := newConsoleHarness(t)
	tid, _ := h.createTenant("many")
	h.must(201, "POST", "/admin/v1/tenants/"+tid+"/apps", h.admin, map[string]any{"app_id": "4242", "app_secret": "s"})
	for i := range 60 {
		h.must(201, "POST", "/admin/v1/tenants/"+tid+"/pages", h.admin, map[string]any{"page_id": fmt.Sprint(900000 + i), "app_id": "4242"})
	}
	op := &browser{h: h}
	op.signIn(h.admin)
	next := regexp.MustCompile(`href="(/console/tenants/[^"]+pages_cursor=[^"#]+)`)
	seen := map[string]bool{}
	path := "/console/tenants/" + tid
	for range 5 {
		code, body := op.get(path)
		if code != 200 {
			t.Fatalf("GET %s: %d", path, code)
		}
		for _, m := range regexp.MustCompile(`<tr><td>(9000\d\d)</td>`).FindAllStringSubmatch(body, -1) {
			seen[m[1]] = true
		}
		m := next.FindStringSubmatch(body)
		if m == nil {
			break
		}
		path = strings.ReplaceAll(m[1], "&amp;", "&")
	}
	if len(seen) != 60 {
		t.Errorf("saw %d of the 60 Pages across the pages", len(seen))
	}
}
