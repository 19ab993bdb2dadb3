package meta_test

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/postgate/postgate/internal/meta"
	"github.com/postgate/postgate/internal/meta/metatest"
)

// Recognisable secrets: tests assert they never show in an error.
const (
	appID       = "1001"
	appSecret   = "APPSECRET-do-not-leak-7f3a"
	appName     = "Postgate Test"
	pageID      = "2002"
	pageToken   = "EAAPAGETOKEN-do-not-leak-9c1e"
	verifyToken = "VERIFYTOKEN-do-not-leak-44b0"
)

func noWait(int) time.Duration { return 0 }

// newClient returns a client for baseURL that retries without waiting.
func newClient(t *testing.T, baseURL string, edit ...func(*meta.ClientConfig)) *meta.Client {
	t.Helper()
	cfg := meta.ClientConfig{BaseURL: baseURL, Backoff: noWait}
	for _, e := range edit {
		e(&cfg)
	}
	c, err := meta.NewClient(cfg)
	if err != nil {
		t.Fatalf("NewClient: %v", err)
	}
	return c
}

// setup returns a fake Graph API with one app and one Page token, and a
// client for it.
func setup(t *testing.T) (*metatest.Graph, *meta.Client) {
	t.Helper()
	g := metatest.New(t)
	g.AddApp(appID, appSecret, appName)
	g.AddPageToken(pageID, appID, pageToken)
	return g, newClient(t, g.URL)
}

// handshakes records the verification GETs a gateway got.
type handshakes struct {
	mu      sync.Mutex
	queries []url.Values
}

func (h *handshakes) all() []url.Values {
	h.mu.Lock()
	defer h.mu.Unlock()
	return slices.Clone(h.queries)
}

// gateway is a webhook receiver that answers Meta's verification GET the
// way Postgate does: the challenge when the verify token matches, 403
// otherwise. It records the queries it got.
func gateway(t *testing.T) (*httptest.Server, *handshakes) {
	t.Helper()
	got := &handshakes{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		got.mu.Lock()
		got.queries = append(got.queries, q)
		got.mu.Unlock()
		if r.Method != http.MethodGet || q.Get("hub.mode") != "subscribe" || q.Get("hub.verify_token") != verifyToken {
			http.Error(w, "forbidden", http.StatusForbidden)
			return
		}
		io.WriteString(w, q.Get("hub.challenge"))
	}))
	t.Cleanup(srv.Close)
	return srv, got
}

// metaError asserts err is a *meta.Error with code (and subcode if not 0).
func metaError(t *testing.T, err error, code, subcode int) *meta.Error {
	t.Helper()
	var me *meta.Error
	if !errors.As(err, &me) {
		t.Fatalf("err = %v (%T), want a *meta.Error", err, err)
	}
	if me.Code != code || (subcode != 0 && me.Subcode != subcode) {
		t.Fatalf("code, subcode = %d, %d; want %d, %d (%v)", me.Code, me.Subcode, code, subcode, err)
	}
	if me.FBTraceID == "" {
		t.Errorf("FBTraceID empty in %v", err)
	}
	return me
}

func TestNewClientConfig(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name    string
		cfg     meta.ClientConfig
		wantErr string
	}{
		{"https", meta.ClientConfig{BaseURL: "https://graph.facebook.com", Version: "v24.0"}, ""},
		{"http and trailing slash", meta.ClientConfig{BaseURL: "http://127.0.0.1:1/", Version: "v19.0"}, ""},
		{"empty version is the default", meta.ClientConfig{BaseURL: "https://graph.facebook.com"}, ""},
		{"empty URL", meta.ClientConfig{}, "absolute http(s) URL"},
		{"relative URL", meta.ClientConfig{BaseURL: "graph.facebook.com"}, "absolute http(s) URL"},
		{"ftp", meta.ClientConfig{BaseURL: "ftp://graph.facebook.com"}, "absolute http(s) URL"},
		{"query", meta.ClientConfig{BaseURL: "https://graph.facebook.com/?x=1"}, "no user info, query or fragment"},
		{"version without v", meta.ClientConfig{BaseURL: "https://graph.facebook.com", Version: "24.0"}, "graph API version"},
		{"version without minor", meta.ClientConfig{BaseURL: "https://graph.facebook.com", Version: "v24"}, "graph API version"},
	} {
		_, err := meta.NewClient(tc.cfg)
		switch {
		case tc.wantErr == "" && err != nil:
			t.Errorf("%s: NewClient: %v", tc.name, err)
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("%s: NewClient err = %v, want one containing %q", tc.name, err, tc.wantErr)
		}
	}
}

