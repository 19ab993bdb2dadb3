package metatest

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	mrand "math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/postgate/postgate/internal/meta"
)

// Graph is a fake Graph API. Its methods are safe for concurrent use.
type Graph struct {
	// URL is the base URL to give meta.ClientConfig.BaseURL.
	URL string

	srv *httptest.Server

	mu      sync.Mutex
	apps    map[string]*app               // by app id
	tokens  map[string]pageToken          // Page access tokens
	revoked map[string]int                // token → error_subcode
	pages   map[string]map[string][]field // page id → app id → subscribed fields
	fail    failure
	calls   int
	perPath map[string]int // "GET /123/subscriptions" → count
	client  *http.Client
}

type app struct {
	secret, name string
	subs         map[string]*subscription // by object
}

type subscription struct {
	callbackURL, verifyToken string
	active                   bool
	fields                   []field
}

type field struct{ name, version string }

type pageToken struct{ pageID, appID string }

type failure struct {
	n, code int
	message string
}

// New starts a fake Graph API; it is closed when the test ends. It accepts
// any version path ("/v24.0/…", "/v19.0/…"); a path without a version is
// served as Meta does, at meta.DefaultVersion.
func New(t testing.TB) *Graph {
	t.Helper()
	g := &Graph{
		apps:    map[string]*app{},
		tokens:  map[string]pageToken{},
		revoked: map[string]int{},
		pages:   map[string]map[string][]field{},
		perPath: map[string]int{},
		client: &http.Client{
			Timeout: handshakeTimeout,
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		},
	}
	g.srv = httptest.NewServer(http.HandlerFunc(g.serve))
	g.URL = g.srv.URL
	t.Cleanup(g.srv.Close)
	return g
}

// AddApp registers an app; its app access token is "{appID}|{secret}".
func (g *Graph) AddApp(appID, secret, name string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if a, ok := g.apps[appID]; ok {
		a.secret, a.name = secret, name
		return
	}
	g.apps[appID] = &app{secret: secret, name: name, subs: map[string]*subscription{}}
}

// AddPageToken issues token as a Page access token of pageID for appID.
// The app must have been added: its secret checks the appsecret_proof.
func (g *Graph) AddPageToken(pageID, appID, token string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if _, ok := g.apps[appID]; !ok {
		panic(fmt.Sprintf("metatest: AddPageToken for unknown app %q: call AddApp first", appID))
	}
	g.tokens[token] = pageToken{pageID: pageID, appID: appID}
	delete(g.revoked, token)
}

// RevokeToken makes later calls with token (a Page or an app token) fail
// with code 190 and subcode, e.g. 460 (password changed), 463 (expired),
// 467 (invalid session).
func (g *Graph) RevokeToken(token string, subcode int) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.revoked[token] = subcode
}

// SetSubscription creates or replaces the app's subscription for
// s.Object, as if Meta had changed it (made it inactive, dropped fields,
// moved the callback). No handshake is run. The verify token is kept.
// The app must have been added.
func (g *Graph) SetSubscription(appID string, s meta.Subscription) {
	g.mu.Lock()
	defer g.mu.Unlock()
	a := g.mustApp(appID)
	old := a.subs[s.Object]
	sub := &subscription{callbackURL: s.CallbackURL, active: s.Active}
	if old != nil {
		sub.verifyToken = old.verifyToken
	}
	for _, name := range s.Fields {
		version := meta.DefaultVersion
		if old != nil {
			if i := indexField(old.fields, name); i >= 0 {
				version = old.fields[i].version
			}
		}
		sub.fields = append(sub.fields, field{name: name, version: version})
	}
	a.subs[s.Object] = sub
}

// Subscription returns the app's subscription for object.
func (g *Graph) Subscription(appID, object string) (meta.Subscription, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	a, ok := g.apps[appID]
	if !ok {
		return meta.Subscription{}, false
	}
	s, ok := a.subs[object]
	if !ok {
		return meta.Subscription{}, false
	}
	return meta.Subscription{Object: object, CallbackURL: s.callbackURL, Active: s.active, Fields: names(s.fields)}, true
}

// VerifyToken returns the verify token last sent for the app's
// subscription to object.
func (g *Graph) VerifyToken(appID, object string) (string, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	a, ok := g.apps[appID]
	if !ok {
		return "", false
	}
	s, ok := a.subs[object]
	if !ok {
		return "", false
	}
	return s.verifyToken, true
}

