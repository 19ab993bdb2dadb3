package api_test

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/postgate/postgate/internal/testenv"
)

// receiver is an endpoint under test: it answers every POST with status
// and body (or, with hang, not at all until the client gives up) and
// keeps the requests it got.
type receiver struct {
	srv  *httptest.Server
	mu   sync.Mutex
	reqs []received
}

type received struct {
	header http.Header
	body   []byte
}

func newReceiver(t *testing.T, status int, answer string, hang bool) *receiver {
	t.Helper()
	rc := &receiver{}
	rc.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		rc.reqs = append(rc.reqs, received{header: r.Header.Clone(), body: body})
		rc.mu.Unlock()
		if hang {
			select {
			case <-r.Context().Done():
			case <-time.After(10 * time.Second):
			}
			return
		}
		w.WriteHeader(status)
		_, _ = io.WriteString(w, answer)
	}))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) got(t *testing.T) []received {
	t.Helper()
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]received(nil), rc.reqs...)
}

// one returns the one request rc got.
func (rc *receiver) one(t *testing.T) received {
	t.Helper()
	got := rc.got(t)
	if len(got) != 1 {
		t.Fatalf("the receiver got %d requests, want 1", len(got))
	}
	return got[0]
}

// closedPort is an address nothing listens on.
func closedPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	return addr
}

var reEventID = regexp.MustCompile(`^evt_[0-9a-f]{32}$`)

