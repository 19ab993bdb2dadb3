package delivery_test

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/google/uuid"

	"github.com/postgate/postgate/internal/database"
	"github.com/postgate/postgate/internal/event"
	"github.com/postgate/postgate/internal/tenant"
	"github.com/postgate/postgate/internal/testenv"
)

const (
	fixtureSecret = testenv.FixtureSecret
	fixturePage   = "104832957710001"
)

func fixture(t *testing.T, name string) []byte { t.Helper(); return testenv.Fixture(t, name) }

// ingest posts a signed fixture through the real ingest, as Meta would on
// /webhook/1001, and returns how many events were accepted.
func (e *env) ingest(body []byte) int {
	e.t.Helper()
	return e.ingestResult(body).Accepted
}

// TestDeliveryBodyAndHeaders ingests Meta fixtures and checks what the
// tenant's endpoint receives: the stored body byte for byte, Meta's event
// object byte for byte inside it, and Standard Webhooks headers that the
// Standard Webhooks library verifies.
func TestDeliveryBodyAndHeaders(t *testing.T) {
	tests := []struct {
		file string
		// event is Meta's event object: the bytes between these markers.
		eventFrom, eventTo string
		test               bool
		sender             string // the sender JSON
		referral           bool
	}{
		{"01-postback-basic.json", `"messaging":[`, `]}]}`, false, `{"id":"7081529936124401"}`, false},
		{"02-postback-referral-shortlink.json", `"messaging":[`, `]}]}`, false, `{"id":"6934410275588102"}`, true},
		{"04-postback-user-ref.json", `"messaging":[`, `]}]}`, false, `{"user_ref":"ur-checkout-5f3c2a1b9e8d7c6b"}`, false},
		{"05-dashboard-test-changes-postback.json", `"value":`, `}]}],"object"`, true, `{"user_ref":"12334"}`, true},
	}
	for _, tt := range tests {
		t.Run(tt.file, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			rc := newReceiver(t, nil)
			tenantID, secret := e.addTenant(rc.srv.URL+"/hook?token=abc", tenantOpts{})
			e.exec(`INSERT INTO apps (app_id, tenant_id, secret, verify_token) VALUES ('1001', $1, $2, 'vt-1001')`,
				tenantID, e.keys.Seal([]byte(fixtureSecret), tenant.AppSecretBinding("1001")))
			e.exec(`INSERT INTO pages (page_id, app_id, tenant_id) VALUES ($1, '1001', $2)`, fixturePage, tenantID)
			e.reload()
			in := fixture(t, tt.file)
			if n := e.ingest(in); n != 1 {
				t.Fatalf("ingest accepted %d events, want 1", n)
			}
			var stored []byte
			if err := e.db.Pool.QueryRow(context.Background(), `SELECT body FROM events`).Scan(&stored); err != nil {
				t.Fatal(err)
			}
			e.start(e.baseConfig())
			waitFor(t, 5*time.Second, "delivery", func() bool { return len(rc.requests()) == 1 })
			got := rc.requests()[0]

			if !bytes.Equal(got.body, stored) {
				t.Errorf("body: got\n%s\nwant the stored body\n%s", got.body, stored)
			}
			var doc map[string]json.RawMessage
			if err := json.Unmarshal(got.body, &doc); err != nil {
				t.Fatalf("body is not JSON: %v", err)
			}
			start := bytes.Index(in, []byte(tt.eventFrom)) + len(tt.eventFrom)
			end := bytes.LastIndex(in, []byte(tt.eventTo))
			if want := in[start:end]; !bytes.Equal(doc["event"], want) {
				t.Errorf("event: got %s, want Meta's bytes %s", doc["event"], want)
			}
			if got, want := string(doc["test"]), strconv.FormatBool(tt.test); got != want {
				t.Errorf("test: got %s, want %s", got, want)
			}
			if got := string(doc["sender"]); got != tt.sender {
				t.Errorf("sender: got %s, want %s", got, tt.sender)
			}
			if got := string(doc["type"]); got != `"messaging_postbacks"` {
				t.Errorf("type: got %s, want messaging_postbacks", got)
			}
			if got := bytes.Contains(doc["postback"], []byte(`"referral":`)); got != tt.referral {
				t.Errorf("postback has a referral: got %v, want %v (%s)", got, tt.referral, doc["postback"])
			}
			var id string
			_ = json.Unmarshal(doc["id"], &id)

			h := got.header
			for name, want := range map[string]string{
				"webhook-id":   id,
				"Content-Type": "application/json",
				"User-Agent":   "Postgate/test",
			} {
				if got := h.Get(name); got != want {
					t.Errorf("header %s: got %q, want %q", name, got, want)
				}
			}
			if ts, err := strconv.ParseInt(h.Get("webhook-timestamp"), 10, 64); err != nil || time.Since(time.Unix(ts, 0)).Abs() > 10*time.Second {
				t.Errorf("webhook-timestamp: got %q, want Unix seconds of now", h.Get("webhook-timestamp"))
			}
			if n := strings.Count(h.Get("webhook-signature"), "v1,"); n != 1 {
				t.Errorf("webhook-signature has %d signatures, want 1: %q", n, h.Get("webhook-signature"))
			}
			wh, err := standardwebhooks.NewWebhook(secret)
			if err != nil {
				t.Fatal(err)
			}
			if err := wh.Verify(got.body, h); err != nil {
				t.Errorf("Standard Webhooks verification: %v", err)
			}

			// The admin API's event detail: delivered, one attempt.
			eid, _ := event.ParseID(id)
			e.waitStatus(tenantID, eid, "delivered", 2*time.Second)
			as := e.attempts(tenantID, eid)
			if len(as) != 1 || as[0].Number != 1 || as[0].StatusCode != 200 || as[0].Class != "ok" || as[0].Response != "thanks" {
				t.Errorf("attempts: got %+v, want one: number 1, 200, ok, response \"thanks\"", as)
			}
		})
	}
}