func TestApp(t *testing.T) {
	t.Parallel()
	g, c := setup(t)
	g.AddApp("1002", "other-secret", "Other")
	ctx := t.Context()

	got, err := c.App(ctx, appID, appSecret)
	if err != nil {
		t.Fatalf("App: %v", err)
	}
	if want := (meta.App{ID: appID, Name: appName}); got != want {
		t.Errorf("App = %+v, want %+v", got, want)
	}

	_, err = c.App(ctx, appID, "wrong-secret")
	me := metaError(t, err, 190, 0)
	if me.Message != "Invalid OAuth access token signature." || me.Type != "OAuthException" || me.Status != http.StatusBadRequest {
		t.Errorf("wrong secret: got %+v", me)
	}
	if !me.TokenInvalid() || me.RateLimited() {
		t.Errorf("wrong secret: TokenInvalid, RateLimited = %v, %v; want true, false", me.TokenInvalid(), me.RateLimited())
	}

	_, err = c.App(ctx, "9999", appSecret)
	if me := metaError(t, err, 101, 0); me.Message != "Error validating application. Invalid application ID." {
		t.Errorf("unknown app: Message = %q", me.Message)
	}

	// A base URL with a trailing slash works too.
	c2 := newClient(t, g.URL+"/")
	if got, err := c2.App(ctx, "1002", "other-secret"); err != nil || got.Name != "Other" {
		t.Fatalf("App 1002 = %+v, %v", got, err)
	}
}

func TestSubscribe(t *testing.T) {
	t.Parallel()
	g, c := setup(t)
	gw, got := gateway(t)
	ctx := t.Context()
	callback := gw.URL + "/webhooks/meta/" + appID + "?region=eu"

	err := c.Subscribe(ctx, appID, appSecret, meta.SubscribeParams{
		Object: "page", CallbackURL: callback, VerifyToken: verifyToken, Fields: []string{"messages", "messaging_postbacks"},
	})
	if err != nil {
		t.Fatalf("Subscribe: %v", err)
	}
	hs := got.all()
	if len(hs) != 1 {
		t.Fatalf("gateway got %d handshakes, want 1", len(hs))
	}
	if q := hs[0]; q.Get("region") != "eu" || q.Get("hub.challenge") == "" {
		t.Errorf("handshake query = %v, want the callback's own query kept and a challenge", q)
	}
	sub, ok := g.Subscription(appID, "page")
	want := meta.Subscription{Object: "page", CallbackURL: callback, Active: true, Fields: []string{"messages", "messaging_postbacks"}}
	if !ok || !equalSub(sub, want) {
		t.Errorf("Subscription = %+v, %v; want %+v", sub, ok, want)
	}

	// A second subscribe merges fields and reactivates.
	g.SetSubscription(appID, meta.Subscription{Object: "page", CallbackURL: callback, Active: false, Fields: []string{"messages"}})
	err = c.Subscribe(ctx, appID, appSecret, meta.SubscribeParams{
		Object: "page", CallbackURL: callback, VerifyToken: verifyToken, Fields: []string{"message_reads"},
	})
	if err != nil {
		t.Fatalf("Subscribe again: %v", err)
	}
	sub, _ = g.Subscription(appID, "page")
	want = meta.Subscription{Object: "page", CallbackURL: callback, Active: true, Fields: []string{"messages", "message_reads"}}
	if !equalSub(sub, want) {
		t.Errorf("after merge Subscription = %+v, want %+v", sub, want)
	}
}