// SetPageFields sets the fields appID is subscribed to on pageID; nil or
// empty removes the app from the Page's subscribed apps.
func (g *Graph) SetPageFields(pageID, appID string, fields []string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.setPageFields(pageID, appID, fields, meta.DefaultVersion)
}

func (g *Graph) setPageFields(pageID, appID string, fields []string, version string) {
	if len(fields) == 0 {
		delete(g.pages[pageID], appID)
		return
	}
	if g.pages[pageID] == nil {
		g.pages[pageID] = map[string][]field{}
	}
	fs := make([]field, 0, len(fields))
	for _, f := range fields {
		if indexField(fs, f) < 0 {
			fs = append(fs, field{name: f, version: version})
		}
	}
	g.pages[pageID][appID] = fs
}

// PageFields returns the fields appID is subscribed to on pageID, and
// whether it is subscribed at all.
func (g *Graph) PageFields(pageID, appID string) ([]string, bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	fs, ok := g.pages[pageID][appID]
	if !ok {
		return nil, false
	}
	return names(fs), true
}

// FailNext makes the next n requests fail with Meta error code and
// message (empty: Meta's usual message for the code), before any other
// check. The status is 500 for codes 1 and 2 (Meta's unknown error and
// service unavailable), 400 otherwise, as Meta answers them.
func (g *Graph) FailNext(n int, code int, message string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.fail = failure{n: n, code: code, message: message}
}

// Calls returns the number of requests served.
func (g *Graph) Calls() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.calls
}

// CallsTo returns the number of requests served for method and path, the
// path without its version, e.g. CallsTo("POST", "/123/subscriptions").
func (g *Graph) CallsTo(method, path string) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.perPath[method+" "+path]
}

// SetHTTPClient sets the client used for the verification GET of a
// subscription. The default has a 10s timeout, follows no redirects and
// may reach loopback.
func (g *Graph) SetHTTPClient(c *http.Client) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.client = c
}

func (g *Graph) mustApp(appID string) *app {
	a, ok := g.apps[appID]
	if !ok {
		panic(fmt.Sprintf("metatest: unknown app %q: call AddApp first", appID))
	}
	return a
}

// graphError is one of Meta's errors.
type graphError struct {
	status  int
	message string
	typ     string
	code    int
	subcode int
}

func oauth(code int, message string) *graphError {
	return &graphError{status: http.StatusBadRequest, message: message, typ: "OAuthException", code: code}
}

func method(code int, message string) *graphError {
	return &graphError{status: http.StatusBadRequest, message: message, typ: "GraphMethodException", code: code}
}

func unsupported(verb, id string) *graphError {
	return method(100, fmt.Sprintf("Unsupported %s request. Object with ID '%s' does not exist, cannot be loaded due to missing permissions, or does not support this operation. Please read the Graph API documentation at https://developers.facebook.com/docs/graph-api", strings.ToLower(verb), id))
}

// caller is who a request's access token says is calling.
type caller struct {
	token  string
	appID  string
	pageID string // "" for an app token
}

var versionRE = regexp.MustCompile(`^/v[0-9]+\.[0-9]+(/.*)?$`)

func (g *Graph) serve(w http.ResponseWriter, r *http.Request) {
	version, path := meta.DefaultVersion, r.URL.Path
	if versionRE.MatchString(path) {
		rest := strings.TrimPrefix(path, "/")
		version, path, _ = strings.Cut(rest, "/")
		path = "/" + path
	}
	g.mu.Lock()
	g.calls++
	g.perPath[r.Method+" "+path]++
	g.mu.Unlock()

	if err := r.ParseForm(); err != nil {
		writeError(w, oauth(100, "(#100) Invalid parameter"))
		return
	}
	res, gerr := g.route(r, version, path)
	if gerr != nil {
		writeError(w, gerr)
		return
	}
	writeJSON(w, http.StatusOK, res)
}