// TestEndpointTestSend: POST .../test sends a signed test postback now and
// answers what the endpoint said, whatever it was: a 2xx, a 5xx, a 410
// (which does not disable the endpoint), no answer in time, a refused
// connection. The request is signed as the endpoint's deliveries are
// (standard with hmac or ed25519, before and after a rotation; meta with
// the app's secret), carries "test": true, and nothing is stored.
func TestEndpointTestSend(t *testing.T) {
	const timeout = 400 * time.Millisecond
	h := newHarness(t, harnessOpts{allowPrivate: true, testTimeout: timeout})
	id, _ := h.createTenant("acme")
	tp := "/admin/v1/tenants/" + id
	tok := h.tenantToken(id)

	// testSend creates an endpoint at url (more fields in extra), tests it
	// with the tenant's token, and returns the endpoint and the answer.
	testSend := func(t *testing.T, url string, extra map[string]any) (map[string]any, map[string]any) {
		t.Helper()
		body := with(extra, "url", url)
		ep := h.must(201, "POST", tp+"/endpoints", tok, body)
		res := h.must(200, "POST", tp+"/endpoints/"+ep["id"].(string)+"/test", tok, nil)
		if !reEventID.MatchString(res["event_id"].(string)) {
			t.Errorf("event_id %v, want evt_ and 32 hex digits", res["event_id"])
		}
		if _, ok := res["latency_ms"].(float64); !ok {
			t.Errorf("latency_ms %v, want a number", res["latency_ms"])
		}
		return ep, res
	}
	wantResult := func(t *testing.T, res map[string]any, status int, class, response string) {
		t.Helper()
		if res["class"] != class {
			t.Errorf("class %v, want %s: %v", res["class"], class, res)
		}
		if status == 0 {
			if _, ok := res["status_code"]; ok {
				t.Errorf("status_code %v, want none (no answer came)", res["status_code"])
			}
		} else if res["status_code"] != float64(status) {
			t.Errorf("status_code %v, want %d", res["status_code"], status)
		}
		if response != "" && res["response"] != response {
			t.Errorf("response %q, want %q", res["response"], response)
		}
		if e, _ := res["error"].(string); (class == "ok") != (e == "") {
			t.Errorf("error %q for class %s: want one exactly when the class is not ok", e, class)
		}
	}

	t.Run("200, hmac", func(t *testing.T) {
		rc := newReceiver(t, 200, "received: thanks", false)
		ep, res := testSend(t, rc.srv.URL+"/hook", nil)
		wantResult(t, res, 200, "ok", "received: thanks")
		req := rc.one(t)
		wh, err := standardwebhooks.NewWebhook(ep["signing_secret"].(string))
		if err != nil {
			t.Fatal(err)
		}
		if err := wh.Verify(req.body, req.header); err != nil {
			t.Errorf("the test request does not verify with the endpoint's secret: %v (webhook-signature %q)", err, req.header.Get("webhook-signature"))
		}
		wantTestBody(t, req, res["event_id"].(string), id)

		// After a rotation it is signed with both secrets.
		rot := h.must(200, "POST", tp+"/endpoints/"+ep["id"].(string)+"/signing-secret/rotate", tok, nil)
		h.must(200, "POST", tp+"/endpoints/"+ep["id"].(string)+"/test", tok, nil)
		req = rc.got(t)[1]
		if n := len(strings.Fields(req.header.Get("webhook-signature"))); n != 2 {
			t.Errorf("after a rotation: %d signatures, want 2: %q", n, req.header.Get("webhook-signature"))
		}
		for _, s := range []string{rot["signing_secret"].(string), ep["signing_secret"].(string)} {
			wh, _ := standardwebhooks.NewWebhook(s)
			if err := wh.Verify(req.body, req.header); err != nil {
				t.Errorf("after a rotation the test request does not verify with %s…: %v", s[:10], err)
			}
		}
	})

	t.Run("200, ed25519", func(t *testing.T) {
		rc := newReceiver(t, 204, "", false)
		ep, res := testSend(t, rc.srv.URL+"/hook", map[string]any{"signature": "ed25519"})
		wantResult(t, res, 204, "ok", "")
		req := rc.one(t)
		wantTestBody(t, req, res["event_id"].(string), id)
		pub := testenv.Ed25519PublicKey(t, ep["public_key"].(string))
		if err := testenv.VerifyV1aHeaders(pub, req.header, req.body); err != nil {
			t.Error(err)
		}
	})

	t.Run("200, meta", func(t *testing.T) {
		const appSecret = "app-secret-for-meta-0123456789"
		h.must(201, "POST", tp+"/apps", h.admin, map[string]any{"app_id": "1001", "app_secret": appSecret})
		h.must(201, "POST", tp+"/pages", h.admin, map[string]any{"page_id": "5005", "app_id": "1001"})
		rc := newReceiver(t, 200, "EVENT_RECEIVED", false)
		_, res := testSend(t, rc.srv.URL+"/meta", map[string]any{"format": "meta"})
		wantResult(t, res, 200, "ok", "EVENT_RECEIVED")
		req := rc.one(t)
		if err := testenv.VerifyMetaHeaders([]byte(appSecret), req.header, req.body); err != nil {
			t.Error(err)
		}
		for hdr, want := range map[string]string{
			"X-Postgate-Event-Id": res["event_id"].(string),
			"X-Postgate-Attempt":  "1",
			"Content-Type":        "application/json",
			"User-Agent":          "Postgate/test",
		} {
			if got := req.header.Get(hdr); got != want {
				t.Errorf("%s: got %q, want %q", hdr, got, want)
			}
		}
		var body struct {
			Object string `json:"object"`
			Entry  []struct {
				ID        string `json:"id"`
				Messaging []struct {
					Sender   struct{ ID string } `json:"sender"`
					Postback struct{ Payload string }
				} `json:"messaging"`
			} `json:"entry"`
		}
		if err := json.Unmarshal(req.body, &body); err != nil {
			t.Fatalf("meta body: %v: %s", err, req.body)
		}
		// Entry id "0" marks a test event, as Meta's dashboard does; the
		// Page is the recipient.
		if body.Object != "page" || len(body.Entry) != 1 || body.Entry[0].ID != "0" || len(body.Entry[0].Messaging) != 1 ||
			body.Entry[0].Messaging[0].Postback.Payload != "POSTGATE_TEST" || body.Entry[0].Messaging[0].Sender.ID != "0" ||
			!strings.Contains(string(req.body), `"recipient":{"id":"5005"}`) {
			t.Errorf("meta body: got %s, want Meta's test envelope for Page 5005 with the test postback", req.body)
		}
	})

	t.Run("500", func(t *testing.T) {
		rc := newReceiver(t, 500, "boom", false)
		_, res := testSend(t, rc.srv.URL+"/hook", nil)
		wantResult(t, res, 500, "http_5xx", "boom")
	})

	t.Run("410 does not disable", func(t *testing.T) {
		rc := newReceiver(t, 410, "gone", false)
		ep, res := testSend(t, rc.srv.URL+"/hook", nil)
		wantResult(t, res, 410, "http_410", "gone")
		if got := h.must(200, "GET", tp+"/endpoints/"+ep["id"].(string), tok, nil); got["enabled"] != true {
			t.Errorf("a test send answered 410 disabled the endpoint: %v", got)
		}
	})

	t.Run("timeout", func(t *testing.T) {
		rc := newReceiver(t, 200, "", true)
		start := time.Now()
		_, res := testSend(t, rc.srv.URL+"/hook", nil)
		wantResult(t, res, 0, "timeout", "")
		if took := time.Since(start); took > timeout+2*time.Second {
			t.Errorf("the test send took %v, want about the %v timeout", took, timeout)
		}
		if l, _ := res["latency_ms"].(float64); l < float64(timeout.Milliseconds())*0.9 {
			t.Errorf("latency_ms %v, want the timeout (%v) or a little more", l, timeout)
		}
		if len(rc.got(t)) != 1 {
			t.Errorf("the receiver got %d requests, want 1", len(rc.got(t)))
		}
	})

	t.Run("refused", func(t *testing.T) {
		_, res := testSend(t, "http://"+closedPort(t)+"/hook", nil)
		wantResult(t, res, 0, "refused", "")
	})

	t.Run("meta without an app", func(t *testing.T) {
		other, _ := h.createTenant("no-app")
		ep := h.createEndpoint(other, map[string]any{"url": "http://" + closedPort(t) + "/meta", "format": "meta"})
		wantProblem(t, h.do("POST", "/admin/v1/tenants/"+other+"/endpoints/"+ep["id"].(string)+"/test", h.admin, nil), 409, "")
	})

	// Nothing of the test sends was stored.
	var events, attempts int
	if err := h.db.Pool.QueryRow(context.Background(), `SELECT (SELECT count(*) FROM events), (SELECT count(*) FROM delivery_attempts)`).Scan(&events, &attempts); err != nil {
		t.Fatal(err)
	}
	if events != 0 || attempts != 0 {
		t.Errorf("after the test sends: %d events and %d attempts stored, want none", events, attempts)
	}
	if l := h.must(200, "GET", tp+"/events", tok, nil); len(l["items"].([]any)) != 0 {
		t.Errorf("events after the test sends: got %v, want none", l)
	}
}