func TestSubscribeHandshakeFails(t *testing.T) {
	t.Parallel()
	wrongEcho := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "not the challenge, and longer than twenty characters")
	}))
	t.Cleanup(wrongEcho.Close)
	gw, _ := gateway(t)
	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()

	for _, tc := range []struct {
		name, callback, verify string
		code                   int
		msg                    string
	}{
		{"wrong echo", wrongEcho.URL, verifyToken, 2201, `received="not the challenge, a"`},
		{"wrong verify token", gw.URL, "not-the-verify-token", 2200, "HTTP Status Code = 403"},
		{"unreachable", closed.URL, verifyToken, 2200, "Callback verification failed"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			g, c := setup(t)
			err := c.Subscribe(t.Context(), appID, appSecret, meta.SubscribeParams{
				Object: "page", CallbackURL: tc.callback, VerifyToken: tc.verify, Fields: []string{"messages"},
			})
			me := metaError(t, err, tc.code, 0)
			if !strings.Contains(me.Message, tc.msg) {
				t.Errorf("Message = %q, want it to contain %q", me.Message, tc.msg)
			}
			if _, ok := g.Subscription(appID, "page"); ok {
				t.Errorf("a failed handshake stored a subscription")
			}
			if n := g.CallsTo("POST", "/"+appID+"/subscriptions"); n != 1 {
				t.Errorf("POST subscriptions %d times, want 1 (no retry)", n)
			}
		})
	}
}

func TestSubscriptions(t *testing.T) {
	t.Parallel()
	g, c := setup(t)
	ctx := t.Context()

	subs, err := c.Subscriptions(ctx, appID, appSecret)
	if err != nil || len(subs) != 0 {
		t.Fatalf("Subscriptions = %v, %v; want none", subs, err)
	}

	page := meta.Subscription{Object: "page", CallbackURL: "https://gw.example/webhooks/meta", Active: true, Fields: []string{"messages", "messaging_postbacks"}}
	g.SetSubscription(appID, page)
	subs, err = c.Subscriptions(ctx, appID, appSecret)
	if err != nil || len(subs) != 1 || !equalSub(subs[0], page) {
		t.Fatalf("Subscriptions = %+v, %v; want [%+v]", subs, err, page)
	}

	// Meta disables it, a field is dropped and the callback moved.
	changed := meta.Subscription{Object: "page", CallbackURL: "https://elsewhere.example/hook", Active: false, Fields: []string{"messages"}}
	g.SetSubscription(appID, changed)
	subs, err = c.Subscriptions(ctx, appID, appSecret)
	if err != nil || len(subs) != 1 || !equalSub(subs[0], changed) {
		t.Fatalf("Subscriptions = %+v, %v; want [%+v]", subs, err, changed)
	}

	_, err = c.Subscriptions(ctx, appID, "wrong")
	metaError(t, err, 190, 0)
}

