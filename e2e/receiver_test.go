//go:build e2e || soak

package e2e

import (
	"encoding/json"
	"errors"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"
)

// Receiver modes.
const (
	modeOK   = "ok"   // 200 after the configured delay
	modeFail = "fail" // 500
	modeHang = "hang" // never answers: the gateway's CALLBACK_TIMEOUT ends it
	modeDown = "down" // the listener is closed: connection refused
)

// receiver is a tenant's endpoint: a real net/http server on loopback that
// verifies every request's Standard Webhooks signature with the tenant's
// signing secret and records what it accepted.
type receiver struct {
	t    *testing.T
	name string
	addr string

	mu       sync.Mutex
	srv      *http.Server
	mode     string
	minDelay time.Duration
	maxDelay time.Duration
	tenant   *tenantSetup
	wh       *standardwebhooks.Webhook
	got      []delivery // answered 200
	refused  int        // answered 500 or left hanging
	hung     chan struct{}
	light    bool // keep no bodies (the soak)
}

// delivery is one request the receiver answered 200.
type delivery struct {
	at             time.Time
	webhookID      string
	sigErr         error
	headerProblems []string
	body           []byte
	doc            deliveryDoc
	docErr         error
}

// deliveryDoc is the delivery body as SPEC defines it.
type deliveryDoc struct {
	ID         string          `json:"id"`
	Type       string          `json:"type"`
	Test       bool            `json:"test"`
	TenantID   string          `json:"tenant_id"`
	AppID      string          `json:"app_id"`
	PageID     string          `json:"page_id"`
	Object     string          `json:"object"`
	Source     string          `json:"source"`
	Sender     json.RawMessage `json:"sender"`
	Timestamp  int64           `json:"timestamp"`
	ReceivedAt time.Time       `json:"received_at"`
	Postback   *struct {
		Mid      string          `json:"mid"`
		Title    string          `json:"title"`
		Payload  string          `json:"payload"`
		Referral json.RawMessage `json:"referral"`
	} `json:"postback"`
	Event json.RawMessage `json:"event"`
}

func (d deliveryDoc) mid() string {
	if d.Postback == nil {
		return ""
	}
	return d.Postback.Mid
}

func newReceiver(t *testing.T, name string) *receiver {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &receiver{t: t, name: name, addr: ln.Addr().String(), mode: modeOK, hung: make(chan struct{})}
	r.serve(ln)
	t.Cleanup(func() {
		r.setMode(modeOK) // releases hung handlers
		r.mu.Lock()
		srv := r.srv
		r.mu.Unlock()
		if srv != nil {
			_ = srv.Close()
		}
	})
	return r
}

func (r *receiver) url() string { return "http://" + r.addr + "/hooks/" + r.name + "?token=e2e" }

func (r *receiver) serve(ln net.Listener) {
	srv := &http.Server{Handler: http.HandlerFunc(r.handle), ReadHeaderTimeout: 5 * time.Second}
	r.mu.Lock()
	r.srv = srv
	r.mu.Unlock()
	go func() { _ = srv.Serve(ln) }()
}

// bind gives the receiver its tenant and signing secret.
func (r *receiver) bind(ts *tenantSetup) {
	wh, err := standardwebhooks.NewWebhook(ts.secret)
	if err != nil {
		r.t.Fatalf("signing secret %q: %v", ts.secret, err)
	}
	r.mu.Lock()
	r.tenant, r.wh = ts, wh
	r.mu.Unlock()
}

// setDelay makes every accepted request take between min and max.
func (r *receiver) setDelay(minD, maxD time.Duration) {
	r.mu.Lock()
	r.minDelay, r.maxDelay = minD, maxD
	r.mu.Unlock()
}

// setMode switches the endpoint; down closes the listener (and every
// open connection), and leaving down listens again on the same port.
func (r *receiver) setMode(mode string) {
	r.mu.Lock()
	prev := r.mode
	r.mode = mode
	if prev == modeHang && mode != modeHang {
		close(r.hung)
		r.hung = make(chan struct{})
	}
	srv := r.srv
	r.mu.Unlock()
	switch {
	case mode == modeDown && prev != modeDown:
		_ = srv.Close()
	case prev == modeDown && mode != modeDown:
		var ln net.Listener
		var err error
		for range 100 {
			if ln, err = net.Listen("tcp", r.addr); err == nil {
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		if err != nil {
			r.t.Errorf("receiver %s: listen again on %s: %v", r.name, r.addr, err)
			return
		}
		r.serve(ln)
	}
}

func (r *receiver) handle(w http.ResponseWriter, req *http.Request) {
	body, err := io.ReadAll(req.Body)
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	r.mu.Lock()
	mode, hung, wh := r.mode, r.hung, r.wh
	delay := r.minDelay
	if r.maxDelay > r.minDelay {
		delay += rand.N(r.maxDelay - r.minDelay)
	}
	r.mu.Unlock()
	switch mode {
	case modeFail:
		r.mu.Lock()
		r.refused++
		r.mu.Unlock()
		http.Error(w, "failing on purpose", http.StatusInternalServerError)
		return
	case modeHang:
		select {
		case <-req.Context().Done():
		case <-hung:
		}
		r.mu.Lock()
		r.refused++
		r.mu.Unlock()
		http.Error(w, "was hanging", http.StatusServiceUnavailable)
		return
	}
	if delay > 0 {
		time.Sleep(delay)
	}
	d := delivery{at: time.Now(), webhookID: req.Header.Get("webhook-id"), body: body}
	if wh == nil {
		d.sigErr = errors.New("no signing secret bound")
	} else {
		d.sigErr = wh.Verify(body, req.Header)
	}
	d.docErr = json.Unmarshal(body, &d.doc)
	d.headerProblems = headerProblems(d.webhookID, d.doc.ID, req.Header)
	r.mu.Lock()
	if r.light {
		d.body = nil // the soak keeps what the checks need, not every body
	}
	r.got = append(r.got, d)
	r.mu.Unlock()
	_, _ = io.WriteString(w, "ok")
}

// deliveries is a copy of what the receiver accepted so far.
func (r *receiver) deliveries() []delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]delivery(nil), r.got...)
}

func (r *receiver) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.got)
}

// headerProblems checks the Standard Webhooks and Postgate headers.
func headerProblems(webhookID, bodyID string, h http.Header) []string {
	var out []string
	if !strings.HasPrefix(webhookID, "evt_") || webhookID != bodyID {
		out = append(out, "webhook-id "+webhookID+" is not the body's id "+bodyID)
	}
	if ct := h.Get("content-type"); ct != "application/json" {
		out = append(out, "content-type "+ct)
	}
	if ua := h.Get("user-agent"); ua != "Postgate/e2e" {
		out = append(out, "user-agent "+ua)
	}
	if !strings.HasPrefix(h.Get("webhook-signature"), "v1,") {
		out = append(out, "webhook-signature "+h.Get("webhook-signature"))
	}
	return out
}
