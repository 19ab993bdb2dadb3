package meta

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// DefaultVersion is the Graph API version used when ClientConfig.Version is
// empty.
const DefaultVersion = "v24.0"

const (
	defaultTimeout = 10 * time.Second
	defaultRetries = 3
	maxBackoff     = 30 * time.Second
	maxAnswer      = 1 << 20 // bytes of an answer read at most
	maxExcerpt     = 200     // bytes of an unexpected answer quoted in an error
)

var versionRE = regexp.MustCompile(`^v[0-9]+\.[0-9]+$`)

// ClientConfig configures a Client. NewClient fills its defaults and
// validates it.
type ClientConfig struct {
	// BaseURL is GRAPH_API_URL, e.g. "https://graph.facebook.com": an
	// absolute http(s) URL without query or fragment (http is allowed so
	// tests can use httptest).
	BaseURL string
	// Version is GRAPH_API_VERSION, e.g. "v24.0"; empty means
	// DefaultVersion.
	Version string
	// HTTP is the client requests go through. Nil means a client with a 10s
	// timeout that follows no redirects.
	HTTP *http.Client
	// Retries is the number of extra attempts after a rate limit, an HTTP
	// 5xx or a transport error: 0 means 3, negative means none.
	Retries int
	// Backoff is the delay before retry n (1-based). Nil means 1s, 2s, 4s…
	// with ±20% jitter, capped at 30s.
	Backoff func(attempt int) time.Duration
}

// Client calls Meta's Graph API. It is safe for concurrent use.
type Client struct {
	base    string // BaseURL without a trailing slash
	version string
	http    *http.Client
	retries int
	backoff func(int) time.Duration
}

// NewClient returns a Client for cfg, or an error that names the invalid
// setting.
func NewClient(cfg ClientConfig) (*Client, error) {
	u, err := url.Parse(cfg.BaseURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("graph API URL %q: must be an absolute http(s) URL", cfg.BaseURL)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return nil, fmt.Errorf("graph API URL %q: must have no user info, query or fragment", u.Redacted())
	}
	if cfg.Version == "" {
		cfg.Version = DefaultVersion
	}
	if !versionRE.MatchString(cfg.Version) {
		return nil, fmt.Errorf("graph API version %q: must look like %q", cfg.Version, DefaultVersion)
	}
	c := &Client{
		base:    strings.TrimRight(u.String(), "/"),
		version: cfg.Version,
		http:    cfg.HTTP,
		retries: cfg.Retries,
		backoff: cfg.Backoff,
	}
	if c.http == nil {
		c.http = &http.Client{
			Timeout: defaultTimeout,
			CheckRedirect: func(*http.Request, []*http.Request) error {
				return http.ErrUseLastResponse
			},
		}
	}
	switch {
	case c.retries == 0:
		c.retries = defaultRetries
	case c.retries < 0:
		c.retries = 0
	}
	if c.backoff == nil {
		c.backoff = defaultBackoff
	}
	return c, nil
}

// defaultBackoff waits 1s, 2s, 4s… before retry n, ±20%, at most 30s.
func defaultBackoff(attempt int) time.Duration {
	d := maxBackoff
	if attempt >= 1 && attempt <= 5 {
		d = time.Second << (attempt - 1)
	}
	d = time.Duration(float64(d) * (0.8 + 0.4*rand.Float64()))
	return min(d, maxBackoff)
}

// App is what Meta says of an app.
type App struct {
	ID   string
	Name string
}

// App reads an app's id and name (GET /{app_id}?fields=id,name) with the
// app access token "{app_id}|{app_secret}". A wrong secret is a *Error
// with code 190, an unknown app one with code 101.
func (c *Client) App(ctx context.Context, appID, appSecret string) (App, error) {
	if err := checkID("app", appID); err != nil {
		return App{}, err
	}
	var out struct {
		ID   string `json:"id"`
		Name string `json:"name"`
	}
	q := url.Values{"fields": {"id,name"}}
	if err := c.call(ctx, http.MethodGet, appID, q, appToken(appID, appSecret), "", &out); err != nil {
		return App{}, err
	}
	if out.ID == "" {
		return App{}, fmt.Errorf("graph GET %s: answer has no app id", c.path(appID))
	}
	return App{ID: out.ID, Name: out.Name}, nil
}

// SubscribeParams are the settings of an app's webhook subscription.
type SubscribeParams struct {
	// Object is what the subscription is about: "page", "instagram",
	// "user" or "permissions".
	Object string
	// CallbackURL is where Meta sends the events; Meta verifies it with a
	// GET handshake before it answers Subscribe.
	CallbackURL string
	// VerifyToken is the hub.verify_token Meta sends in the handshake.
	VerifyToken string
	// Fields are the webhook fields, e.g. "messages".
	Fields []string
}