func TestSubscribePage(t *testing.T) {
	t.Parallel()
	ctx := t.Context()

	t.Run("ok", func(t *testing.T) {
		t.Parallel()
		g, c := setup(t)
		if err := c.SubscribePage(ctx, pageID, pageToken, appSecret, []string{"messages", "messaging_postbacks"}); err != nil {
			t.Fatalf("SubscribePage: %v", err)
		}
		got, ok := g.PageFields(pageID, appID)
		if want := []string{"messages", "messaging_postbacks"}; !ok || !slices.Equal(got, want) {
			t.Errorf("PageFields = %v, %v; want %v", got, ok, want)
		}
	})
	t.Run("wrong secret makes a bad proof", func(t *testing.T) {
		t.Parallel()
		g, c := setup(t)
		err := c.SubscribePage(ctx, pageID, pageToken, "wrong-secret", []string{"messages"})
		me := metaError(t, err, 100, 0)
		if me.Message != "Invalid appsecret_proof provided in the API argument" || me.Type != "GraphMethodException" {
			t.Errorf("got %+v", me)
		}
		if me.TokenInvalid() {
			t.Errorf("a bad proof is not an invalid token")
		}
		if _, ok := g.PageFields(pageID, appID); ok {
			t.Errorf("refused call subscribed the Page")
		}
	})
	t.Run("revoked token", func(t *testing.T) {
		t.Parallel()
		g, c := setup(t)
		g.RevokeToken(pageToken, 460)
		err := c.SubscribePage(ctx, pageID, pageToken, appSecret, []string{"messages"})
		me := metaError(t, err, 190, 460)
		if !me.TokenInvalid() || !strings.Contains(me.Message, "Error validating access token") {
			t.Errorf("got %+v, TokenInvalid %v", me, me.TokenInvalid())
		}
		if n := g.Calls(); n != 1 {
			t.Errorf("Calls = %d, want 1 (no retry)", n)
		}
	})
	t.Run("unknown token", func(t *testing.T) {
		t.Parallel()
		_, c := setup(t)
		err := c.SubscribePage(ctx, pageID, "EAAunknown", appSecret, []string{"messages"})
		if me := metaError(t, err, 190, 0); !me.TokenInvalid() {
			t.Errorf("TokenInvalid false for %v", me)
		}
	})
	t.Run("token of another Page", func(t *testing.T) {
		t.Parallel()
		_, c := setup(t)
		err := c.SubscribePage(ctx, "3003", pageToken, appSecret, []string{"messages"})
		if me := metaError(t, err, 200, 0); me.Message != "(#200) Permissions error" {
			t.Errorf("Message = %q", me.Message)
		}
	})
	t.Run("no fields", func(t *testing.T) {
		t.Parallel()
		g, c := setup(t)
		if err := c.SubscribePage(ctx, pageID, pageToken, appSecret, nil); err == nil {
			t.Fatalf("SubscribePage without fields: no error")
		}
		if g.Calls() != 0 {
			t.Errorf("a call was made without fields")
		}
	})
}

func TestPageSubscriptions(t *testing.T) {
	t.Parallel()
	g, c := setup(t)
	ctx := t.Context()
	g.AddApp("1000", "other-secret", "Inbox Tool")
	g.SetPageFields(pageID, "1000", []string{"messages"})
	if err := c.SubscribePage(ctx, pageID, pageToken, appSecret, []string{"messages", "message_echoes"}); err != nil {
		t.Fatalf("SubscribePage: %v", err)
	}

	got, err := c.PageSubscriptions(ctx, pageID, pageToken, appSecret)
	if err != nil {
		t.Fatalf("PageSubscriptions: %v", err)
	}
	want := []meta.SubscribedApp{
		{ID: "1000", Name: "Inbox Tool", SubscribedFields: []string{"messages"}},
		{ID: appID, Name: appName, SubscribedFields: []string{"messages", "message_echoes"}},
	}
	if !slices.EqualFunc(got, want, equalApp) {
		t.Errorf("PageSubscriptions = %+v, want %+v", got, want)
	}

	g.SetPageFields(pageID, appID, nil)
	got, err = c.PageSubscriptions(ctx, pageID, pageToken, appSecret)
	if err != nil || !slices.EqualFunc(got, want[:1], equalApp) {
		t.Errorf("after removal PageSubscriptions = %+v, %v; want %+v", got, err, want[:1])
	}

	_, err = c.PageSubscriptions(ctx, pageID, pageToken, "wrong-secret")
	metaError(t, err, 100, 0)
}