// TestRotationSignsWithBoth: during a signing-secret rotation each
// delivery carries one signature per valid secret; either verifies.
func TestRotationSignsWithBoth(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rc := newReceiver(t, nil)
	old := newSecret()
	tenantID, current := e.addTenant(rc.srv.URL, tenantOpts{previousSecret: old})
	e.addEvent(tenantID)
	e.start(e.baseConfig())
	waitFor(t, 5*time.Second, "delivery", func() bool { return len(rc.requests()) == 1 })
	got := rc.requests()[0]
	if sig := got.header.Get("webhook-signature"); len(strings.Fields(sig)) != 2 {
		t.Fatalf("webhook-signature: got %q, want two space-separated signatures", sig)
	}
	for name, secret := range map[string]string{"current": current, "previous": old} {
		wh, _ := standardwebhooks.NewWebhook(secret)
		if err := wh.Verify(got.body, got.header); err != nil {
			t.Errorf("%s secret: %v", name, err)
		}
	}
}

// TestRetries: each kind of failure is retried on the schedule until the
// endpoint recovers; the event is then delivered once, with the same
// webhook-id on every attempt.
func TestRetries(t *testing.T) {
	status := func(codes ...int) func(n int, w http.ResponseWriter, r *http.Request) {
		return func(n int, w http.ResponseWriter, r *http.Request) {
			if n <= len(codes) {
				if codes[n-1] == http.StatusServiceUnavailable {
					w.Header().Set("Retry-After", "1")
				}
				w.WriteHeader(codes[n-1])
				_, _ = w.Write([]byte("busy"))
				return
			}
			_, _ = w.Write([]byte("ok"))
		}
	}
	tests := []struct {
		name    string
		respond func(n int, w http.ResponseWriter, r *http.Request)
		host    string // "refused": a port that opens later; "dns": a name that resolves later
		want    []string
		minGap  time.Duration // between the first two attempts
	}{
		{name: "500 twice", respond: status(500, 502), want: []string{"http_5xx", "http_5xx", "ok"}},
		{name: "503 with Retry-After", respond: status(503), want: []string{"http_5xx", "ok"}, minGap: 900 * time.Millisecond},
		{name: "429", respond: status(429), want: []string{"http_429", "ok"}},
		{name: "timeout", respond: func(n int, w http.ResponseWriter, r *http.Request) {
			if n == 1 {
				select {
				case <-r.Context().Done():
				case <-time.After(3 * time.Second):
				}
				return
			}
			_, _ = w.Write([]byte("ok"))
		}, want: []string{"timeout", "ok"}},
		{name: "connection refused", host: "refused", want: []string{"refused", "ok"}},
		{name: "dns failure", host: "dns", want: []string{"dns", "dns", "ok"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			cfg := e.baseConfig()
			cfg.Timeout = 300 * time.Millisecond
			var rc *receiver
			var url string
			switch tt.host {
			case "refused":
				// A port nobody listens on until the first attempt failed.
				// The retry waits long enough for the listener to be back
				// even on a loaded machine (with 50 ms, all three attempts
				// could beat it).
				cfg.RetrySchedule = []time.Duration{time.Second, time.Second}
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				if err != nil {
					t.Fatal(err)
				}
				addr := ln.Addr().String()
				_ = ln.Close()
				url = "http://" + addr + "/hook"
				rc = &receiver{}
				go func() {
					for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
						var n int
						_ = e.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM delivery_attempts`).Scan(&n)
						if n > 0 {
							break
						}
					}
					ln, err := net.Listen("tcp", addr)
					if err != nil {
						t.Errorf("listen again on %s: %v", addr, err)
						return
					}
					srv := &http.Server{Handler: http.HandlerFunc(rc.serve)}
					t.Cleanup(func() { _ = srv.Close() })
					go func() { _ = srv.Serve(ln) }()
				}()
			case "dns":
				rc = newReceiver(t, tt.respond)
				_, port, _ := net.SplitHostPort(strings.TrimPrefix(rc.srv.URL, "http://"))
				cfg.Resolver = &mapResolver{addrs: map[string]string{"hook.test": "127.0.0.1"}, fail: map[string]int{"hook.test": 2}}
				url = "http://hook.test:" + port + "/hook"
			default:
				rc = newReceiver(t, tt.respond)
				url = rc.srv.URL
			}
			tenantID, _ := e.addTenant(url, tenantOpts{})
			id := e.addEvent(tenantID)
			e.start(cfg)
			s := e.waitStatus(tenantID, id, "delivered", 8*time.Second)
			if s.Attempts != len(tt.want) {
				t.Errorf("attempts: got %d, want %d", s.Attempts, len(tt.want))
			}
			as := e.attempts(tenantID, id)
			if got := classes(as); !slices.Equal(got, tt.want) {
				t.Errorf("attempt classes: got %v, want %v", got, tt.want)
			}
			for i, a := range as {
				if a.Number != i+1 {
					t.Errorf("attempt %d: got number %d", i+1, a.Number)
				}
				if a.Class != "ok" && a.Error == "" {
					t.Errorf("attempt %d: failed (%s) without an error message", i+1, a.Class)
				}
				if strings.Contains(a.Error, "/hook") {
					t.Errorf("attempt %d: error %q repeats the callback URL", i+1, a.Error)
				}
			}
			if tt.minGap > 0 && len(as) >= 2 {
				if gap := as[1].At.Sub(as[0].At); gap < tt.minGap {
					t.Errorf("gap after Retry-After: got %s, want at least %s", gap, tt.minGap)
				}
			}
			wantID := event.FormatID(id)
			for i, r := range rc.requests() {
				if got := r.header.Get("webhook-id"); got != wantID {
					t.Errorf("request %d: webhook-id %q, want %q", i+1, got, wantID)
				}
			}
		})
	}
}

// TestDeadAndReplay: an endpoint that always fails makes the event dead
// after the last retry (kept, listed); a replay delivers it with the same
// webhook-id once the endpoint works.
func TestDeadAndReplay(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rc := newReceiver(t, func(n int, w http.ResponseWriter, r *http.Request) { w.WriteHeader(500) })
	tenantID, _ := e.addTenant(rc.srv.URL, tenantOpts{})
	id := e.addEvent(tenantID)
	cfg := e.baseConfig()
	cfg.BreakerFailures = 100
	e.start(cfg)
	s := e.waitStatus(tenantID, id, "dead", 5*time.Second)
	if s.Attempts != 3 {
		t.Errorf("attempts: got %d, want 3 (1 + 2 retries)", s.Attempts)
	}
	list, err := e.events.List(context.Background(), tenantID, event.Filter{Status: event.StatusDead}, database.ListOptions{})
	if err != nil || len(list.Items) != 1 || list.Items[0].ID != id {
		t.Fatalf("dead list: got %+v, %v; want the event", list.Items, err)
	}
	// Claims that start after the event died read it dead: none may take it.
	e.claimRounds(3)
	if n := len(rc.requests()); n != 3 {
		t.Fatalf("a dead event was attempted again: %d requests, want 3", n)
	}

	rc.setRespond(nil)
	if _, err := e.events.Replay(context.Background(), tenantID, id, uuid.Nil); err != nil {
		t.Fatal(err)
	}
	e.waitStatus(tenantID, id, "delivered", 5*time.Second)
	reqs := rc.requests()
	if len(reqs) != 4 {
		t.Fatalf("requests: got %d, want 4", len(reqs))
	}
	for i, r := range reqs {
		if got, want := r.header.Get("webhook-id"), event.FormatID(id); got != want {
			t.Errorf("request %d: webhook-id %q, want %q", i+1, got, want)
		}
	}
	as := e.attempts(tenantID, id)
	if got, want := classes(as), []string{"http_5xx", "http_5xx", "http_5xx", "ok"}; !slices.Equal(got, want) {
		t.Errorf("attempt classes: got %v, want %v", got, want)
	}
	// Attempt numbers run on across the replay: 1, 2, 3, 4, not 1, 2, 3, 1.
	for i, a := range as {
		if a.Number != i+1 {
			t.Errorf("attempt %d: got number %d, want %d", i+1, a.Number, i+1)
		}
	}
	// The replay's answer and the event describe the new life: pending,
	// no delivered_at or dead_at of the old one, a fresh retry count.
	replayed, err := e.events.Replay(context.Background(), tenantID, id, uuid.Nil)
	if err != nil {
		t.Fatal(err)
	}
	if replayed.Status != event.StatusPending || replayed.DeliveredAt != nil || replayed.DeadAt != nil || replayed.Attempts != 0 {
		t.Errorf("replay of a delivered event: got %+v, want pending without delivered_at or dead_at", replayed)
	}
	e.waitStatus(tenantID, id, "delivered", 5*time.Second)
	if as := e.attempts(tenantID, id); len(as) != 5 || as[4].Number != 5 {
		t.Errorf("after a second replay: got %d attempts, the last numbered %d; want the 5th", len(as), as[len(as)-1].Number)
	}
}

// TestGoneDisablesEndpoint: a 410 pauses the tenant (visible on the
// tenant, the event stays pending with its retries unspent); re-enabling
// through the service resumes deliveries.
func TestGoneDisablesEndpoint(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rc := newReceiver(t, func(n int, w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusGone) })
	tenantID, _ := e.addTenant(rc.srv.URL, tenantOpts{})
	first := e.addEvent(tenantID)
	e.start(e.baseConfig())
	waitFor(t, 5*time.Second, "the 410", func() bool {
		tn, err := e.store.GetTenant(context.Background(), tenantID)
		return err == nil && tn.EndpointDisabledAt != nil
	})
	e.waitStatus(tenantID, first, "pending", 2*time.Second)
	second := e.addEvent(tenantID)
	// Proof that the worker went on claiming after second was queued: a
	// healthy tenant's later event is delivered and more claims run (a
	// paused tenant is left out of a claim before it runs, so the healthy
	// tenant keeps them coming); any of them would have taken the paused
	// tenant's events along.
	canaryRC := newReceiver(t, nil)
	canary, _ := e.addTenant(canaryRC.srv.URL, tenantOpts{})
	e.waitStatus(canary, e.addEvent(canary), "delivered", 5*time.Second)
	e.claimRounds(3)
	if n := len(rc.requests()); n != 1 {
		t.Fatalf("requests while paused: got %d, want 1", n)
	}
	if s := e.state(tenantID, first); s.Attempts != 0 || s.Status != "pending" {
		t.Errorf("paused event: got %+v, want pending with 0 attempts", s)
	}

	rc.setRespond(nil)
	e.enableEndpoint(tenantID)
	e.waitStatus(tenantID, first, "delivered", 5*time.Second)
	e.waitStatus(tenantID, second, "delivered", 5*time.Second)
}

// TestReenableResetsBreaker: four 500s and a 410 open the endpoint's
// breaker (for an hour here) and disable it; re-enabling it and replaying
// the events delivers them at once. (That expiry leaves replayed events
// alone until the endpoint is tried again is event.TestExpireGuard's.)
func TestReenableResetsBreaker(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	rc := newReceiver(t, func(n int, w http.ResponseWriter, r *http.Request) {
		switch {
		case n <= 4:
			w.WriteHeader(http.StatusInternalServerError)
		default:
			w.WriteHeader(http.StatusGone)
		}
	})
	tenantID, _ := e.addTenant(rc.srv.URL, tenantOpts{})
	first, second := e.addEvent(tenantID), e.addEvent(tenantID)
	cfg := e.baseConfig()
	cfg.RetrySchedule = []time.Duration{20 * time.Millisecond, 30 * time.Millisecond, 40 * time.Millisecond}
	cfg.BreakerFailures = 5
	cfg.BreakerOpenFor = time.Hour
	w, _ := e.start(cfg)
	waitFor(t, 5*time.Second, "the 410", func() bool {
		tn, err := e.store.GetTenant(context.Background(), tenantID)
		return err == nil && tn.EndpointDisabledAt != nil
	})
	if n := len(rc.requests()); n < 5 {
		t.Fatalf("requests before the 410 paused the tenant: got %d, want at least 5", n)
	}

	rc.setRespond(nil)
	e.enableEndpoint(tenantID)
	// The window (3 × 1.2 × 40ms) has passed since both events were
	// accepted: without the reset the breaker stays open for an hour and
	// the events wait (or, with the expiry of old, die unattempted).
	time.Sleep(150 * time.Millisecond)
	for _, id := range []uuid.UUID{first, second} {
		if _, err := e.events.Replay(context.Background(), tenantID, id, uuid.Nil); err != nil {
			t.Fatal(err)
		}
	}
	if n, err := w.Expire(context.Background()); err != nil || n != 0 {
		t.Errorf("expire right after the re-enable and replay: got %d, %v; want 0", n, err)
	}
	for _, id := range []uuid.UUID{first, second} {
		if s := e.waitStatus(tenantID, id, "delivered", 5*time.Second); s.Status != "delivered" {
			t.Errorf("replayed event %s after re-enabling: got %+v, want delivered", event.FormatID(id), s)
		}
	}
}

// TestSSRFRefusedAtDial: with private callbacks off, a callback that
// resolves to loopback or the metadata address is refused when
// connecting; nothing reaches the listener.
func TestSSRFRefusedAtDial(t *testing.T) {
	tests := []struct {
		name, host string
	}{
		{"loopback by name", "loopback.test"},
		{"metadata by name", "metadata.test"},
		{"loopback literal", "127.0.0.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t)
			rc := newReceiver(t, nil)
			_, port, _ := net.SplitHostPort(strings.TrimPrefix(rc.srv.URL, "http://"))
			cfg := e.baseConfig()
			cfg.AllowPrivate = false
			cfg.RetrySchedule = []time.Duration{10 * time.Millisecond}
			cfg.Resolver = &mapResolver{addrs: map[string]string{"loopback.test": "127.0.0.1", "metadata.test": "169.254.169.254"}}
			tenantID, _ := e.addTenant("http://"+net.JoinHostPort(tt.host, port)+"/hook", tenantOpts{})
			id := e.addEvent(tenantID)
			e.start(cfg)
			e.waitStatus(tenantID, id, "dead", 5*time.Second)
			if got, want := classes(e.attempts(tenantID, id)), []string{"blocked", "blocked"}; !slices.Equal(got, want) {
				t.Errorf("attempt classes: got %v, want %v", got, want)
			}
			if n := len(rc.requests()); n != 0 {
				t.Errorf("the listener got %d requests, want 0", n)
			}
		})
	}
}

// TestRedirectNotFollowed: a 3xx is the answer, a failure; its target is
// never requested.
func TestRedirectNotFollowed(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	target := newReceiver(t, nil)
	rc := newReceiver(t, func(n int, w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target.srv.URL, http.StatusTemporaryRedirect)
	})
	tenantID, _ := e.addTenant(rc.srv.URL, tenantOpts{})
	id := e.addEvent(tenantID)
	cfg := e.baseConfig()
	cfg.RetrySchedule = []time.Duration{10 * time.Millisecond}
	e.start(cfg)
	e.waitStatus(tenantID, id, "dead", 5*time.Second)
	if n := len(target.requests()); n != 0 {
		t.Errorf("redirect target got %d requests, want 0", n)
	}
	if got := classes(e.attempts(tenantID, id)); !slices.Equal(got, []string{"http_3xx", "http_3xx"}) {
		t.Errorf("classes: got %v, want two http_3xx", got)
	}
}