// Subscribe creates or updates the app's webhook subscription for
// p.Object (POST /{app_id}/subscriptions with the app access token). Meta
// runs the verification handshake against p.CallbackURL before it
// answers; a failed handshake is a *Error with code 2200 or 2201. Meta
// merges p.Fields into the fields already subscribed.
func (c *Client) Subscribe(ctx context.Context, appID, appSecret string, p SubscribeParams) error {
	if err := checkID("app", appID); err != nil {
		return err
	}
	if p.Object == "" || p.CallbackURL == "" {
		return errors.New("graph subscribe: object and callback URL are required")
	}
	form := url.Values{
		"object":         {p.Object},
		"callback_url":   {p.CallbackURL},
		"verify_token":   {p.VerifyToken},
		"fields":         {strings.Join(p.Fields, ",")},
		"include_values": {"true"},
	}
	return c.post(ctx, appID+"/subscriptions", form, appToken(appID, appSecret), "", p.VerifyToken)
}

// Subscription is one of an app's webhook subscriptions, as Meta reports
// it.
type Subscription struct {
	Object      string
	CallbackURL string
	// Active is false when Meta has disabled the subscription (for
	// example after the callback kept failing).
	Active bool
	// Fields are the subscribed field names.
	Fields []string
}

// Subscriptions reads the app's webhook subscriptions (GET
// /{app_id}/subscriptions with the app access token).
func (c *Client) Subscriptions(ctx context.Context, appID, appSecret string) ([]Subscription, error) {
	if err := checkID("app", appID); err != nil {
		return nil, err
	}
	var out struct {
		Data []struct {
			Object      string       `json:"object"`
			CallbackURL string       `json:"callback_url"`
			Active      bool         `json:"active"`
			Fields      []fieldEntry `json:"fields"`
		} `json:"data"`
	}
	if err := c.call(ctx, http.MethodGet, appID+"/subscriptions", nil, appToken(appID, appSecret), "", &out); err != nil {
		return nil, err
	}
	subs := make([]Subscription, 0, len(out.Data))
	for _, d := range out.Data {
		s := Subscription{Object: d.Object, CallbackURL: d.CallbackURL, Active: d.Active}
		for _, f := range d.Fields {
			s.Fields = append(s.Fields, f.Name)
		}
		subs = append(subs, s)
	}
	return subs, nil
}

// fieldEntry is one subscribed field: Meta writes {"name":…,"version":…};
// a bare string is accepted too.
type fieldEntry struct{ Name string }

func (f *fieldEntry) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '"' {
		return json.Unmarshal(b, &f.Name)
	}
	var v struct {
		Name string `json:"name"`
	}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	f.Name = v.Name
	return nil
}

// SubscribePage subscribes the Page token's app to the Page's webhook
// fields (POST /{page_id}/subscribed_apps with the Page access token and
// appsecret_proof). fields must not be empty.
func (c *Client) SubscribePage(ctx context.Context, pageID, pageToken, appSecret string, fields []string) error {
	if err := checkID("page", pageID); err != nil {
		return err
	}
	if len(fields) == 0 {
		return errors.New("graph subscribe page: no fields given")
	}
	form := url.Values{"subscribed_fields": {strings.Join(fields, ",")}}
	return c.post(ctx, pageID+"/subscribed_apps", form, pageToken, appSecret, "")
}

// SubscribedApp is an app subscribed to a Page's webhooks.
type SubscribedApp struct {
	ID               string
	Name             string
	SubscribedFields []string
}

// PageSubscriptions reads the apps subscribed to a Page (GET
// /{page_id}/subscribed_apps with the Page access token and
// appsecret_proof).
func (c *Client) PageSubscriptions(ctx context.Context, pageID, pageToken, appSecret string) ([]SubscribedApp, error) {
	if err := checkID("page", pageID); err != nil {
		return nil, err
	}
	var out struct {
		Data []struct {
			ID               string   `json:"id"`
			Name             string   `json:"name"`
			SubscribedFields []string `json:"subscribed_fields"`
		} `json:"data"`
	}
	if err := c.call(ctx, http.MethodGet, pageID+"/subscribed_apps", nil, pageToken, appSecret, &out); err != nil {
		return nil, err
	}
	apps := make([]SubscribedApp, 0, len(out.Data))
	for _, d := range out.Data {
		apps = append(apps, SubscribedApp{ID: d.ID, Name: d.Name, SubscribedFields: d.SubscribedFields})
	}
	return apps, nil
}

