package api_test

import (
	"bytes"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"

	"github.com/postgate/postgate/internal/api"
	"github.com/postgate/postgate/internal/database"
	"github.com/postgate/postgate/internal/delivery"
	"github.com/postgate/postgate/internal/event"
	"github.com/postgate/postgate/internal/secrets"
	"github.com/postgate/postgate/internal/tenant"
	"github.com/postgate/postgate/internal/testenv"
)

const (
	testIssuer   = "postgate"
	testAudience = "postgate-admin"
	publicURL    = "https://gw.example.com"
)

var jwtSecret = []byte("0123456789abcdef0123456789abcdef")

var resolver = testenv.Resolver{
	"hooks.example.com":    {"93.184.215.14"},
	"hooks2.example.com":   {"2606:2800:21f:cb07:6820:80da:af6b:8b2c"},
	"internal.example.com": {"10.1.2.3"},
	"mixed.example.com":    {"93.184.215.14", "127.0.0.1"},
	"metadata.example.com": {"169.254.169.254"},
	"localhost":            {"127.0.0.1", "::1"},
}

// syncBuffer collects log lines (testenv.Buffer).
type syncBuffer = testenv.Buffer

type harness struct {
	t      *testing.T
	server *api.Server
	db     *database.DB
	tokens *tenant.Tokens
	keys   *secrets.Keyring
	logs   *syncBuffer
	admin  string // an admin token
}

// newAdmin wires the admin API's services on db as the gateway does.
func newAdmin(t *testing.T, db *database.DB, keys *secrets.Keyring, allowPrivate bool) *api.Admin {
	t.Helper()
	return newAdminOpts(t, db, keys, harnessOpts{allowPrivate: allowPrivate})
}

// newAdminOpts is newAdmin with every harness option.
func newAdminOpts(t *testing.T, db *database.DB, keys *secrets.Keyring, o harnessOpts) *api.Admin {
	t.Helper()
	allowPrivate := o.allowPrivate
	testTimeout := o.testTimeout
	if testTimeout == 0 {
		testTimeout = 2 * time.Second
	}
	tokens, err := tenant.NewTokens(tenant.TokenConfig{Secret: jwtSecret, Issuer: testIssuer, Audience: testAudience}, nil)
	if err != nil {
		t.Fatal(err)
	}
	svc, err := tenant.NewService(tenant.Config{PublicURL: publicURL, AllowPrivateCallbacks: allowPrivate},
		tenant.NewStore(db), keys, tokens, resolver, nil)
	if err != nil {
		t.Fatal(err)
	}
	tester, err := delivery.NewTester(delivery.Config{Timeout: testTimeout, AllowPrivate: allowPrivate, Resolver: resolver,
		UserAgent: "Postgate/test"}, svc)
	if err != nil {
		t.Fatal(err)
	}
	return &api.Admin{Tenants: svc, Events: event.NewService(event.NewStore(db), svc), Tokens: tokens, Tester: tester, PublicURL: publicURL}
}