// wantTestBody checks a standard-format test request: its headers and
// its body, the test postback of tenant tenantID with id eventID.
func wantTestBody(t *testing.T, req received, eventID, tenantID string) {
	t.Helper()
	for hdr, want := range map[string]string{"webhook-id": eventID, "Content-Type": "application/json", "User-Agent": "Postgate/test"} {
		if got := req.header.Get(hdr); got != want {
			t.Errorf("%s: got %q, want %q", hdr, got, want)
		}
	}
	var body map[string]any
	if err := json.Unmarshal(req.body, &body); err != nil {
		t.Fatalf("body: %v: %s", err, req.body)
	}
	for k, want := range map[string]any{
		"id": eventID, "type": "messaging_postbacks", "test": true, "tenant_id": tenantID,
		"object": "page", "source": "messaging", "sender": map[string]any{"id": "0"},
	} {
		if asJSON(body[k]) != asJSON(want) {
			t.Errorf("body %s: got %v, want %v", k, body[k], want)
		}
	}
	if pb, _ := body["postback"].(map[string]any); pb["payload"] != "POSTGATE_TEST" {
		t.Errorf("body postback: got %v, want the POSTGATE_TEST payload", body["postback"])
	}
	if ev, _ := body["event"].(map[string]any); ev == nil || asJSON(ev["sender"]) != `{"id":"0"}` {
		t.Errorf("body event: got %v, want the postback as Meta would send it", body["event"])
	}
}