func TestRetry(t *testing.T) {
	t.Parallel()
	ctx := t.Context()

	for _, code := range []int{4, 32, 80001} {
		g, c := setup(t)
		g.FailNext(2, code, "")
		if _, err := c.App(ctx, appID, appSecret); err != nil {
			t.Errorf("code %d: App after 2 rate limits: %v", code, err)
		}
		if n := g.Calls(); n != 3 {
			t.Errorf("code %d: Calls = %d, want 3", code, n)
		}
	}

	t.Run("5xx", func(t *testing.T) {
		g, c := setup(t)
		g.FailNext(1, 2, "")
		if _, err := c.Subscriptions(ctx, appID, appSecret); err != nil {
			t.Errorf("Subscriptions after a 500: %v", err)
		}
		if n := g.Calls(); n != 2 {
			t.Errorf("Calls = %d, want 2", n)
		}
	})

	t.Run("gives up after Retries", func(t *testing.T) {
		g := metatest.New(t)
		g.AddApp(appID, appSecret, appName)
		c := newClient(t, g.URL, func(cfg *meta.ClientConfig) { cfg.Retries = 2 })
		g.FailNext(10, 4, "(#4) Application request limit reached")
		_, err := c.App(ctx, appID, appSecret)
		if me := metaError(t, err, 4, 0); !me.RateLimited() {
			t.Errorf("RateLimited false for %v", me)
		}
		if n := g.Calls(); n != 3 {
			t.Errorf("Calls = %d, want 3 (1 + Retries)", n)
		}
	})

	t.Run("negative Retries means none", func(t *testing.T) {
		g := metatest.New(t)
		g.AddApp(appID, appSecret, appName)
		c := newClient(t, g.URL, func(cfg *meta.ClientConfig) { cfg.Retries = -1 })
		g.FailNext(1, 4, "")
		if _, err := c.App(ctx, appID, appSecret); err == nil {
			t.Errorf("App: no error")
		}
		if n := g.Calls(); n != 1 {
			t.Errorf("Calls = %d, want 1", n)
		}
	})

	t.Run("no retry on a refused token", func(t *testing.T) {
		g, c := setup(t)
		_, err := c.App(ctx, appID, "wrong-secret")
		metaError(t, err, 190, 0)
		if n := g.Calls(); n != 1 {
			t.Errorf("Calls = %d, want 1", n)
		}
	})

	t.Run("transport errors", func(t *testing.T) {
		srv := httptest.NewServer(http.NotFoundHandler())
		srv.Close()
		var waits atomic.Int32
		c := newClient(t, srv.URL, func(cfg *meta.ClientConfig) {
			cfg.Retries = 2
			cfg.Backoff = func(n int) time.Duration { waits.Add(1); return 0 }
		})
		if _, err := c.App(ctx, appID, appSecret); err == nil {
			t.Fatalf("App against a closed server: no error")
		}
		if n := waits.Load(); n != 2 {
			t.Errorf("back-offs = %d, want 2", n)
		}
	})
}

func TestCancelDuringBackoff(t *testing.T) {
	t.Parallel()
	g := metatest.New(t)
	g.AddApp(appID, appSecret, appName)
	c := newClient(t, g.URL, func(cfg *meta.ClientConfig) {
		cfg.Backoff = func(int) time.Duration { return time.Hour }
	})
	g.FailNext(10, 4, "")
	ctx, cancel := context.WithCancel(t.Context())
	time.AfterFunc(50*time.Millisecond, cancel)

	start := time.Now()
	_, err := c.App(ctx, appID, appSecret)
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("err = %v, want context.Canceled", err)
	}
	var me *meta.Error
	if !errors.As(err, &me) || me.Code != 4 {
		t.Errorf("err = %v, want it to keep Meta's last error", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("App returned after %v, want soon after the cancel", d)
	}
	if n := g.Calls(); n != 1 {
		t.Errorf("Calls = %d, want 1", n)
	}
}