// adminToken mints an admin token for an hour.
func adminToken(t *testing.T, tokens *tenant.Tokens) string {
	t.Helper()
	tok, _, err := tokens.Issue("test-admin", tenant.RoleAdmin, "", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

type harnessOpts struct {
	allowPrivate bool
	// testTimeout is the test sender's CALLBACK_TIMEOUT; default 2s.
	testTimeout time.Duration
}

func newHarness(t *testing.T, opts ...harnessOpts) *harness {
	t.Helper()
	var o harnessOpts
	if len(opts) > 0 {
		o = opts[0]
	}
	db := testenv.Postgres(t)
	keys := testenv.Keyring(t)
	a := newAdminOpts(t, db, keys, o)
	logs := &syncBuffer{}
	log := slog.New(slog.NewJSONHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s := api.New(api.Config{Version: "test"}, api.Deps{Log: log, Admin: a})
	return &harness{t: t, server: s, db: db, tokens: a.Tokens, keys: keys, logs: logs, admin: adminToken(t, a.Tokens)}
}

// response is one answer of the server, read in full.
type response struct {
	status int
	header http.Header
	body   []byte
}

func (r response) json(t *testing.T) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(r.body, &m); err != nil {
		t.Fatalf("body is not a JSON object: %v: %s", err, r.body)
	}
	return m
}

// do sends one request with token (none when empty) and body (JSON-encoded
// unless it is a string).
func (h *harness) do(method, path, token string, body any) response {
	h.t.Helper()
	var rd io.Reader
	switch b := body.(type) {
	case nil:
	case string:
		rd = strings.NewReader(b)
	default:
		raw, err := json.Marshal(b)
		if err != nil {
			h.t.Fatal(err)
		}
		rd = bytes.NewReader(raw)
	}
	req := httptest.NewRequest(method, path, rd)
	if rd != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	res, err := h.server.App().Test(req, -1)
	if err != nil {
		h.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	raw, err := io.ReadAll(res.Body)
	if err != nil {
		h.t.Fatal(err)
	}
	return response{status: res.StatusCode, header: res.Header, body: raw}
}

// must sends a request and fails the test unless the status is want.
func (h *harness) must(want int, method, path, token string, body any) map[string]any {
	h.t.Helper()
	r := h.do(method, path, token, body)
	if r.status != want {
		h.t.Fatalf("%s %s: got status %d, want %d: %s", method, path, r.status, want, r.body)
	}
	if len(r.body) == 0 {
		return nil
	}
	return r.json(h.t)
}

// createTenant creates a tenant and returns its id and signing secret.
func (h *harness) createTenant(name string) (string, string) {
	h.t.Helper()
	m := h.must(201, "POST", "/admin/v1/tenants", h.admin, map[string]any{"name": name, "callback_url": "https://hooks.example.com/meta"})
	return m["id"].(string), m["signing_secret"].(string)
}

func (h *harness) tenantToken(id string) string {
	h.t.Helper()
	tok, _, err := h.tokens.Issue("tenant:"+id, tenant.RoleTenant, id, time.Hour)
	if err != nil {
		h.t.Fatal(err)
	}
	return tok
}

func sign(t *testing.T, method jwt.SigningMethod, key any, claims jwt.MapClaims) string {
	t.Helper()
	s, err := jwt.NewWithClaims(method, claims).SignedString(key)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func claims(mod func(jwt.MapClaims)) jwt.MapClaims {
	now := time.Now()
	c := jwt.MapClaims{"sub": "x", "role": "admin", "iss": testIssuer, "aud": testAudience,
		"iat": now.Unix(), "exp": now.Add(time.Hour).Unix()}
	if mod != nil {
		mod(c)
	}
	return c
}

func TestAuthorization(t *testing.T) {
	h := newHarness(t)
	own, _ := h.createTenant("own")
	other, _ := h.createTenant("other")
	ownTok := h.tenantToken(own)

	rsaKey, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	none := sign(t, jwt.SigningMethodNone, jwt.UnsafeAllowNoneSignatureType, claims(nil))
	tests := []struct {
		name       string
		method     string
		path       string
		token      string
		want       int
		wantBearer bool
	}{
		{"admin reads a tenant", "GET", "/admin/v1/tenants/" + own, h.admin, 200, false},
		{"admin lists tenants", "GET", "/admin/v1/tenants", h.admin, 200, false},
		{"tenant reads itself", "GET", "/admin/v1/tenants/" + own, ownTok, 200, false},
		{"tenant reads itself, id upper-case", "GET", "/admin/v1/tenants/" + strings.ToUpper(own), ownTok, 200, false},
		{"tenant lists its apps", "GET", "/admin/v1/tenants/" + own + "/apps", ownTok, 200, false},
		{"tenant lists its events", "GET", "/admin/v1/tenants/" + own + "/events", ownTok, 200, false},
		{"tenant reads another tenant", "GET", "/admin/v1/tenants/" + other, ownTok, 404, false},
		{"tenant lists another tenant's apps", "GET", "/admin/v1/tenants/" + other + "/apps", ownTok, 404, false},
		{"tenant deletes another tenant", "DELETE", "/admin/v1/tenants/" + other, ownTok, 404, false},
		{"tenant lists tenants", "GET", "/admin/v1/tenants", ownTok, 403, false},
		{"tenant creates a tenant", "POST", "/admin/v1/tenants", ownTok, 403, false},
		{"tenant mints a token for itself", "POST", "/admin/v1/tenants/" + own + "/tokens", ownTok, 403, false},
		{"no token", "GET", "/admin/v1/tenants/" + own, "", 401, true},
		{"garbage token", "GET", "/admin/v1/tenants/" + own, "not-a-jwt", 401, true},
		{"expired", "GET", "/admin/v1/tenants", sign(t, jwt.SigningMethodHS256, jwtSecret, claims(func(c jwt.MapClaims) {
			c["exp"] = time.Now().Add(-time.Hour).Unix()
			c["iat"] = time.Now().Add(-2 * time.Hour).Unix()
		})), 401, true},
		{"wrong iss", "GET", "/admin/v1/tenants", sign(t, jwt.SigningMethodHS256, jwtSecret, claims(func(c jwt.MapClaims) { c["iss"] = "someone-else" })), 401, true},
		{"wrong aud", "GET", "/admin/v1/tenants", sign(t, jwt.SigningMethodHS256, jwtSecret, claims(func(c jwt.MapClaims) { c["aud"] = "another-api" })), 401, true},
		{"alg none", "GET", "/admin/v1/tenants", none, 401, true},
		{"HS256 with another key", "GET", "/admin/v1/tenants", sign(t, jwt.SigningMethodHS256, []byte("another-key-another-key-another-key"), claims(nil)), 401, true},
		{"RS256 when only HS256 is configured", "GET", "/admin/v1/tenants", sign(t, jwt.SigningMethodRS256, rsaKey, claims(nil)), 401, true},
		{"no exp", "GET", "/admin/v1/tenants", sign(t, jwt.SigningMethodHS256, jwtSecret, claims(func(c jwt.MapClaims) { delete(c, "exp") })), 401, true},
		{"tenant role without tenant_id", "GET", "/admin/v1/tenants/" + own, sign(t, jwt.SigningMethodHS256, jwtSecret, claims(func(c jwt.MapClaims) { c["role"] = "tenant" })), 401, true},
		{"unknown role", "GET", "/admin/v1/tenants", sign(t, jwt.SigningMethodHS256, jwtSecret, claims(func(c jwt.MapClaims) { c["role"] = "root" })), 401, true},
		{"Authorization over 4 KiB", "GET", "/admin/v1/tenants", strings.Repeat("a", 5000), 401, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := h.do(tt.method, tt.path, tt.token, nil)
			if r.status != tt.want {
				t.Fatalf("got status %d, want %d: %s", r.status, tt.want, r.body)
			}
			if got := r.header.Get("Content-Type"); tt.want >= 400 && got != "application/problem+json" {
				t.Errorf("got Content-Type %q, want application/problem+json", got)
			}
			if got := r.header.Get("WWW-Authenticate"); tt.wantBearer && !strings.HasPrefix(got, "Bearer") {
				t.Errorf("got WWW-Authenticate %q, want Bearer ...", got)
			}
			if tt.wantBearer && tt.token != "" && !strings.Contains(r.header.Get("WWW-Authenticate"), `error="invalid_token"`) {
				t.Errorf("got WWW-Authenticate %q for a bad token, want error=\"invalid_token\"", r.header.Get("WWW-Authenticate"))
			}
		})
	}

	t.Run("tenant cannot touch another tenant's app", func(t *testing.T) {
		h.must(201, "POST", "/admin/v1/tenants/"+other+"/apps", h.admin, map[string]any{"app_id": "777", "app_secret": "s3cret-other"})
		for _, m := range []string{"GET", "DELETE"} {
			if r := h.do(m, "/admin/v1/tenants/"+own+"/apps/777", ownTok, nil); r.status != 404 {
				t.Errorf("%s another tenant's app through its own tenant: got %d, want 404", m, r.status)
			}
		}
		h.must(200, "GET", "/admin/v1/tenants/"+other+"/apps/777", h.admin, nil)
	})
}

func TestValidation(t *testing.T) {
	h := newHarness(t)
	id, _ := h.createTenant("acme")
	other, _ := h.createTenant("other")
	h.must(201, "POST", "/admin/v1/tenants/"+id+"/apps", h.admin, map[string]any{"app_id": "1001", "app_secret": "app-secret-1001"})
	h.must(201, "POST", "/admin/v1/tenants/"+other+"/apps", h.admin, map[string]any{"app_id": "2002", "app_secret": "app-secret-2002"})
	h.must(201, "POST", "/admin/v1/tenants/"+id+"/pages", h.admin, map[string]any{"page_id": "5005", "app_id": "1001"})

	tests := []struct {
		name         string
		method, path string
		body         any
		want         int
		wantLocation string // an errors[].location the problem must name
	}{
		{"malformed Page id", "POST", "/admin/v1/tenants/" + id + "/pages", map[string]any{"page_id": "12ab", "app_id": "1001"}, 422, "body.page_id"},
		{"Page id too long", "POST", "/admin/v1/tenants/" + id + "/pages", map[string]any{"page_id": strings.Repeat("1", 21), "app_id": "1001"}, 422, "body.page_id"},
		{"duplicate (Page, app)", "POST", "/admin/v1/tenants/" + id + "/pages", map[string]any{"page_id": "5005", "app_id": "1001"}, 409, ""},
		{"Page on another tenant's app", "POST", "/admin/v1/tenants/" + id + "/pages", map[string]any{"page_id": "6006", "app_id": "2002"}, 422, "body.app_id"},
		{"Page on an unknown app", "POST", "/admin/v1/tenants/" + id + "/pages", map[string]any{"page_id": "6006", "app_id": "9999"}, 422, "body.app_id"},
		{"unknown object", "POST", "/admin/v1/tenants/" + id + "/pages", map[string]any{"page_id": "6006", "app_id": "1001", "object": "whatsapp"}, 422, "body.object"},
		{"unknown field", "POST", "/admin/v1/tenants/" + id + "/pages", map[string]any{"page_id": "6006", "app_id": "1001", "color": "red"}, 422, "body.color"},
		{"unknown field on a tenant", "POST", "/admin/v1/tenants", map[string]any{"name": "x", "callback_url": "https://hooks.example.com/", "signing_secret": "mine"}, 422, "body.signing_secret"},
		{"callback with user info", "POST", "/admin/v1/tenants", map[string]any{"name": "x", "callback_url": "https://user:pw@hooks.example.com/"}, 422, "body.callback_url"},
		{"callback over http", "POST", "/admin/v1/tenants", map[string]any{"name": "x", "callback_url": "http://hooks.example.com/"}, 422, "body.callback_url"},
		{"callback with a fragment", "POST", "/admin/v1/tenants", map[string]any{"name": "x", "callback_url": "https://hooks.example.com/#x"}, 422, "body.callback_url"},
		{"relative callback", "POST", "/admin/v1/tenants", map[string]any{"name": "x", "callback_url": "/hooks"}, 422, "body.callback_url"},
		{"private callback without the flag", "POST", "/admin/v1/tenants", map[string]any{"name": "x", "callback_url": "https://internal.example.com/"}, 422, "body.callback_url"},
		{"loopback literal", "POST", "/admin/v1/tenants", map[string]any{"name": "x", "callback_url": "https://127.0.0.1:8443/"}, 422, "body.callback_url"},
		{"metadata address", "POST", "/admin/v1/tenants", map[string]any{"name": "x", "callback_url": "https://metadata.example.com/"}, 422, "body.callback_url"},
		{"one private address among public ones", "POST", "/admin/v1/tenants", map[string]any{"name": "x", "callback_url": "https://mixed.example.com/"}, 422, "body.callback_url"},
		{"unresolvable host", "POST", "/admin/v1/tenants", map[string]any{"name": "x", "callback_url": "https://nowhere.example.com/"}, 422, "body.callback_url"},
		{"empty name", "POST", "/admin/v1/tenants", map[string]any{"name": "", "callback_url": "https://hooks.example.com/"}, 422, "body.name"},
		{"unknown event type", "POST", "/admin/v1/tenants", map[string]any{"name": "x", "callback_url": "https://hooks.example.com/", "events": []string{"nope"}}, 422, "body.events[0]"},
		{"negative rate", "PATCH", "/admin/v1/tenants/" + id, map[string]any{"rate": -1}, 422, "body.rate"},
		{"private callback on PATCH", "PATCH", "/admin/v1/tenants/" + id, map[string]any{"callback_url": "https://internal.example.com/"}, 422, "body.callback_url"},
		{"malformed app id", "POST", "/admin/v1/tenants/" + id + "/apps", map[string]any{"app_id": "abc", "app_secret": "x"}, 422, "body.app_id"},
		{"app without secret", "POST", "/admin/v1/tenants/" + id + "/apps", map[string]any{"app_id": "3003"}, 422, "body.app_secret"},
		{"short verify token", "POST", "/admin/v1/tenants/" + id + "/apps", map[string]any{"app_id": "3003", "app_secret": "x", "verify_token": "short"}, 422, "body.verify_token"},
		{"app id taken", "POST", "/admin/v1/tenants/" + id + "/apps", map[string]any{"app_id": "2002", "app_secret": "x"}, 409, "body.app_id"},
		{"malformed tenant id", "GET", "/admin/v1/tenants/not-a-uuid", nil, 422, "path.tenant_id"},
		{"unknown tenant", "GET", "/admin/v1/tenants/0190a8a0-0000-7000-8000-000000000000", nil, 404, ""},
		{"malformed event id", "GET", "/admin/v1/tenants/" + id + "/events/evt_xyz", nil, 422, "path.event_id"},
		{"unknown event", "GET", "/admin/v1/tenants/" + id + "/events/evt_0190a8a0000070008000000000000000", nil, 404, ""},
		{"bad status filter", "GET", "/admin/v1/tenants/" + id + "/events?status=lost", nil, 422, "query.status"},
		{"bad cursor", "GET", "/admin/v1/tenants?cursor=zzz", nil, 422, "query.cursor"},
		{"limit over 200", "GET", "/admin/v1/tenants?limit=1000", nil, 422, "query.limit"},
		{"bulk replay without status", "POST", "/admin/v1/tenants/" + id + "/replay", map[string]any{}, 422, "body.status"},
		{"bulk replay, until before since", "POST", "/admin/v1/tenants/" + id + "/replay", map[string]any{"status": "dead", "since": "2026-01-02T00:00:00Z", "until": "2026-01-01T00:00:00Z"}, 422, "body.until"},
		{"not JSON", "POST", "/admin/v1/tenants", "{", 400, ""},
		{"unknown route", "GET", "/admin/v1/nope", nil, 404, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := h.do(tt.method, tt.path, h.admin, tt.body)
			if r.status != tt.want {
				t.Fatalf("got status %d, want %d: %s", r.status, tt.want, r.body)
			}
			if got := r.header.Get("Content-Type"); got != "application/problem+json" {
				t.Errorf("got Content-Type %q, want application/problem+json", got)
			}
			p := r.json(t)
			if got := p["status"]; got != float64(tt.want) {
				t.Errorf("got problem status %v, want %d", got, tt.want)
			}
			if tt.wantLocation == "" {
				return
			}
			// huma names a missing property in the message of an error at
			// its parent ("expected required property x to be present").
			parent, field, _ := strings.Cut(tt.wantLocation, ".")
			var locs []string
			found := false
			errs, _ := p["errors"].([]any)
			for _, e := range errs {
				em, _ := e.(map[string]any)
				loc, _ := em["location"].(string)
				msg, _ := em["message"].(string)
				locs = append(locs, loc)
				found = found || loc == tt.wantLocation || (loc == parent && strings.Contains(msg, "property "+field+" "))
				if _, ok := em["value"]; ok {
					t.Errorf("problem echoes the input value at %s: %s", loc, r.body)
				}
			}
			if !found {
				t.Errorf("got error locations %q, want one of them %q: %s", locs, tt.wantLocation, r.body)
			}
		})
	}
}

func TestPrivateCallbacksAllowedWithTheFlag(t *testing.T) {
	h := newHarness(t, harnessOpts{allowPrivate: true})
	for _, u := range []string{"http://localhost:3000/hook", "https://internal.example.com/", "http://127.0.0.1:9000/x"} {
		h.must(201, "POST", "/admin/v1/tenants", h.admin, map[string]any{"name": "dev", "callback_url": u})
	}
	r := h.do("POST", "/admin/v1/tenants", h.admin, map[string]any{"name": "dev", "callback_url": "ftp://localhost/"})
	if r.status != 422 {
		t.Fatalf("ftp callback with the flag: got %d, want 422", r.status)
	}
}