// AppSecretProof is hex(HMAC-SHA256(key=appSecret, msg=token)), the
// appsecret_proof Meta requires beside a Page (or user) access token.
func AppSecretProof(token, appSecret string) string {
	m := hmac.New(sha256.New, []byte(appSecret))
	m.Write([]byte(token))
	return hex.EncodeToString(m.Sum(nil))
}

// Error is an error answered by Meta: its error JSON
// {"error":{"message","type","code","error_subcode","fbtrace_id"}} and the
// HTTP status.
type Error struct {
	Status    int
	Message   string
	Type      string
	Code      int
	Subcode   int
	FBTraceID string
}

// Error returns Meta's message with its type, codes and fbtrace_id, e.g.
// "Meta: Invalid OAuth access token signature. (OAuthException, code 190,
// fbtrace_id Abc)". It never holds a token: the Client redacts the secrets
// of the call from Message.
func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("Meta: ")
	if e.Message == "" {
		b.WriteString("error without a message")
	} else {
		b.WriteString(e.Message)
	}
	b.WriteString(" (")
	if e.Type != "" {
		b.WriteString(e.Type)
		b.WriteString(", ")
	}
	b.WriteString("code ")
	b.WriteString(strconv.Itoa(e.Code))
	if e.Subcode != 0 {
		b.WriteString(", subcode ")
		b.WriteString(strconv.Itoa(e.Subcode))
	}
	if e.FBTraceID != "" {
		b.WriteString(", fbtrace_id ")
		b.WriteString(e.FBTraceID)
	}
	b.WriteString(")")
	return b.String()
}

// RateLimited reports whether Meta refused the call for a rate limit: app
// (4), user (17), Page (32), API-specific (613) or business use case
// (80001–80009) limits. The Client retries these.
func (e *Error) RateLimited() bool {
	switch {
	case e.Code == 4, e.Code == 17, e.Code == 32, e.Code == 613:
		return true
	case e.Code >= 80001 && e.Code <= 80009:
		return true
	}
	return false
}

// TokenInvalid reports whether Meta refused the access token itself (app
// or Page): code 190 with any subcode (expired, revoked, wrong secret), or
// 102 (session error). Such a token will not start working on a retry.
func (e *Error) TokenInvalid() bool {
	return e.Code == 190 || e.Code == 102
}

// answerError is an answer that is neither what the call expects nor
// Meta's error JSON.
type answerError struct {
	status int
	msg    string
}

func (e *answerError) Error() string { return e.msg }

// transportError is a failed round trip, rephrased so that the request URL
// (with its access_token) is not in the text. Unwrap gives the cause,
// e.g. context.Canceled or a *net.OpError.
type transportError struct {
	msg string
	err error
}

func (e *transportError) Error() string { return e.msg }
func (e *transportError) Unwrap() error { return e.err }

// appToken is the app access token "{app_id}|{app_secret}".
func appToken(appID, appSecret string) string { return appID + "|" + appSecret }

// checkID refuses ids that would change the request path.
func checkID(kind, id string) error {
	if id == "" {
		return fmt.Errorf("graph: empty %s id", kind)
	}
	if id == "." || id == ".." {
		return fmt.Errorf("graph: %s id %q is not a Graph id", kind, id)
	}
	for _, r := range id {
		ok := r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r == '_' || r == '-' || r == '.'
		if !ok {
			return fmt.Errorf("graph: %s id %q is not a Graph id", kind, id)
		}
	}
	return nil
}

// path is the request path named in errors, e.g. "/v24.0/123/subscriptions".
func (c *Client) path(rel string) string { return "/" + c.version + "/" + rel }

// post makes a POST call whose answer must be {"success":true}.
func (c *Client) post(ctx context.Context, rel string, form url.Values, token, appSecret string, secrets ...string) error {
	var out struct {
		Success *bool `json:"success"`
	}
	if err := c.call(ctx, http.MethodPost, rel, form, token, appSecret, &out, secrets...); err != nil {
		return err
	}
	if out.Success == nil || !*out.Success {
		return fmt.Errorf("graph POST %s: Meta did not answer success", c.path(rel))
	}
	return nil
}