// TestNoSecretsInErrors makes every call fail in every way with
// recognisable secrets and checks none of them, nor the proof, shows.
func TestNoSecretsInErrors(t *testing.T) {
	t.Parallel()
	proof := meta.AppSecretProof(pageToken, appSecret)
	appProof := meta.AppSecretProof(appID+"|"+appSecret, appSecret)
	secrets := []string{appSecret, pageToken, verifyToken, proof, appProof, url.QueryEscape(appID + "|" + appSecret)}

	closed := httptest.NewServer(http.NotFoundHandler())
	closed.Close()
	// A broken proxy that echoes the request, query and body, in a 502
	// and in a 200; after pad bytes, so that the 200-byte excerpt cuts
	// through a secret.
	echo := func(status, pad int) *httptest.Server {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			w.WriteHeader(status)
			io.WriteString(w, strings.Repeat("x", pad)+r.URL.RawQuery+" "+string(b))
		}))
		t.Cleanup(srv.Close)
		return srv
	}
	// Meta quoting our own token back in its message.
	quoting := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r.ParseForm()
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, `{"error":{"message":"Malformed access token `+r.Form.Get("access_token")+`","type":"OAuthException","code":190,"fbtrace_id":"X"}}`)
	}))
	t.Cleanup(quoting.Close)

	g := metatest.New(t)
	g.AddApp(appID, appSecret, appName)
	g.AddPageToken(pageID, appID, pageToken)
	g.RevokeToken(pageToken, 463)

	calls := map[string]func(*meta.Client) error{
		"App": func(c *meta.Client) error { _, err := c.App(t.Context(), appID, appSecret); return err },
		"Subscribe": func(c *meta.Client) error {
			return c.Subscribe(t.Context(), appID, appSecret, meta.SubscribeParams{
				Object: "page", CallbackURL: closed.URL, VerifyToken: verifyToken, Fields: []string{"messages"},
			})
		},
		"Subscriptions": func(c *meta.Client) error { _, err := c.Subscriptions(t.Context(), appID, appSecret); return err },
		"SubscribePage": func(c *meta.Client) error {
			return c.SubscribePage(t.Context(), pageID, pageToken, appSecret, []string{"messages"})
		},
		"PageSubscriptions": func(c *meta.Client) error {
			_, err := c.PageSubscriptions(t.Context(), pageID, pageToken, appSecret)
			return err
		},
	}
	servers := map[string]string{
		"closed server":  closed.URL,
		"echoing 502":    echo(http.StatusBadGateway, 0).URL,
		"echoing 200":    echo(http.StatusOK, 0).URL,
		"echoing, cut":   echo(http.StatusOK, 170).URL,
		"quoting Meta":   quoting.URL,
		"fake (revoked)": g.URL,
	}
	for sname, base := range servers {
		c := newClient(t, base, func(cfg *meta.ClientConfig) { cfg.Retries = 1 })
		for cname, call := range calls {
			err := call(c)
			if err == nil {
				if sname == "fake (revoked)" && (cname == "App" || cname == "Subscriptions") {
					continue // app token calls succeed
				}
				t.Errorf("%s, %s: no error", sname, cname)
				continue
			}
			for _, s := range secrets {
				if strings.Contains(err.Error(), s) {
					t.Errorf("%s, %s: error %q holds a secret %q", sname, cname, err, s)
				}
			}
			// Nor a part of one (an excerpt cut in the middle of a secret).
			for _, s := range []string{"APPSECRET", "EAAPAGETOKEN", "VERIFYTOKEN", "do-not-leak", proof[:16], appProof[:16]} {
				if strings.Contains(err.Error(), s) {
					t.Errorf("%s, %s: error %q holds part of a secret %q", sname, cname, err, s)
				}
			}
		}
	}
}

func TestUnexpectedAnswers(t *testing.T) {
	t.Parallel()
	long := strings.Repeat("<html>", 100)
	for _, tc := range []struct {
		name    string
		status  int
		body    string
		calls   int32
		wantErr string
	}{
		{"html 502 is retried", http.StatusBadGateway, long, 2, "HTTP 502"},
		{"html 200 is not", http.StatusOK, long, 1, "not JSON: HTTP 200"},
		{"JSON without error", http.StatusForbidden, `{"oops":true}`, 1, "not Meta's error JSON: HTTP 403"},
		{"redirect is not followed", http.StatusFound, ``, 1, "HTTP 302"},
		{"no success", http.StatusOK, `{"success":false}`, 1, "did not answer success"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			var calls atomic.Int32
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if calls.Add(1) > 10 {
					t.Errorf("redirect followed")
				}
				if tc.status == http.StatusFound {
					http.Redirect(w, r, "/elsewhere", http.StatusFound)
					return
				}
				w.WriteHeader(tc.status)
				io.WriteString(w, tc.body)
			}))
			t.Cleanup(srv.Close)
			c := newClient(t, srv.URL, func(cfg *meta.ClientConfig) { cfg.Retries = 1 })
			err := c.SubscribePage(t.Context(), pageID, pageToken, appSecret, []string{"messages"})
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Fatalf("err = %v, want one containing %q", err, tc.wantErr)
			}
			if strings.Count(err.Error(), "<html>") > 200/len("<html>") {
				t.Errorf("error quotes more than 200 bytes of the body: %v", err)
			}
			var me *meta.Error
			if errors.As(err, &me) {
				t.Errorf("err is a *meta.Error, want not: %v", err)
			}
			if n := calls.Load(); n != tc.calls {
				t.Errorf("requests = %d, want %d", n, tc.calls)
			}
		})
	}
}

