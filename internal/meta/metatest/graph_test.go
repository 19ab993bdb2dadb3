package metatest_test

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postgate/postgate/internal/meta"
	"github.com/postgate/postgate/internal/meta/metatest"
)

const (
	appID     = "1001"
	appSecret = "app-secret"
	appToken  = appID + "|" + appSecret
	pageID    = "2002"
	pageToken = "EAApage"
)

func newGraph(t *testing.T) *metatest.Graph {
	t.Helper()
	g := metatest.New(t)
	g.AddApp(appID, appSecret, "Postgate")
	g.AddApp("1002", "other-secret", "Other")
	g.AddPageToken(pageID, appID, pageToken)
	return g
}

// answer is a decoded Graph answer.
type answer struct {
	status int
	header http.Header
	body   map[string]any
}

// graphErr is the "error" object of an answer, or nil.
func (a answer) graphErr() map[string]any {
	e, _ := a.body["error"].(map[string]any)
	return e
}

// call sends params to g as Meta's clients do: GET in the query, POST in a
// form body.
func call(t *testing.T, g *metatest.Graph, method, path string, params url.Values) answer {
	t.Helper()
	target := g.URL + path
	var body io.Reader
	if method == http.MethodGet || method == http.MethodDelete {
		target += "?" + params.Encode()
	} else {
		body = strings.NewReader(params.Encode())
	}
	req, err := http.NewRequestWithContext(t.Context(), method, target, body)
	if err != nil {
		t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	a := answer{status: resp.StatusCode, header: resp.Header}
	if err := json.NewDecoder(resp.Body).Decode(&a.body); err != nil {
		t.Fatalf("%s %s: answer is not JSON: %v", method, path, err)
	}
	return a
}

func pageParams(extra url.Values) url.Values {
	p := url.Values{"access_token": {pageToken}, "appsecret_proof": {meta.AppSecretProof(pageToken, appSecret)}}
	for k, v := range extra {
		p[k] = v
	}
	return p
}

// TestErrors checks Meta's refusals, each with its status, code, type and
// message.
func TestErrors(t *testing.T) {
	t.Parallel()
	g := newGraph(t)
	g.RevokeToken("EAArevoked", 463)
	g.AddPageToken("3003", appID, "EAAother")

	for _, tc := range []struct {
		name, method, path string
		params             url.Values
		code               float64
		typ, msg           string
	}{
		{"no token", "GET", "/v24.0/1001", nil, 104, "OAuthException", "An access token is required to request this resource."},
		{"unknown app", "GET", "/v24.0/9", url.Values{"access_token": {"9|x"}}, 101, "OAuthException", "Error validating application. Invalid application ID."},
		{"wrong secret", "GET", "/v24.0/1001", url.Values{"access_token": {"1001|x"}}, 190, "OAuthException", "Invalid OAuth access token signature."},
		{"another app's node", "GET", "/v24.0/1002", url.Values{"access_token": {appToken}}, 100, "GraphMethodException",
			"Unsupported get request. Object with ID '1002' does not exist, cannot be loaded due to missing permissions, or does not support this operation."},
		{"another app's subscriptions", "POST", "/v24.0/1002/subscriptions", url.Values{"access_token": {appToken}}, 100, "GraphMethodException", "Unsupported post request."},
		{"unknown Page token", "GET", "/v24.0/2002/subscribed_apps", url.Values{"access_token": {"EAAnope"}}, 190, "OAuthException", "Invalid OAuth access token - Cannot parse access token"},
		{"revoked Page token", "GET", "/v24.0/2002/subscribed_apps", url.Values{"access_token": {"EAArevoked"}}, 190, "OAuthException", "Session has expired"},
		{"no proof", "GET", "/v24.0/2002/subscribed_apps", url.Values{"access_token": {pageToken}}, 100, "GraphMethodException", "API calls from the server require an appsecret_proof argument"},
		{"wrong proof", "GET", "/v24.0/2002/subscribed_apps", url.Values{"access_token": {pageToken}, "appsecret_proof": {"00"}}, 100, "GraphMethodException", "Invalid appsecret_proof provided in the API argument"},
		{"wrong proof with app token", "GET", "/v24.0/1001", url.Values{"access_token": {appToken}, "appsecret_proof": {"00"}}, 100, "GraphMethodException", "Invalid appsecret_proof provided in the API argument"},
		{"another Page", "GET", "/v24.0/3003/subscribed_apps", pageParams(nil), 200, "OAuthException", "(#200) Permissions error"},
		{"app token on a Page edge", "GET", "/v24.0/2002/subscribed_apps", url.Values{"access_token": {appToken}}, 210, "OAuthException", "(#210) A page access token is required"},
		{"Page token on app subscriptions", "GET", "/v24.0/1001/subscriptions", pageParams(nil), 15, "OAuthException", "(#15) This method must be called with an app access_token."},
		{"no subscribed_fields", "POST", "/v24.0/2002/subscribed_apps", pageParams(nil), 100, "OAuthException", "(#100) The parameter subscribed_fields is required"},
		{"unknown field on app", "GET", "/v24.0/1001", url.Values{"access_token": {appToken}, "fields": {"id,secret"}}, 100, "OAuthException", "nonexisting field (secret)"},
		{"bad object", "POST", "/v24.0/1001/subscriptions", url.Values{"access_token": {appToken}, "object": {"pages"}, "callback_url": {"https://x.example/"}, "fields": {"messages"}}, 100, "OAuthException", "Param object must be one of"},
		{"relative callback", "POST", "/v24.0/1001/subscriptions", url.Values{"access_token": {appToken}, "object": {"page"}, "callback_url": {"/hook"}, "fields": {"messages"}}, 100, "OAuthException", "callback_url must be a valid URL"},
		{"no fields", "POST", "/v24.0/1001/subscriptions", url.Values{"access_token": {appToken}, "object": {"page"}, "callback_url": {"https://x.example/"}}, 100, "OAuthException", "The parameter fields is required"},
		{"unknown method", "DELETE", "/v24.0/1001/subscriptions", url.Values{"access_token": {appToken}}, 100, "GraphMethodException", "Unsupported delete request."},
		{"unknown edge", "GET", "/v24.0/1001/feed", url.Values{"access_token": {appToken}}, 100, "GraphMethodException", "Unsupported get request."},
	} {
		a := call(t, g, tc.method, tc.path, tc.params)
		e := a.graphErr()
		if a.status != http.StatusBadRequest || e == nil {
			t.Errorf("%s: status %d, body %v; want 400 and an error", tc.name, a.status, a.body)
			continue
		}
		if e["code"] != tc.code || e["type"] != tc.typ || !strings.Contains(e["message"].(string), tc.msg) {
			t.Errorf("%s: got %v; want code %v, type %s, message with %q", tc.name, e, tc.code, tc.typ, tc.msg)
		}
		if id, _ := e["fbtrace_id"].(string); id == "" {
			t.Errorf("%s: no fbtrace_id", tc.name)
		}
		if ct := a.header.Get("Content-Type"); !strings.HasPrefix(ct, "application/json") {
			t.Errorf("%s: Content-Type %q", tc.name, ct)
		}
	}
}

func TestRevokedSubcode(t *testing.T) {
	t.Parallel()
	g := newGraph(t)
	for _, sub := range []int{460, 463, 467} {
		token := "EAA" + strconv.Itoa(sub)
		g.AddPageToken(pageID, appID, token)
		g.RevokeToken(token, sub)
		a := call(t, g, "GET", "/v24.0/2002/subscribed_apps", url.Values{"access_token": {token}})
		e := a.graphErr()
		if e["code"] != 190.0 || e["error_subcode"] != float64(sub) || !strings.HasPrefix(e["message"].(string), "Error validating access token") {
			t.Errorf("subcode %d: got %v", sub, e)
		}
	}
	// An app token can be revoked too.
	g.RevokeToken(appToken, 460)
	if e := call(t, g, "GET", "/v24.0/1001", url.Values{"access_token": {appToken}}).graphErr(); e["code"] != 190.0 {
		t.Errorf("revoked app token: got %v", e)
	}
}

func TestFbtraceIDRandom(t *testing.T) {
	t.Parallel()
	g := newGraph(t)
	seen := map[any]bool{}
	for range 5 {
		seen[call(t, g, "GET", "/v24.0/1001", nil).graphErr()["fbtrace_id"]] = true
	}
	if len(seen) != 5 {
		t.Errorf("fbtrace_id repeated: %v", seen)
	}
}

func TestFailNext(t *testing.T) {
	t.Parallel()
	g := newGraph(t)
	ok := url.Values{"access_token": {appToken}}

	g.FailNext(1, 4, "")
	a := call(t, g, "GET", "/v24.0/1001", ok)
	if e := a.graphErr(); a.status != 400 || e["code"] != 4.0 || e["message"] != "(#4) Application request limit reached" {
		t.Errorf("code 4: %d %v", a.status, a.body)
	}
	g.FailNext(1, 2, "")
	if a := call(t, g, "GET", "/v24.0/1001", ok); a.status != 500 || a.graphErr()["code"] != 2.0 {
		t.Errorf("code 2: %d %v", a.status, a.body)
	}
	g.FailNext(1, 80001, "custom")
	if a := call(t, g, "GET", "/v24.0/1001", ok); a.graphErr()["message"] != "custom" {
		t.Errorf("code 80001: %v", a.body)
	}
	if a := call(t, g, "GET", "/v24.0/1001", ok); a.status != 200 || a.body["name"] != "Postgate" {
		t.Errorf("after failures: %d %v", a.status, a.body)
	}
	if n, want := g.Calls(), 4; n != want {
		t.Errorf("Calls = %d, want %d", n, want)
	}
	if n, want := g.CallsTo("GET", "/1001"), 4; n != want {
		t.Errorf("CallsTo = %d, want %d", n, want)
	}
}

// TestHandshake checks the verification GET: the callback's own query
// kept, Meta's three parameters added, the challenge a number, and the
// field versions taken from the request path.
func TestHandshake(t *testing.T) {
	t.Parallel()
	g := newGraph(t)
	var (
		mu  sync.Mutex
		got *http.Request
	)
	gw := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		got = r.Clone(r.Context())
		mu.Unlock()
		io.WriteString(w, r.URL.Query().Get("hub.challenge"))
	}))
	t.Cleanup(gw.Close)

	a := call(t, g, "POST", "/v19.0/1001/subscriptions", url.Values{
		"access_token": {appToken}, "object": {"page"}, "callback_url": {gw.URL + "/hook?a=1&b=x%20y"},
		"verify_token": {"vt"}, "fields": {"messages, standby"}, "include_values": {"true"},
	})
	if a.status != 200 || a.body["success"] != true {
		t.Fatalf("subscribe: %d %v", a.status, a.body)
	}
	mu.Lock()
	r := got
	mu.Unlock()
	if r == nil {
		t.Fatal("no handshake")
	}
	q := r.URL.Query()
	if r.Method != "GET" || r.URL.Path != "/hook" || !strings.HasPrefix(r.URL.RawQuery, "a=1&b=x%20y&") {
		t.Errorf("handshake %s %s", r.Method, r.URL)
	}
	if q.Get("hub.mode") != "subscribe" || q.Get("hub.verify_token") != "vt" {
		t.Errorf("handshake query %v", q)
	}
	if _, err := strconv.ParseUint(q.Get("hub.challenge"), 10, 64); err != nil {
		t.Errorf("challenge %q is not a number", q.Get("hub.challenge"))
	}
	if vt, _ := g.VerifyToken(appID, "page"); vt != "vt" {
		t.Errorf("VerifyToken = %q", vt)
	}

	a = call(t, g, "GET", "/v24.0/1001/subscriptions", url.Values{"access_token": {appToken}})
	want := `[{"active":true,"callback_url":"` + gw.URL + `/hook?a=1\u0026b=x%20y","fields":[{"name":"messages","version":"v19.0"},{"name":"standby","version":"v19.0"}],"object":"page"}]`
	if b, _ := json.Marshal(a.body["data"]); string(b) != want {
		t.Errorf("subscriptions\n got %s\nwant %s", b, want)
	}
}

