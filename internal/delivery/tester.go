package delivery

import (
	"context"
	"encoding/hex"
	"errors"
	"strconv"
	"time"

	"github.com/google/uuid"

	"github.com/postgate/postgate/internal/event"
	"github.com/postgate/postgate/internal/tenant"
)

// TestTargets finds what a test send needs; the tenant service is one.
type TestTargets interface {
	TestTarget(ctx context.Context, tenantID, endpointID string) (tenant.TestTarget, error)
}

// Tester sends a synthetic test postback to an endpoint now, outside the
// queue: signed and shaped as the endpoint's deliveries are, through the
// same guarded HTTP client (the SSRF rules at connect time, no redirects,
// CALLBACK_TIMEOUT).
type Tester struct {
	sender  *sender
	targets TestTargets
	now     func() time.Time
}

// NewTester returns a Tester with cfg's HTTP settings.
func NewTester(cfg Config, targets TestTargets) (*Tester, error) {
	if err := cfg.defaults(); err != nil {
		return nil, err
	}
	if targets == nil {
		return nil, errors.New("delivery: a tester needs its test targets")
	}
	return &Tester{sender: newSender(&cfg), targets: targets, now: cfg.Now}, nil
}

// TestResult is what the endpoint answered to a test send.
type TestResult struct {
	EventID    string
	StatusCode int // 0 when no answer came
	Latency    time.Duration
	Class      string
	Error      string // empty on a 2xx
	Response   string // the first KiB of the answer
}

// Test sends a test postback ("test": true) to endpoint endpointID of
// tenantID and returns what came of it; an error only when the endpoint
// cannot be found or tested (no app to sign a meta delivery with).
func (t *Tester) Test(ctx context.Context, tenantID, endpointID string) (TestResult, error) {
	tg, err := t.targets.TestTarget(ctx, tenantID, endpointID)
	if err != nil {
		return TestResult{}, err
	}
	now := t.now()
	id := uuid.Must(uuid.NewV7())
	ms := now.UnixMilli()
	mid := "m_postgate_test_" + hex.EncodeToString(id[10:])
	item := []byte(`{"sender":{"id":"0"},"recipient":{"id":` + strconv.Quote(tg.PageID) + `},"timestamp":` +
		strconv.FormatInt(ms, 10) + `,"postback":{"mid":"` + mid + `","title":"Postgate test","payload":"POSTGATE_TEST"}}`)
	var req request
	if tg.Endpoint.Format == tenant.FormatMeta {
		// Entry id "0", as Meta's own dashboard test events: a bot (and the
		// gateway's ingress) tells them from real ones by it.
		body := AppendMetaBody(nil, string(tg.Object), "0", nil, ms, "messaging", item)
		req = metaRequest(tg.Endpoint.URL, body, tg.AppSecret, event.FormatID(id), 1, now)
	} else {
		p := event.Payload{
			ID: id, Type: event.TypePostbacks, Test: true, TenantID: tg.Endpoint.TenantID, AppID: tg.AppID,
			PageID: tg.PageID, Object: string(tg.Object), Source: "messaging", SenderID: "0", HasSenderID: true,
			TimestampMS: ms, ReceivedAt: now,
			Postback: []byte(`{"mid":"` + mid + `","title":"Postgate test","payload":"POSTGATE_TEST"}`), Event: item,
		}
		var reason string
		if req, reason = standardRequest(tg.Endpoint, event.FormatID(id), p.AppendJSON(nil), now); reason != "" {
			return TestResult{}, errors.New("the endpoint's signing secret cannot be opened")
		}
	}
	res := t.sender.send(ctx, req)
	return TestResult{
		EventID: event.FormatID(id), StatusCode: res.status, Latency: res.latency, Class: res.class,
		Error: res.err, Response: res.snippet,
	}, nil
}