func TestLargeAnswer(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, `{"data":[`+strings.Repeat(`{"id":"1"},`, 200_000)+`{"id":"1"}]}`)
	}))
	t.Cleanup(srv.Close)
	c := newClient(t, srv.URL)
	_, err := c.PageSubscriptions(t.Context(), pageID, pageToken, appSecret)
	if err == nil || !strings.Contains(err.Error(), "larger than") {
		t.Fatalf("err = %v, want an answer too large", err)
	}
}

// TestRequestShape checks the wire format against a plain server: the
// version in the path, GET parameters in the query, POST parameters in a
// form body, appsecret_proof with Page tokens only.
func TestRequestShape(t *testing.T) {
	t.Parallel()
	type seen struct {
		method, path, contentType string
		query, form               url.Values
	}
	var (
		mu  sync.Mutex
		got []seen
	)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s := seen{method: r.Method, path: r.URL.Path, contentType: r.Header.Get("Content-Type"), query: r.URL.Query()}
		r.ParseForm()
		s.form = r.PostForm
		mu.Lock()
		got = append(got, s)
		mu.Unlock()
		switch {
		case r.Method == http.MethodPost:
			io.WriteString(w, `{"success":true}`)
		case strings.HasSuffix(r.URL.Path, "/subscriptions"):
			io.WriteString(w, `{"data":[{"object":"page","callback_url":"https://gw.example/h","active":true,"fields":[{"name":"messages","version":"v19.0"},"standby"]}]}`)
		default:
			io.WriteString(w, `{"id":"1001","name":"A","data":[]}`)
		}
	}))
	t.Cleanup(srv.Close)
	c := newClient(t, srv.URL, func(cfg *meta.ClientConfig) { cfg.Version = "v19.0" })
	ctx := t.Context()
	appTok := appID + "|" + appSecret
	proof := meta.AppSecretProof(pageToken, appSecret)

	if _, err := c.App(ctx, appID, appSecret); err != nil {
		t.Fatal(err)
	}
	subs, err := c.Subscriptions(ctx, appID, appSecret)
	if err != nil {
		t.Fatal(err)
	}
	if len(subs) != 1 || !slices.Equal(subs[0].Fields, []string{"messages", "standby"}) {
		t.Errorf("Subscriptions = %+v", subs)
	}
	if err := c.Subscribe(ctx, appID, appSecret, meta.SubscribeParams{Object: "page", CallbackURL: "https://gw.example/h", VerifyToken: "vt", Fields: []string{"messages", "standby"}}); err != nil {
		t.Fatal(err)
	}
	if err := c.SubscribePage(ctx, pageID, pageToken, appSecret, []string{"messages", "standby"}); err != nil {
		t.Fatal(err)
	}
	if _, err := c.PageSubscriptions(ctx, pageID, pageToken, appSecret); err != nil {
		t.Fatal(err)
	}

	want := []seen{
		{method: "GET", path: "/v19.0/1001", query: url.Values{"access_token": {appTok}, "fields": {"id,name"}}},
		{method: "GET", path: "/v19.0/1001/subscriptions", query: url.Values{"access_token": {appTok}}},
		{method: "POST", path: "/v19.0/1001/subscriptions", contentType: "application/x-www-form-urlencoded", form: url.Values{
			"access_token": {appTok}, "object": {"page"}, "callback_url": {"https://gw.example/h"}, "verify_token": {"vt"},
			"fields": {"messages,standby"}, "include_values": {"true"},
		}},
		{method: "POST", path: "/v19.0/2002/subscribed_apps", contentType: "application/x-www-form-urlencoded", form: url.Values{
			"access_token": {pageToken}, "appsecret_proof": {proof}, "subscribed_fields": {"messages,standby"},
		}},
		{method: "GET", path: "/v19.0/2002/subscribed_apps", query: url.Values{"access_token": {pageToken}, "appsecret_proof": {proof}}},
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != len(want) {
		t.Fatalf("got %d requests, want %d", len(got), len(want))
	}
	for i := range want {
		g, w := got[i], want[i]
		if g.method != w.method || g.path != w.path || g.contentType != w.contentType {
			t.Errorf("request %d: %s %s (%q), want %s %s (%q)", i, g.method, g.path, g.contentType, w.method, w.path, w.contentType)
		}
		if !equalValues(g.query, w.query) || !equalValues(g.form, w.form) {
			t.Errorf("request %d: query %v form %v, want query %v form %v", i, g.query, g.form, w.query, w.form)
		}
	}
}