func (g *Graph) route(r *http.Request, version, path string) (any, *graphError) {
	if e := g.takeFailure(); e != nil {
		return nil, e
	}
	c, e := g.authenticate(r.Form)
	if e != nil {
		return nil, e
	}
	parts := strings.Split(strings.Trim(path, "/"), "/")
	switch {
	case len(parts) == 1 && parts[0] != "" && r.Method == http.MethodGet:
		return g.getNode(c, parts[0], r.Form)
	case len(parts) == 2 && parts[1] == "subscriptions" && (r.Method == http.MethodGet || r.Method == http.MethodPost):
		if c.pageID != "" {
			return nil, oauth(15, "(#15) This method must be called with an app access_token.")
		}
		if parts[0] != c.appID {
			return nil, unsupported(r.Method, parts[0])
		}
		if r.Method == http.MethodGet {
			return g.appSubscriptions(c.appID), nil
		}
		return g.subscribe(r, c.appID, version)
	case len(parts) == 2 && parts[1] == "subscribed_apps" && (r.Method == http.MethodGet || r.Method == http.MethodPost):
		if c.pageID == "" {
			return nil, oauth(210, "(#210) A page access token is required to request this resource.")
		}
		if parts[0] != c.pageID {
			return nil, oauth(200, "(#200) Permissions error")
		}
		if r.Method == http.MethodGet {
			return g.pageApps(c.pageID), nil
		}
		return g.subscribePage(r, c, version)
	}
	id := "/"
	if len(parts) > 0 && parts[0] != "" {
		id = parts[0]
	}
	return nil, unsupported(r.Method, id)
}

func (g *Graph) takeFailure() *graphError {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.fail.n <= 0 {
		return nil
	}
	g.fail.n--
	msg := g.fail.message
	if msg == "" {
		msg = defaultMessages[g.fail.code]
	}
	if msg == "" {
		msg = "(#" + strconv.Itoa(g.fail.code) + ") An error occurred"
	}
	e := oauth(g.fail.code, msg)
	if g.fail.code == 1 || g.fail.code == 2 {
		e.status = http.StatusInternalServerError
	}
	return e
}

var defaultMessages = map[int]string{
	1:     "An unknown error occurred",
	2:     "An unexpected error has occurred. Please retry your request later.",
	4:     "(#4) Application request limit reached",
	17:    "(#17) User request limit reached",
	32:    "(#32) Page request limit reached",
	613:   "(#613) Calls to this api have exceeded the rate limit.",
	80001: "(#80001) There have been too many calls to this Page account. Wait a bit and try again. For more info, please refer to https://developers.facebook.com/docs/graph-api/overview/rate-limiting.",
	80006: "(#80006) There have been too many messenger api calls to this Page account. Wait a bit and try again. For more info, please refer to https://developers.facebook.com/docs/graph-api/overview/rate-limiting.",
}

// revokedMessages are Meta's messages for code 190 by error_subcode.
var revokedMessages = map[int]string{
	458: "Error validating access token: The user has not authorized application.",
	459: "Error validating access token: You cannot access the app till you log in to www.facebook.com and follow the instructions given.",
	460: "Error validating access token: The session has been invalidated because the user changed their password or Facebook has changed the session for security reasons.",
	464: "Error validating access token: Sessions for the user are not allowed because the user is not a confirmed user.",
	467: "Error validating access token: The session is invalid because the user logged out.",
	492: "Error validating access token: The session is invalid.",
}