// TestHandshakeTimeout checks that a callback that never answers fails
// with 2200 once the client used for the handshake gives up.
func TestHandshakeTimeout(t *testing.T) {
	t.Parallel()
	g := newGraph(t)
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(slow.Close)
	t.Cleanup(func() { close(release) })
	g.SetHTTPClient(&http.Client{Timeout: 100 * time.Millisecond})

	a := call(t, g, "POST", "/v24.0/1001/subscriptions", url.Values{
		"access_token": {appToken}, "object": {"page"}, "callback_url": {slow.URL}, "verify_token": {"secret-vt"}, "fields": {"messages"},
	})
	e := a.graphErr()
	if e["code"] != 2200.0 || !strings.HasPrefix(e["message"].(string), "(#2200) Callback verification failed") {
		t.Fatalf("got %v", a.body)
	}
	if strings.Contains(e["message"].(string), "secret-vt") {
		t.Errorf("message holds the verify token: %v", e["message"])
	}
}

// TestConcurrent exercises the fake from many goroutines (run with -race).
func TestConcurrent(t *testing.T) {
	t.Parallel()
	g := newGraph(t)
	c, err := meta.NewClient(meta.ClientConfig{BaseURL: g.URL})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Go(func() {
			fields := []string{"messages", "f" + strconv.Itoa(i)}
			if err := c.SubscribePage(t.Context(), pageID, pageToken, appSecret, fields); err != nil {
				t.Errorf("SubscribePage: %v", err)
			}
			if _, err := c.PageSubscriptions(t.Context(), pageID, pageToken, appSecret); err != nil {
				t.Errorf("PageSubscriptions: %v", err)
			}
			g.SetSubscription(appID, meta.Subscription{Object: "page", CallbackURL: "https://x.example/", Active: i%2 == 0, Fields: fields})
			g.Subscription(appID, "page")
			g.PageFields(pageID, appID)
		})
	}
	wg.Wait()
	if n := g.Calls(); n != 40 {
		t.Errorf("Calls = %d, want 40", n)
	}
}