func TestBadIDs(t *testing.T) {
	t.Parallel()
	g, c := setup(t)
	for _, id := range []string{"", ".", "..", "1/2", "1?x=2", "1#x", "a b"} {
		if _, err := c.App(t.Context(), id, appSecret); err == nil {
			t.Errorf("App(%q): no error", id)
		}
	}
	if n := g.Calls(); n != 0 {
		t.Errorf("Calls = %d, want 0", n)
	}
}

func TestAppSecretProof(t *testing.T) {
	t.Parallel()
	// printf '%s' 'EAAB-token' | openssl dgst -sha256 -hmac 'app-secret'
	const want = "294c307ff2427ed2140908ec13f483ef7f7d7819a8fc32fb535cf6ada2327ab2"
	if got := meta.AppSecretProof("EAAB-token", "app-secret"); got != want {
		t.Errorf("AppSecretProof = %s, want %s", got, want)
	}
}

func TestError(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		err         meta.Error
		text        string
		rate, token bool
	}{
		{meta.Error{Status: 400, Message: "Invalid OAuth access token signature.", Type: "OAuthException", Code: 190, FBTraceID: "Abc"},
			"Meta: Invalid OAuth access token signature. (OAuthException, code 190, fbtrace_id Abc)", false, true},
		{meta.Error{Message: "Error validating access token: Session has expired.", Type: "OAuthException", Code: 190, Subcode: 463},
			"Meta: Error validating access token: Session has expired. (OAuthException, code 190, subcode 463)", false, true},
		{meta.Error{Message: "Session key invalid.", Code: 102}, "Meta: Session key invalid. (code 102)", false, true},
		{meta.Error{Code: 4}, "Meta: error without a message (code 4)", true, false},
		{meta.Error{Code: 17}, "Meta: error without a message (code 17)", true, false},
		{meta.Error{Code: 32}, "Meta: error without a message (code 32)", true, false},
		{meta.Error{Code: 613}, "Meta: error without a message (code 613)", true, false},
		{meta.Error{Code: 80001}, "Meta: error without a message (code 80001)", true, false},
		{meta.Error{Code: 80009}, "Meta: error without a message (code 80009)", true, false},
		{meta.Error{Code: 80010}, "Meta: error without a message (code 80010)", false, false},
		{meta.Error{Code: 100}, "Meta: error without a message (code 100)", false, false},
		{meta.Error{Code: 200}, "Meta: error without a message (code 200)", false, false},
	} {
		if got := tc.err.Error(); got != tc.text {
			t.Errorf("Error() = %q, want %q", got, tc.text)
		}
		if got := tc.err.RateLimited(); got != tc.rate {
			t.Errorf("code %d: RateLimited = %v, want %v", tc.err.Code, got, tc.rate)
		}
		if got := tc.err.TokenInvalid(); got != tc.token {
			t.Errorf("code %d: TokenInvalid = %v, want %v", tc.err.Code, got, tc.token)
		}
	}
}

func equalSub(a, b meta.Subscription) bool {
	return a.Object == b.Object && a.CallbackURL == b.CallbackURL && a.Active == b.Active && slices.Equal(a.Fields, b.Fields)
}

func equalApp(a, b meta.SubscribedApp) bool {
	return a.ID == b.ID && a.Name == b.Name && slices.Equal(a.SubscribedFields, b.SubscribedFields)
}

// equalValues treats nil and empty as equal.
func equalValues(a, b url.Values) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if !slices.Equal(v, b[k]) {
			return false
		}
	}
	return true
}