func (g *Graph) authenticate(form url.Values) (caller, *graphError) {
	token := form.Get("access_token")
	if token == "" {
		return caller{}, oauth(104, "An access token is required to request this resource.")
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if sub, ok := g.revoked[token]; ok {
		msg := revokedMessages[sub]
		if sub == 463 {
			now := time.Now().UTC()
			msg = fmt.Sprintf("Error validating access token: Session has expired on %s. The current time is %s.",
				now.Add(-time.Hour).Format("Monday, 02-Jan-06 15:04:05 MST"), now.Format("Monday, 02-Jan-06 15:04:05 MST"))
		}
		if msg == "" {
			msg = "Error validating access token: The session has been invalidated."
		}
		e := oauth(190, msg)
		e.subcode = sub
		return caller{}, e
	}
	proof, hasProof := form["appsecret_proof"]
	if appID, secret, ok := strings.Cut(token, "|"); ok {
		a, ok := g.apps[appID]
		if !ok {
			return caller{}, oauth(101, "Error validating application. Invalid application ID.")
		}
		if !hmac.Equal([]byte(secret), []byte(a.secret)) {
			return caller{}, oauth(190, "Invalid OAuth access token signature.")
		}
		// Meta checks a proof sent with an app token too.
		if hasProof && !validProof(proof[0], token, a.secret) {
			return caller{}, method(100, "Invalid appsecret_proof provided in the API argument")
		}
		return caller{token: token, appID: appID}, nil
	}
	pt, ok := g.tokens[token]
	if !ok {
		return caller{}, oauth(190, "Invalid OAuth access token - Cannot parse access token")
	}
	if !hasProof || proof[0] == "" {
		return caller{}, method(100, "API calls from the server require an appsecret_proof argument")
	}
	if !validProof(proof[0], token, g.apps[pt.appID].secret) {
		return caller{}, method(100, "Invalid appsecret_proof provided in the API argument")
	}
	return caller{token: token, appID: pt.appID, pageID: pt.pageID}, nil
}

func validProof(proof, token, secret string) bool {
	return hmac.Equal([]byte(proof), []byte(meta.AppSecretProof(token, secret)))
}

// getNode answers GET /{id}: an app reads itself.
func (g *Graph) getNode(c caller, id string, form url.Values) (any, *graphError) {
	g.mu.Lock()
	defer g.mu.Unlock()
	a, ok := g.apps[id]
	if !ok || c.pageID != "" || c.appID != id {
		return nil, unsupported(http.MethodGet, id)
	}
	res := map[string]string{"id": id}
	fields := form.Get("fields")
	if fields == "" {
		res["name"] = a.name
		return res, nil
	}
	for _, f := range strings.Split(fields, ",") {
		switch f = strings.TrimSpace(f); f {
		case "id":
		case "name":
			res["name"] = a.name
		default:
			return nil, oauth(100, fmt.Sprintf("(#100) Tried accessing nonexisting field (%s) on node type (Application)", f))
		}
	}
	return res, nil
}

type fieldJSON struct {
	Name    string `json:"name"`
	Version string `json:"version"`
}

type subscriptionJSON struct {
	Object      string      `json:"object"`
	CallbackURL string      `json:"callback_url"`
	Active      bool        `json:"active"`
	Fields      []fieldJSON `json:"fields"`
}

func (g *Graph) appSubscriptions(appID string) any {
	g.mu.Lock()
	defer g.mu.Unlock()
	a := g.apps[appID]
	data := []subscriptionJSON{}
	for object, s := range a.subs {
		sj := subscriptionJSON{Object: object, CallbackURL: s.callbackURL, Active: s.active, Fields: []fieldJSON{}}
		for _, f := range s.fields {
			sj.Fields = append(sj.Fields, fieldJSON{Name: f.name, Version: f.version})
		}
		data = append(data, sj)
	}
	sort.Slice(data, func(i, j int) bool { return data[i].Object < data[j].Object })
	return map[string]any{"data": data}
}

var objects = []string{"page", "instagram", "user", "permissions"}

// subscribe answers POST /{app_id}/subscriptions: it checks the
// parameters, runs the verification handshake, then stores the
// subscription.
func (g *Graph) subscribe(r *http.Request, appID, version string) (any, *graphError) {
	object := r.Form.Get("object")
	if object == "" {
		return nil, oauth(100, "(#100) The parameter object is required")
	}
	if !slices.Contains(objects, object) {
		return nil, oauth(100, "(#100) Param object must be one of {page, instagram, user, permissions} - got \""+object+"\"")
	}
	callback := r.Form.Get("callback_url")
	if callback == "" {
		return nil, oauth(100, "(#100) The parameter callback_url is required")
	}
	u, err := url.Parse(callback)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, oauth(100, "(#100) Param callback_url must be a valid URL")
	}
	var fields []string
	for _, f := range strings.Split(r.Form.Get("fields"), ",") {
		if f = strings.TrimSpace(f); f != "" {
			fields = append(fields, f)
		}
	}
	if len(fields) == 0 {
		return nil, oauth(100, "(#100) The parameter fields is required")
	}
	verify := r.Form.Get("verify_token")

	g.mu.Lock()
	client := g.client
	g.mu.Unlock()
	if e := handshake(r, client, u, verify); e != nil {
		return nil, e
	}

	g.mu.Lock()
	defer g.mu.Unlock()
	a := g.apps[appID]
	s := a.subs[object]
	if s == nil {
		s = &subscription{}
		a.subs[object] = s
	}
	s.active, s.callbackURL, s.verifyToken = true, callback, verify
	for _, f := range fields {
		if indexField(s.fields, f) < 0 {
			s.fields = append(s.fields, field{name: f, version: version})
		}
	}
	return map[string]bool{"success": true}, nil
}