// call makes one Graph call, with retries, and decodes a successful answer
// into out. token is the access token; a non-empty appSecret adds
// appsecret_proof (Page tokens). secrets are further strings of the call
// that must not appear in an error.
func (c *Client) call(ctx context.Context, method, rel string, params url.Values, token, appSecret string, out any, secrets ...string) error {
	p := url.Values{}
	for k, v := range params {
		p[k] = v
	}
	p.Set("access_token", token)
	hide := append([]string{token}, secrets...)
	if appSecret != "" {
		proof := AppSecretProof(token, appSecret)
		p.Set("appsecret_proof", proof)
		hide = append(hide, appSecret, proof)
	} else if _, secret, ok := strings.Cut(token, "|"); ok {
		hide = append(hide, secret)
	}
	r := redactor(hide)
	op := "graph " + method + " " + c.path(rel)

	for attempt := 1; ; attempt++ {
		err := c.once(ctx, method, rel, p, r, out)
		if err == nil {
			return nil
		}
		err = fmt.Errorf("%s: %w", op, err)
		if attempt > c.retries || !retryable(err) || ctx.Err() != nil {
			return err
		}
		t := time.NewTimer(c.backoff(attempt))
		select {
		case <-ctx.Done():
			t.Stop()
			return fmt.Errorf("%w; retry abandoned: %w", err, ctx.Err())
		case <-t.C:
		}
	}
}

// once makes a single request.
func (c *Client) once(ctx context.Context, method, rel string, p url.Values, r *strings.Replacer, out any) error {
	target := c.base + c.path(rel)
	var body io.Reader
	if method == http.MethodGet {
		target += "?" + p.Encode()
	} else {
		body = strings.NewReader(p.Encode())
	}
	req, err := http.NewRequestWithContext(ctx, method, target, body)
	if err != nil {
		return errors.New("cannot build request") // the URL holds the token: not in the text
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	req.Header.Set("Accept", "application/json")
	req.Header.Set("User-Agent", "postgate")

	resp, err := c.http.Do(req)
	if err != nil {
		return rephrase(err, r)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxAnswer+1))
	if err != nil {
		return rephrase(err, r)
	}
	if len(b) > maxAnswer {
		return &answerError{status: resp.StatusCode, msg: fmt.Sprintf("answer larger than %d bytes (HTTP %d)", maxAnswer, resp.StatusCode)}
	}
	return decode(resp.StatusCode, b, r, out)
}

// decode turns an answer into out, a *Error, or an answerError.
func decode(status int, b []byte, r *strings.Replacer, out any) error {
	var env struct {
		Error *struct {
			Message   string `json:"message"`
			Type      string `json:"type"`
			Code      int    `json:"code"`
			Subcode   int    `json:"error_subcode"`
			FBTraceID string `json:"fbtrace_id"`
		} `json:"error"`
	}
	if err := json.Unmarshal(b, &env); err != nil {
		return unexpected(status, "not JSON", b, r)
	}
	if env.Error != nil {
		return &Error{
			Status:    status,
			Message:   r.Replace(env.Error.Message),
			Type:      r.Replace(env.Error.Type),
			Code:      env.Error.Code,
			Subcode:   env.Error.Subcode,
			FBTraceID: r.Replace(env.Error.FBTraceID),
		}
	}
	if status < 200 || status > 299 {
		return unexpected(status, "not Meta's error JSON", b, r)
	}
	if err := json.Unmarshal(b, out); err != nil {
		return unexpected(status, "unexpected JSON", b, r)
	}
	return nil
}

// unexpected describes an answer by its status and at most its first 200
// bytes, secrets of the call redacted.
func unexpected(status int, what string, b []byte, r *strings.Replacer) error {
	// Redact before cutting: a cut secret would no longer match.
	s := r.Replace(string(b))
	if len(s) > maxExcerpt {
		s = s[:maxExcerpt]
	}
	return &answerError{
		status: status,
		msg:    fmt.Sprintf("unexpected answer, %s: HTTP %d, body %q", what, status, strings.ToValidUTF8(s, "?")),
	}
}

// rephrase drops the request URL that net/http puts in its errors.
func rephrase(err error, r *strings.Replacer) error {
	cause := err
	var ue *url.Error
	if errors.As(err, &ue) {
		cause = ue.Err
	}
	return &transportError{msg: r.Replace(cause.Error()), err: cause}
}

// retryable reports whether err may pass on a later attempt.
func retryable(err error) bool {
	var me *Error
	if errors.As(err, &me) {
		return me.RateLimited() || me.Status >= 500
	}
	var ae *answerError
	if errors.As(err, &ae) {
		return ae.status >= 500
	}
	var te *transportError
	return errors.As(err, &te)
}

// redactor replaces every non-empty secret, raw and URL-encoded, by
// "[redacted]".
func redactor(secrets []string) *strings.Replacer {
	var pairs []string
	for _, s := range secrets {
		if s == "" {
			continue
		}
		pairs = append(pairs, s, "[redacted]")
		if e := url.QueryEscape(s); e != s {
			pairs = append(pairs, e, "[redacted]")
		}
	}
	return strings.NewReplacer(pairs...)
}