// handshakeTimeout bounds the verification GET, whatever the client.
const handshakeTimeout = 10 * time.Second

// handshake is Meta's verification GET: the callback must answer 200 with
// exactly the challenge.
func handshake(r *http.Request, client *http.Client, callback *url.URL, verifyToken string) *graphError {
	challenge := strconv.FormatInt(mrand.Int64N(9e9)+1e9, 10)
	u := *callback
	q := url.Values{
		"hub.mode":         {"subscribe"},
		"hub.challenge":    {challenge},
		"hub.verify_token": {verifyToken},
	}.Encode()
	if u.RawQuery == "" {
		u.RawQuery = q
	} else {
		u.RawQuery += "&" + q
	}
	u.Fragment = ""
	ctx, cancel := context.WithTimeout(r.Context(), handshakeTimeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return oauth(2200, "(#2200) Callback verification failed with the following errors: "+err.Error())
	}
	req.Header.Set("User-Agent", "facebookplatform/1.0 (+http://developers.facebook.com)")
	resp, err := client.Do(req)
	if err != nil {
		// Not the *url.Error text: its URL holds the verify token.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return oauth(2200, "(#2200) Callback verification failed with the following errors: HTTP Status Code = 0; HTTP Message = "+err.Error())
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		return oauth(2200, fmt.Sprintf("(#2200) Callback verification failed with the following errors: HTTP Status Code = %d; HTTP Message = %s",
			resp.StatusCode, http.StatusText(resp.StatusCode)))
	}
	if string(b) != challenge {
		return oauth(2201, fmt.Sprintf("(#2201) response does not match challenge, expected value=%q, received=%q", challenge, firstRunes(string(b), 20)))
	}
	return nil
}

func firstRunes(s string, n int) string {
	for i := range s {
		if n == 0 {
			return s[:i]
		}
		n--
	}
	return s
}

type subscribedAppJSON struct {
	Category         string   `json:"category"`
	Link             string   `json:"link"`
	Name             string   `json:"name"`
	ID               string   `json:"id"`
	SubscribedFields []string `json:"subscribed_fields"`
}

func (g *Graph) pageApps(pageID string) any {
	g.mu.Lock()
	defer g.mu.Unlock()
	data := []subscribedAppJSON{}
	for appID, fs := range g.pages[pageID] {
		name := ""
		if a, ok := g.apps[appID]; ok {
			name = a.name
		}
		data = append(data, subscribedAppJSON{
			Category: "Business", Link: "https://example.invalid/", Name: name, ID: appID, SubscribedFields: names(fs),
		})
	}
	sort.Slice(data, func(i, j int) bool { return data[i].ID < data[j].ID })
	return map[string]any{"data": data}
}

// subscribePage answers POST /{page_id}/subscribed_apps: the token's app
// gets exactly the fields given on the Page.
func (g *Graph) subscribePage(r *http.Request, c caller, version string) (any, *graphError) {
	var fields []string
	for _, f := range strings.Split(r.Form.Get("subscribed_fields"), ",") {
		if f = strings.TrimSpace(f); f != "" {
			fields = append(fields, f)
		}
	}
	if len(fields) == 0 {
		return nil, oauth(100, "(#100) The parameter subscribed_fields is required")
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	g.setPageFields(c.pageID, c.appID, fields, version)
	return map[string]bool{"success": true}, nil
}

func indexField(fs []field, name string) int {
	return slices.IndexFunc(fs, func(f field) bool { return f.name == name })
}

func names(fs []field) []string {
	out := make([]string, len(fs))
	for i, f := range fs {
		out[i] = f.name
	}
	return out
}

func writeError(w http.ResponseWriter, e *graphError) {
	body := map[string]any{
		"message":    e.message,
		"type":       e.typ,
		"code":       e.code,
		"fbtrace_id": rand.Text()[:11],
	}
	if e.subcode != 0 {
		body["error_subcode"] = e.subcode
	}
	if e.typ == "OAuthException" && (e.code == 190 || e.code == 104) {
		w.Header().Set("WWW-Authenticate", `OAuth "Facebook Platform" "invalid_token" "`+e.message+`"`)
	}
	writeJSON(w, e.status, map[string]any{"error": body})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		status, b = http.StatusInternalServerError, []byte(`{"error":{"message":"metatest: cannot encode answer","type":"OAuthException","code":1}}`)
	}
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(status)
	w.Write(b)
}
