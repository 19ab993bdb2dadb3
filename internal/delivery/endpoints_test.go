package delivery_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	standardwebhooks "github.com/standard-webhooks/standard-webhooks/libraries/go"

	"github.com/postgate/postgate/internal/database"
	"github.com/postgate/postgate/internal/delivery"
	"github.com/postgate/postgate/internal/event"
	"github.com/postgate/postgate/internal/secrets"
	"github.com/postgate/postgate/internal/tenant"
	"github.com/postgate/postgate/internal/testenv"
	"github.com/postgate/postgate/internal/webhook"
)

// The fixtures' Pages (README of the Messenger fixtures).
const (
	pageA = "104832957710001"
	pageB = "104832957710002"
	pageC = "104832957710003"
)

// service is the tenant service over e's store, as the admin API uses it.
func (e *env) service() *tenant.Service {
	e.t.Helper()
	svc, err := tenant.NewService(tenant.Config{AllowPrivateCallbacks: true}, e.store, e.keys, nil, nil, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	return svc
}

// newTenant creates a tenant with no endpoint through svc and returns its
// id.
func (e *env) newTenant(svc *tenant.Service) string {
	e.t.Helper()
	tn, _, err := svc.CreateTenant(context.Background(), tenant.TenantInput{Name: "t"})
	if err != nil {
		e.t.Fatal(err)
	}
	return tn.ID
}

// createEndpoint creates an endpoint of tenantID through svc and returns it
// with its whsec_ secret (empty for ed25519). The registry is reloaded.
func (e *env) createEndpoint(svc *tenant.Service, tenantID string, in tenant.EndpointInput) (tenant.Endpoint, string) {
	e.t.Helper()
	ep, secret, err := svc.CreateEndpoint(context.Background(), tenantID, in)
	if err != nil {
		e.t.Fatalf("create endpoint %+v: %v", in, err)
	}
	e.reload()
	return ep, secret
}

// setEnabled enables or disables an endpoint through svc, as PATCH
// {"enabled": ...} does, and reloads the registry.
func (e *env) setEnabled(svc *tenant.Service, tenantID string, id uuid.UUID, enabled bool) {
	e.t.Helper()
	if _, _, err := svc.UpdateEndpoint(context.Background(), tenantID, event.FormatEndpointID(id), tenant.EndpointPatch{Enabled: &enabled}); err != nil {
		e.t.Fatal(err)
	}
	e.reload()
}

// registerFixtureApp registers app 1001, signing with the fixtures'
// secret, and pages for it, for tenantID.
func (e *env) registerFixtureApp(svc *tenant.Service, tenantID string, pages ...string) {
	e.t.Helper()
	ctx := context.Background()
	if _, err := svc.RegisterApp(ctx, tenantID, tenant.AppInput{AppID: "1001", AppSecret: fixtureSecret}); err != nil {
		e.t.Fatal(err)
	}
	for _, p := range pages {
		if _, err := svc.RegisterPage(ctx, tenantID, tenant.PageInput{PageID: p, AppID: "1001"}); err != nil {
			e.t.Fatal(err)
		}
	}
	e.reload()
}

// ingestResult posts a signed fixture through the real ingest on
// /webhook/1001, as ingest does, and returns the whole result.
func (e *env) ingestResult(body []byte) webhook.Result {
	e.t.Helper()
	ing, err := webhook.NewIngestor(webhook.Config{KeyPrefix: e.prefix}, e.reg, e.events, e.rdb, prometheus.NewRegistry(), nil)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { ing.Run(ctx); close(done) }()
	defer func() { cancel(); <-done }()
	return ing.Ingest(context.Background(), webhook.Request{
		AppID: "1001", Body: body, Signature256: testenv.SignMeta(fixtureSecret, body), ReceivedAt: time.Now(),
	})
}

// deliveryState is one delivery's row: its status, retry count and lease.
type deliveryState struct {
	Status   string
	Attempts int
	Leased   bool
}

// delivery reads the delivery of event id to endpoint ep; ok is false
// when there is none.
func (e *env) delivery(ep, id uuid.UUID) (s deliveryState, ok bool) {
	e.t.Helper()
	rows, err := e.db.Pool.Query(context.Background(),
		`SELECT status, attempts, leased_until IS NOT NULL FROM deliveries WHERE endpoint_id = $1 AND event_id = $2`, ep, id)
	if err != nil {
		e.t.Fatalf("read delivery: %v", err)
	}
	defer rows.Close()
	for rows.Next() {
		if err := rows.Scan(&s.Status, &s.Attempts, &s.Leased); err != nil {
			e.t.Fatalf("read delivery: %v", err)
		}
		ok = true
	}
	if err := rows.Err(); err != nil {
		e.t.Fatalf("read delivery: %v", err)
	}
	return s, ok
}

// waitDelivery waits until event id's delivery to endpoint ep has status
// want, its lease released.
func (e *env) waitDelivery(ep, id uuid.UUID, want string, within time.Duration) deliveryState {
	e.t.Helper()
	deadline := time.Now().Add(within)
	for {
		s, ok := e.delivery(ep, id)
		if ok && s.Status == want && !s.Leased {
			return s
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("delivery of %s to %s: got %+v (exists %v) after %s, want status %s",
				event.FormatID(id), event.FormatEndpointID(ep), s, ok, within, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// allDelivered waits until every event of the database is delivered, with
// no delivery still to make, and returns how many deliveries there are.
func (e *env) allDelivered(within time.Duration) int {
	e.t.Helper()
	var n int
	waitFor(e.t, within, "every event delivered", func() bool {
		var open, events int
		if err := e.db.Pool.QueryRow(context.Background(), `SELECT count(*),
			count(*) FILTER (WHERE status <> 'delivered' OR leased_until IS NOT NULL) FROM deliveries`).Scan(&n, &open); err != nil {
			e.t.Fatal(err)
		}
		// Every event has a delivery: none reads as dead for want of one.
		if err := e.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM events e
			WHERE NOT EXISTS (SELECT 1 FROM deliveries d WHERE d.tenant_id = e.tenant_id AND d.event_id = e.id)`).Scan(&events); err != nil {
			e.t.Fatal(err)
		}
		return open == 0 && events == 0
	})
	return n
}

// standardDoc is what a test reads of a standard body.
type standardDoc struct {
	ID     string          `json:"id"`
	Type   string          `json:"type"`
	Test   bool            `json:"test"`
	PageID string          `json:"page_id"`
	Object string          `json:"object"`
	Source string          `json:"source"`
	Event  json.RawMessage `json:"event"`
}

func parseStandard(t *testing.T, body []byte) standardDoc {
	t.Helper()
	var d standardDoc
	if err := json.Unmarshal(body, &d); err != nil {
		t.Fatalf("standard body is not JSON: %v\n%s", err, body)
	}
	return d
}

// metaDoc is a body in Meta's envelope, every value kept as sent.
type metaDoc struct {
	Object string `json:"object"`
	Entry  []struct {
		ID        string            `json:"id"`
		Time      json.RawMessage   `json:"time"`
		Messaging []json.RawMessage `json:"messaging"`
		Standby   []json.RawMessage `json:"standby"`
		Changes   []json.RawMessage `json:"changes"`
	} `json:"entry"`
}

// metaItem is one event in Meta's envelope: its object, its entry's id
// and time, the array it is in, and its bytes as sent.
type metaItem struct {
	object, entryID, source string
	time, item              []byte
}

// metaItems lists the events of a body in Meta's envelope, in order.
func metaItems(t *testing.T, body []byte) []metaItem {
	t.Helper()
	var d metaDoc
	if err := json.Unmarshal(body, &d); err != nil {
		t.Fatalf("Meta body is not JSON: %v\n%s", err, body)
	}
	var out []metaItem
	for _, en := range d.Entry {
		for source, items := range map[string][]json.RawMessage{"messaging": en.Messaging, "standby": en.Standby, "changes": en.Changes} {
			for _, it := range items {
				out = append(out, metaItem{object: d.Object, entryID: en.ID, source: source, time: en.Time, item: it})
			}
		}
	}
	return out
}

// TestFanOutFormats: one tenant, three endpoints taking every event, one
// per format and signature. Three signed POSTs from Meta (a batch over
// three Pages, five events of one Page, and a dashboard test event in the
// changes[] shape) reach each endpoint once per event, each verified as
// its receiver would: the Standard Webhooks library for hmac, Ed25519
// with the whpk_ key shown on the endpoint for ed25519, and Meta's own
// two HMACs with the app secret for meta, whose body is Meta's envelope
// around the item exactly as Meta sent it.
func TestFanOutFormats(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	svc := e.service()
	tenantID := e.newTenant(svc)
	e.registerFixtureApp(svc, tenantID, pageA, pageB, pageC)
	all := []string{"*"}
	hmacRC, edRC, metaRC := newReceiver(t, nil), newReceiver(t, nil), newReceiver(t, nil)
	hmacEP, secret := e.createEndpoint(svc, tenantID, tenant.EndpointInput{URL: hmacRC.srv.URL, Events: &all})
	edEP, edSecret := e.createEndpoint(svc, tenantID, tenant.EndpointInput{URL: edRC.srv.URL, Events: &all, Signature: tenant.SignatureEd25519})
	metaEP, _ := e.createEndpoint(svc, tenantID, tenant.EndpointInput{URL: metaRC.srv.URL, Events: &all, Format: tenant.FormatMeta})
	if !strings.HasPrefix(secret, tenant.SigningSecretPrefix) || edSecret != "" {
		t.Fatalf("secrets: hmac %q, ed25519 %q; want a whsec_ secret and none", secret, edSecret)
	}
	if hmacEP.PublicKey != "" || edEP.PublicKey == "" || metaEP.Format != tenant.FormatMeta {
		t.Fatalf("endpoints: hmac %+v, ed25519 %+v, meta %+v", hmacEP, edEP, metaEP)
	}
	pub := testenv.Ed25519PublicKey(t, edEP.PublicKey)

	// Meta's items, from the fixtures' own bytes.
	var want []metaItem
	for _, f := range []struct {
		name string
		n    int
	}{{"06-batch-three-pages.json", 3}, {"07-single-entry-multiple-events.json", 5}, {"05-dashboard-test-changes-postback.json", 1}} {
		in := fixture(t, f.name)
		want = append(want, metaItems(t, in)...)
		if got := e.ingest(in); got != f.n {
			t.Fatalf("%s: ingest accepted %d events, want %d", f.name, got, f.n)
		}
	}
	const n = 9
	if len(want) != n {
		t.Fatalf("fixtures hold %d events, want %d", len(want), n)
	}
	e.start(e.baseConfig())
	if got := e.allDelivered(10 * time.Second); got != 3*n {
		t.Errorf("deliveries: got %d, want %d", got, 3*n)
	}
	e.claimRounds(3)

	// The standard endpoints: the same stored body, each once per event,
	// signed with their own key; Meta's event inside it byte for byte.
	std := map[string]standardDoc{}
	bodies := map[string][]byte{}
	for _, rc := range []struct {
		name   string
		rc     *receiver
		verify func(h http.Header, body []byte) error
	}{
		{"hmac", hmacRC, func(h http.Header, body []byte) error {
			if strings.Contains(h.Get("webhook-signature"), "v1a,") {
				return errors.New("an hmac endpoint got a v1a signature")
			}
			wh, err := standardwebhooks.NewWebhook(secret)
			if err != nil {
				return err
			}
			return wh.Verify(body, h)
		}},
		{"ed25519", edRC, func(h http.Header, body []byte) error { return testenv.VerifyV1aHeaders(pub, h, body) }},
	} {
		reqs := rc.rc.requests()
		if len(reqs) != n {
			t.Errorf("%s endpoint: got %d requests, want %d", rc.name, len(reqs), n)
		}
		seen := map[string]bool{}
		for _, r := range reqs {
			d := parseStandard(t, r.body)
			if id := r.header.Get("webhook-id"); id != d.ID || seen[id] {
				t.Errorf("%s endpoint: webhook-id %q (body id %q) twice or not the body's", rc.name, id, d.ID)
			}
			seen[d.ID] = true
			if err := rc.verify(r.header, r.body); err != nil {
				t.Errorf("%s endpoint, %s: %v", rc.name, d.ID, err)
			}
			if ct := r.header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("%s endpoint: Content-Type %q", rc.name, ct)
			}
			if b, ok := bodies[d.ID]; ok {
				if !bytes.Equal(b, r.body) {
					t.Errorf("%s endpoint, %s: body\n%s\ndiffers from the hmac endpoint's\n%s", rc.name, d.ID, r.body, b)
				}
			} else if rc.name == "hmac" {
				std[d.ID], bodies[d.ID] = d, r.body
			} else {
				t.Errorf("%s endpoint: got %s, which the hmac endpoint did not", rc.name, d.ID)
			}
		}
	}
	if len(std) != n {
		t.Fatalf("standard endpoints: got %d distinct events, want %d", len(std), n)
	}

	// The meta endpoint: Meta's envelope, one event each, the item
	// matched against the fixtures' bytes.
	reqs := metaRC.requests()
	if len(reqs) != n {
		t.Errorf("meta endpoint: got %d requests, want %d", len(reqs), n)
	}
	matched := make([]bool, len(want))
	for _, r := range reqs {
		id := r.header.Get("X-Postgate-Event-Id")
		d, ok := std[id]
		if !ok {
			t.Errorf("meta endpoint: X-Postgate-Event-Id %q is no standard delivery's webhook-id", id)
			continue
		}
		if err := testenv.VerifyMetaHeaders([]byte(fixtureSecret), r.header, r.body); err != nil {
			t.Errorf("meta endpoint, %s: %v", id, err)
		}
		if got := r.header.Get("X-Postgate-Attempt"); got != "1" {
			t.Errorf("meta endpoint, %s: X-Postgate-Attempt %q, want 1", id, got)
		}
		if h := r.header.Get("webhook-signature"); h != "" {
			t.Errorf("meta endpoint, %s: got a webhook-signature %q", id, h)
		}
		items := metaItems(t, r.body)
		if len(items) != 1 {
			t.Errorf("meta endpoint, %s: got %d events in one POST, want 1:\n%s", id, len(items), r.body)
			continue
		}
		got := items[0]
		i := slices.IndexFunc(want, func(w metaItem) bool { return bytes.Equal(w.item, got.item) })
		if i < 0 {
			t.Errorf("meta endpoint, %s: item is not one of Meta's byte for byte:\n%s", id, got.item)
			continue
		}
		if matched[i] {
			t.Errorf("meta endpoint: item %s arrived twice", got.item)
		}
		matched[i] = true
		w := want[i]
		if got.source != w.source || got.object != w.object || !bytes.Equal(got.time, w.time) {
			t.Errorf("meta endpoint, %s: got %s in %s of %s at %s, want %s of %s at %s",
				id, got.item, got.source, got.object, got.time, w.source, w.object, w.time)
		}
		if got.entryID != d.PageID {
			t.Errorf("meta endpoint, %s: entry id %q, want the event's Page %q", id, got.entryID, d.PageID)
		}
		// The body is exactly the envelope SPEC draws.
		if exact := fmt.Sprintf(`{"object":%q,"entry":[{"id":%q,"time":%s,%q:[%s]}]}`, w.object, d.PageID, w.time, w.source, w.item); string(r.body) != exact {
			t.Errorf("meta endpoint, %s: body\n%s\nwant\n%s", id, r.body, exact)
		}
		// The same event as the standard deliveries carry under this id.
		ev := got.item
		if got.source == "changes" {
			var c struct {
				Field string          `json:"field"`
				Value json.RawMessage `json:"value"`
			}
			if err := json.Unmarshal(got.item, &c); err != nil || c.Field != "messaging_postbacks" {
				t.Errorf("meta endpoint, %s: changes item %s is not the whole {field, value} (%v)", id, got.item, err)
			}
			ev = c.Value
			if !d.Test {
				t.Errorf("event %s from the dashboard's changes[]: test false, want true", id)
			}
		}
		if !bytes.Equal(ev, d.Event) {
			t.Errorf("meta endpoint, %s: item %s is not the event the standard deliveries of that id carry (%s)", id, ev, d.Event)
		}
	}
	for i, ok := range matched {
		if !ok {
			t.Errorf("meta endpoint never got %s", want[i].item)
		}
	}
}

// TestEndpointFilters: each endpoint receives exactly the events its
// filters take (types, "*", Pages, test events, and "*" next to the
// gateway's own postgate.health), each once; an event no endpoint takes is
// not stored.
func TestEndpointFilters(t *testing.T) {
	t.Parallel()
	e := newEnv(t)
	svc := e.service()
	tenantID := e.newTenant(svc)
	e.registerFixtureApp(svc, tenantID, pageA, pageB, pageC)
	no := false
	list := func(s ...string) *[]string { return &s }
	const test = "messaging_postbacks@23245 (test)" // the dashboard's test event
	endpoints := []struct {
		name string
		in   tenant.EndpointInput
		want []string // type@page of each event, sorted
	}{
		{"messages", tenant.EndpointInput{Events: list("messages")},
			[]string{"messages@" + pageA, "messages@" + pageB}},
		{"every type on Pages A and B, no test events", tenant.EndpointInput{Events: list("*"), Pages: []string{pageB, pageA}, DeliverTestEvents: &no},
			[]string{
				"message_deliveries@" + pageA, "message_deliveries@" + pageB, "message_echoes@" + pageB,
				"message_reactions@" + pageA, "message_reads@" + pageA, "message_reads@" + pageB,
				"messages@" + pageA, "messages@" + pageB,
				"messaging_postbacks@" + pageA, "messaging_postbacks@" + pageA, "messaging_postbacks@" + pageB, "messaging_postbacks@" + pageB,
			}},
		{"every type on Page B", tenant.EndpointInput{Events: list("*"), Pages: []string{pageB}},
			[]string{
				"message_deliveries@" + pageB, "message_echoes@" + pageB, "message_reads@" + pageB,
				"messages@" + pageB, "messaging_postbacks@" + pageB, "messaging_postbacks@" + pageB,
			}},
		{"every type and health on Page A", tenant.EndpointInput{Events: list("*", event.TypeHealth), Pages: []string{pageA}},
			[]string{
				"message_deliveries@" + pageA, "message_reactions@" + pageA, "message_reads@" + pageA,
				"messages@" + pageA, "messaging_postbacks@" + pageA, "messaging_postbacks@" + pageA,
			}},
		// The default filter: postbacks, test events included. A postback
		// in standby[] is a standby event, which no endpoint takes.
		{"postbacks", tenant.EndpointInput{},
			[]string{
				"messaging_postbacks@" + pageA, "messaging_postbacks@" + pageA, "messaging_postbacks@" + pageB,
				"messaging_postbacks@" + pageB, "messaging_postbacks@" + pageC, test,
			}},
		{"postbacks, no test events", tenant.EndpointInput{DeliverTestEvents: &no},
			[]string{
				"messaging_postbacks@" + pageA, "messaging_postbacks@" + pageA, "messaging_postbacks@" + pageB,
				"messaging_postbacks@" + pageB, "messaging_postbacks@" + pageC,
			}},
	}
	rcs := make([]*receiver, len(endpoints))
	ids := make([]uuid.UUID, len(endpoints))
	for i := range endpoints {
		rcs[i] = newReceiver(t, nil)
		endpoints[i].in.URL = rcs[i].srv.URL
		ep, _ := e.createEndpoint(svc, tenantID, endpoints[i].in)
		ids[i] = ep.ID
	}

	for _, f := range []struct {
		name string
		n    int
	}{
		{"01-postback-basic.json", 1},                  // postback A
		{"06-batch-three-pages.json", 3},               // postbacks A, B, C
		{"07-single-entry-multiple-events.json", 5},    // echo, delivery, read, postback, message on B
		{"09-standby-postback.json", 0},                // standby C: no endpoint takes it
		{"10-message-text.json", 1},                    // message A
		{"13-delivery-and-read.json", 2},               // delivery, read on A
		{"18-reaction.json", 1},                        // reaction A
		{"05-dashboard-test-changes-postback.json", 1}, // a test event
	} {
		res := e.ingestResult(fixture(t, f.name))
		if res.Accepted != f.n || res.Outcome != webhook.OutcomeAccepted {
			t.Fatalf("%s: got %+v, want %d accepted", f.name, res, f.n)
		}
		if f.n == 0 && res.Filtered != 1 {
			t.Errorf("%s: got %+v, want 1 filtered", f.name, res)
		}
	}
	var stored, tests int
	if err := e.db.Pool.QueryRow(context.Background(), `SELECT count(*), count(*) FILTER (WHERE test) FROM events`).Scan(&stored, &tests); err != nil {
		t.Fatal(err)
	}
	if stored != 14 || tests != 1 {
		t.Errorf("events stored: got %d (%d test events), want 14 (1 test event)", stored, tests)
	}
	total := 0
	for _, ep := range endpoints {
		total += len(ep.want)
	}
	e.start(e.baseConfig())
	if got := e.allDelivered(10 * time.Second); got != total {
		t.Errorf("deliveries: got %d, want %d", got, total)
	}
	e.claimRounds(3)

	for i, ep := range endpoints {
		var got []string
		seen := map[string]bool{}
		for _, r := range rcs[i].requests() {
			d := parseStandard(t, r.body)
			if seen[d.ID] {
				t.Errorf("%s: got %s twice", ep.name, d.ID)
			}
			seen[d.ID] = true
			label := d.Type + "@" + d.PageID
			if d.Test {
				label += " (test)"
			}
			got = append(got, label)
		}
		slices.Sort(got)
		if !slices.Equal(got, ep.want) {
			t.Errorf("%s: got\n%v\nwant\n%v", ep.name, got, ep.want)
		}
		var rows int
		if err := e.db.Pool.QueryRow(context.Background(), `SELECT count(*) FROM deliveries WHERE endpoint_id = $1`, ids[i]).Scan(&rows); err != nil {
			t.Fatal(err)
		}
		if rows != len(ep.want) {
			t.Errorf("%s: %d deliveries fanned out, want %d", ep.name, rows, len(ep.want))
		}
	}
}

// TestEndpointIsolation: one endpoint of a tenant never slows or stops
// its sibling.
func TestEndpointIsolation(t *testing.T) {
	t.Parallel()

	// A sibling hanging until the timeout on every slot it has leaves the
	// healthy endpoint's latency (acceptance to receipt) where it was
	// without it.
	t.Run("hanging sibling", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		svc := e.service()
		tenantID := e.newTenant(svc)
		var mu sync.Mutex
		sent, arrived := map[string]time.Time{}, map[string]time.Time{}
		healthy := newReceiver(t, func(n int, w http.ResponseWriter, r *http.Request) {
			mu.Lock()
			arrived[r.Header.Get("webhook-id")] = time.Now()
			mu.Unlock()
		})
		release := make(chan struct{})
		hang := newReceiver(t, func(n int, w http.ResponseWriter, r *http.Request) {
			select {
			case <-r.Context().Done():
			case <-release:
			}
			w.WriteHeader(http.StatusServiceUnavailable)
		})
		// A rate well above the test's, so that only the sibling can make
		// a difference.
		e.createEndpoint(svc, tenantID, tenant.EndpointInput{URL: healthy.srv.URL, Rate: 1000, Burst: 1000})
		hung, _ := e.createEndpoint(svc, tenantID, tenant.EndpointInput{URL: hang.srv.URL})
		e.setEnabled(svc, tenantID, hung.ID, false)
		cfg := e.baseConfig()
		cfg.Timeout = 2 * time.Second
		e.start(cfg)
		// Runs before the worker's stop (cleanups run last first): no
		// attempt is left hanging through its drain.
		t.Cleanup(func() { close(release) })

		// measure adds n events 10 ms apart and returns the healthy
		// endpoint's latencies, sorted.
		measure := func(n int) []time.Duration {
			t.Helper()
			mu.Lock()
			clear(sent)
			clear(arrived)
			mu.Unlock()
			for range n {
				at := time.Now()
				id := e.addEvent(tenantID)
				mu.Lock()
				sent[event.FormatID(id)] = at
				mu.Unlock()
				time.Sleep(10 * time.Millisecond)
			}
			waitFor(t, 5*time.Second, "the healthy endpoint's deliveries", func() bool {
				mu.Lock()
				defer mu.Unlock()
				return len(arrived) == n
			})
			mu.Lock()
			defer mu.Unlock()
			var got []time.Duration
			for id, at := range sent {
				got = append(got, arrived[id].Sub(at))
			}
			slices.Sort(got)
			return got
		}
		// p99 by nearest rank: of 100, the 99th.
		p99 := func(d []time.Duration) time.Duration { return d[(len(d)*99+99)/100-1] }

		const n = 100
		alone := measure(n)
		if got := len(hang.requests()); got != 0 {
			t.Fatalf("the disabled endpoint got %d requests", got)
		}
		// Enabled, the sibling takes its backlog (the n events above) and
		// hangs on every slot it has, for 2 s each.
		e.setEnabled(svc, tenantID, hung.ID, true)
		waitFor(t, 5*time.Second, "the sibling hanging on all its slots", func() bool {
			return len(hang.requests()) >= delivery.DefaultTenantConcurrency
		})
		hangingFrom := time.Now()
		with := measure(n)
		if held := time.Since(hangingFrom); held >= cfg.Timeout {
			t.Logf("measuring took %s, longer than the sibling's hang (%s)", held, cfg.Timeout)
		}
		t.Logf("healthy endpoint p50/p99/max: alone %s/%s/%s, beside a hanging sibling %s/%s/%s (sibling got %d requests)",
			alone[n/2], p99(alone), alone[n-1], with[n/2], p99(with), with[n-1], len(hang.requests()))
		if limit := 2*p99(alone) + 50*time.Millisecond; p99(with) > limit {
			t.Errorf("healthy endpoint p99 beside a hanging sibling: got %s, want at most %s (2 × %s alone + 50ms)", p99(with), limit, p99(alone))
		}
	})

	// A 410 disables only the endpoint that answered it: its sibling keeps
	// receiving, and only it is disabled in the endpoints table.
	t.Run("410 disables only its endpoint", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		svc := e.service()
		tenantID := e.newTenant(svc)
		gone := newReceiver(t, func(n int, w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusGone) })
		ok := newReceiver(t, nil)
		goneEP, _ := e.createEndpoint(svc, tenantID, tenant.EndpointInput{URL: gone.srv.URL})
		okEP, _ := e.createEndpoint(svc, tenantID, tenant.EndpointInput{URL: ok.srv.URL})
		first := e.addEvent(tenantID)
		e.start(e.baseConfig())
		waitFor(t, 5*time.Second, "the 410 disabling its endpoint", func() bool {
			ep, err := svc.GetEndpoint(context.Background(), tenantID, event.FormatEndpointID(goneEP.ID))
			return err == nil && !ep.Enabled()
		})
		e.waitDelivery(okEP.ID, first, "delivered", 5*time.Second)
		later := []uuid.UUID{e.addEvent(tenantID), e.addEvent(tenantID)}
		for _, id := range later {
			e.waitDelivery(okEP.ID, id, "delivered", 5*time.Second)
		}
		e.claimRounds(3)
		if got := len(ok.requests()); got != 3 {
			t.Errorf("sibling: got %d requests, want 3", got)
		}
		if got := len(gone.requests()); got != 1 {
			t.Errorf("gone endpoint: got %d requests, want 1 (disabled after it)", got)
		}
		var got []string
		rows, err := e.db.Pool.Query(context.Background(), `SELECT id, disabled_at IS NULL, coalesce(disabled_reason, '') FROM endpoints WHERE tenant_id = $1`, tenantID)
		if err != nil {
			t.Fatal(err)
		}
		for rows.Next() {
			var id uuid.UUID
			var enabled bool
			var reason string
			if err := rows.Scan(&id, &enabled, &reason); err != nil {
				t.Fatal(err)
			}
			name := map[uuid.UUID]string{goneEP.ID: "gone", okEP.ID: "ok"}[id]
			got = append(got, fmt.Sprintf("%s enabled=%v", name, enabled))
			if !enabled && !strings.Contains(reason, "410") {
				t.Errorf("%s: disabled_reason %q, want the 410 named", name, reason)
			}
		}
		if err := rows.Err(); err != nil {
			t.Fatal(err)
		}
		slices.Sort(got)
		if want := []string{"gone enabled=false", "ok enabled=true"}; !slices.Equal(got, want) {
			t.Errorf("endpoints: got %v, want %v", got, want)
		}
		// The Gone endpoint's deliveries wait, their retries unspent.
		for _, id := range append(later, first) {
			if s, _ := e.delivery(goneEP.ID, id); s.Status != "pending" || s.Attempts != 0 {
				t.Errorf("delivery of %s to the disabled endpoint: got %+v, want pending, 0 attempts", event.FormatID(id), s)
			}
		}
	})
}

// TestReplayPerEndpoint: a replay names the endpoint it is for, and only
// that endpoint's delivery is made again.
func TestReplayPerEndpoint(t *testing.T) {
	t.Parallel()
	ctx := context.Background()

	// One event to one of its two endpoints: only that one gets it
	// again, with the same webhook-id.
	t.Run("one event", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		svc := e.service()
		tenantID := e.newTenant(svc)
		a, b := newReceiver(t, nil), newReceiver(t, nil)
		epA, secretA := e.createEndpoint(svc, tenantID, tenant.EndpointInput{URL: a.srv.URL})
		epB, _ := e.createEndpoint(svc, tenantID, tenant.EndpointInput{URL: b.srv.URL})
		id := e.addEvent(tenantID)
		e.start(e.baseConfig())
		e.waitDelivery(epA.ID, id, "delivered", 5*time.Second)
		e.waitDelivery(epB.ID, id, "delivered", 5*time.Second)

		if _, err := e.events.Replay(ctx, tenantID, id, epA.ID); err != nil {
			t.Fatal(err)
		}
		waitFor(t, 5*time.Second, "the replay", func() bool { return len(a.requests()) == 2 })
		e.waitDelivery(epA.ID, id, "delivered", 5*time.Second)
		e.claimRounds(3)
		if got := len(b.requests()); got != 1 {
			t.Errorf("the other endpoint: got %d requests, want 1", got)
		}
		wh, _ := standardwebhooks.NewWebhook(secretA)
		for i, r := range a.requests() {
			if got, want := r.header.Get("webhook-id"), event.FormatID(id); got != want {
				t.Errorf("request %d: webhook-id %q, want %q", i+1, got, want)
			}
			if err := wh.Verify(r.body, r.header); err != nil {
				t.Errorf("request %d: %v", i+1, err)
			}
		}
		if s := e.state(tenantID, id); s.Status != "delivered" {
			t.Errorf("event after the replay: got %+v, want delivered", s)
		}
		var perEndpoint []string
		for _, at := range e.attempts(tenantID, id) {
			perEndpoint = append(perEndpoint, map[uuid.UUID]string{epA.ID: "a", epB.ID: "b"}[at.EndpointID]+" "+at.Class)
		}
		slices.Sort(perEndpoint)
		if want := []string{"a ok", "a ok", "b ok"}; !slices.Equal(perEndpoint, want) {
			t.Errorf("attempts: got %v, want %v", perEndpoint, want)
		}
	})

	// A bulk replay of one endpoint's dead deliveries requeues those and
	// nothing else: not the same events' dead deliveries to another
	// endpoint, not their delivered ones.
	t.Run("bulk dead of one endpoint", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		svc := e.service()
		tenantID := e.newTenant(svc)
		fail := func(n int, w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusInternalServerError) }
		ok, c, d := newReceiver(t, nil), newReceiver(t, fail), newReceiver(t, fail)
		okEP, _ := e.createEndpoint(svc, tenantID, tenant.EndpointInput{URL: ok.srv.URL})
		cEP, _ := e.createEndpoint(svc, tenantID, tenant.EndpointInput{URL: c.srv.URL})
		dEP, _ := e.createEndpoint(svc, tenantID, tenant.EndpointInput{URL: d.srv.URL})
		ids := []uuid.UUID{e.addEvent(tenantID), e.addEvent(tenantID), e.addEvent(tenantID)}
		cfg := e.baseConfig()
		cfg.BreakerFailures = 100
		e.start(cfg)
		for _, id := range ids {
			e.waitDelivery(okEP.ID, id, "delivered", 5*time.Second)
			e.waitDelivery(cEP.ID, id, "dead", 5*time.Second)
			e.waitDelivery(dEP.ID, id, "dead", 5*time.Second)
			if s := e.state(tenantID, id); s.Status != "dead" {
				t.Errorf("event with two dead deliveries: got %+v, want dead", s)
			}
		}
		attempts := 1 + len(cfg.RetrySchedule)
		if len(c.requests()) != 3*attempts || len(d.requests()) != 3*attempts {
			t.Fatalf("failing endpoints: got %d and %d requests, want %d each", len(c.requests()), len(d.requests()), 3*attempts)
		}

		c.setRespond(nil)
		d.setRespond(nil) // would take them, were they replayed
		n, err := e.events.ReplayMany(ctx, tenantID, event.ReplayFilter{Status: event.StatusDead, EndpointID: cEP.ID})
		if err != nil {
			t.Fatal(err)
		}
		if n != 3 {
			t.Errorf("ReplayMany: got %d, want 3", n)
		}
		for _, id := range ids {
			e.waitDelivery(cEP.ID, id, "delivered", 5*time.Second)
		}
		e.claimRounds(3)
		if got, want := len(c.requests()), 3*attempts+3; got != want {
			t.Errorf("replayed endpoint: got %d requests, want %d", got, want)
		}
		if got, want := len(d.requests()), 3*attempts; got != want {
			t.Errorf("other dead endpoint: got %d requests, want %d (not replayed)", got, want)
		}
		if got := len(ok.requests()); got != 3 {
			t.Errorf("delivered endpoint: got %d requests, want 3 (not replayed)", got)
		}
		for _, id := range ids {
			if s, _ := e.delivery(dEP.ID, id); s.Status != "dead" || s.Attempts != attempts {
				t.Errorf("delivery of %s to the other dead endpoint: got %+v, want dead after %d attempts", event.FormatID(id), s, attempts)
			}
			if s := e.state(tenantID, id); s.Status != "dead" {
				t.Errorf("event still dead at one endpoint: got %+v, want dead", s)
			}
		}
	})

	// An endpoint created after an event took no delivery of it; a replay
	// naming it delivers it there, with its own signature, and only there.
	t.Run("endpoint created after the event", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t)
		svc := e.service()
		tenantID := e.newTenant(svc)
		a, b := newReceiver(t, nil), newReceiver(t, nil)
		epA, _ := e.createEndpoint(svc, tenantID, tenant.EndpointInput{URL: a.srv.URL})
		id := e.addEvent(tenantID)
		e.start(e.baseConfig())
		e.waitDelivery(epA.ID, id, "delivered", 5*time.Second)

		epB, secretB := e.createEndpoint(svc, tenantID, tenant.EndpointInput{URL: b.srv.URL})
		if _, ok := e.delivery(epB.ID, id); ok {
			t.Fatal("an endpoint created after the event has a delivery of it")
		}
		if _, err := e.events.Replay(ctx, tenantID, id, epB.ID); err != nil {
			t.Fatal(err)
		}
		e.waitDelivery(epB.ID, id, "delivered", 5*time.Second)
		e.claimRounds(3)
		if got := len(a.requests()); got != 1 {
			t.Errorf("the first endpoint: got %d requests, want 1", got)
		}
		reqs := b.requests()
		if len(reqs) != 1 {
			t.Fatalf("the new endpoint: got %d requests, want 1", len(reqs))
		}
		if got, want := reqs[0].header.Get("webhook-id"), event.FormatID(id); got != want {
			t.Errorf("webhook-id: got %q, want %q", got, want)
		}
		if !bytes.Equal(reqs[0].body, a.requests()[0].body) {
			t.Errorf("body: got\n%s\nwant the body the first endpoint got\n%s", reqs[0].body, a.requests()[0].body)
		}
		wh, _ := standardwebhooks.NewWebhook(secretB)
		if err := wh.Verify(reqs[0].body, reqs[0].header); err != nil {
			t.Errorf("signature with the new endpoint's secret: %v", err)
		}
	})
}

// envOn is newEnv over db, whose secrets keys sealed.
func envOn(t *testing.T, db *database.DB, keys *secrets.Keyring) *env {
	t.Helper()
	rdb, prefix := testenv.Redis(t)
	e := &env{t: t, db: db, rdb: rdb, prefix: prefix, keys: keys, store: tenant.NewStore(db), events: event.NewStore(db)}
	e.reg = tenant.NewRegistry(tenant.RegistryConfig{RetryEvery: 100 * time.Millisecond}, db.Pool, keys, nil, nil)
	if err := e.reg.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { e.reg.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return e
}

// TestUpgradeDeliversPendingOnce: a gateway of the first version (schema
// 11) stopped with events pending, failed (retrying), held by a worker
// that died, delivered and dead. After the upgrade to endpoints, a worker
// delivers each pending and failed event exactly once, to the tenant's
// callback, signed with the tenant's original whsec_ secret, numbering the
// attempts on from the old ones; delivered and dead events are not sent.
func TestUpgradeDeliversPendingOnce(t *testing.T) {
	t.Parallel()
	ctx := context.Background()
	db, err := database.Open(ctx, testenv.EmptyPostgresURL(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	m, err := database.NewMigrator(db.SQL)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := m.UpTo(ctx, 11); err != nil {
		t.Fatalf("up to 11: %v", err)
	}
	exec := func(sql string, args ...any) {
		t.Helper()
		if _, err := db.Pool.Exec(ctx, sql, args...); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}

	// The first version's tenant: its callback, its filter, its sealed
	// secret, bound to its id.
	keys := testenv.Keyring(t)
	rc := newReceiver(t, nil)
	tenantID := uuid.Must(uuid.NewV7()).String()
	secret := newSecret()
	exec(`INSERT INTO tenants (id, name, callback_url, events, signing_secret) VALUES ($1, 't', $2, '{messages}', $3)`,
		tenantID, rc.srv.URL+"/hook", keys.Seal([]byte(secret), tenant.SigningSecretBinding(tenantID)))

	// Its events as version 11 kept them: the insert trigger queues the
	// pending and failed ones; the worker's columns are set as it left them.
	received := time.Now().Add(-time.Minute)
	insert := func(typ, status string, attempts int) uuid.UUID {
		t.Helper()
		id := uuid.Must(uuid.NewV7())
		body := fmt.Sprintf(`{"id":%q,"type":%q,"test":false,"tenant_id":%q,"app_id":"1001","page_id":"1",`+
			`"object":"page","source":"messaging","sender":{"id":"2"},"timestamp":%d,"received_at":%q,"event":{"sender":{"id":"2"},"recipient":{"id":"1"}}}`,
			event.FormatID(id), typ, tenantID, received.UnixMilli(), received.UTC().Format(time.RFC3339Nano))
		var deliveredAt, deadAt any
		switch status {
		case "delivered":
			deliveredAt = received.Add(time.Second)
		case "dead":
			deadAt = received.Add(time.Second)
		}
		exec(`INSERT INTO events (id, tenant_id, page_id, app_id, dedup_key, type, status, attempts, received_at, delivered_at, dead_at, body)
			VALUES ($1, $2, '1', '1001', $3, $4, $5, $6, $7, $8, $9, $10)`,
			id, tenantID, id.String(), typ, status, attempts, received, deliveredAt, deadAt, []byte(body))
		for n := 1; n <= attempts; n++ {
			class, code := "http_5xx", 500
			if status == "delivered" && n == attempts {
				class, code = "ok", 200
			}
			exec(`INSERT INTO delivery_attempts (tenant_id, event_id, attempt, attempted_at, status_code, latency_us, error_class)
				VALUES ($1, $2, $3, $4, $5, 1000, $6)`, tenantID, id, n, received.Add(time.Duration(n)*time.Second), code, class)
		}
		return id
	}
	pending := insert("messaging_postbacks", "pending", 0)
	message := insert("messages", "pending", 0)
	failed := insert("messaging_postbacks", "failed", 2)
	exec(`UPDATE deliveries SET attempts = 2, attempted = 2, next_attempt_at = now() - interval '1 second' WHERE event_id = $1`, failed)
	// Held by a worker killed mid-attempt: the lease ran out a moment ago.
	held := insert("messaging_postbacks", "pending", 0)
	exec(`UPDATE deliveries SET attempted = 1, next_attempt_at = now() - interval '1 second', leased_until = now() - interval '1 second' WHERE event_id = $1`, held)
	delivered := insert("messaging_postbacks", "delivered", 1)
	dead := insert("messaging_postbacks", "dead", 3)
	var queued int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM deliveries`).Scan(&queued); err != nil || queued != 4 {
		t.Fatalf("version 11 queue: got %d rows (%v), want 4", queued, err)
	}

	if _, err := m.Up(ctx); err != nil {
		t.Fatalf("upgrade: %v", err)
	}
	e := envOn(t, db, keys)
	e.start(e.baseConfig())
	open := []uuid.UUID{pending, message, failed, held}
	for _, id := range open {
		e.waitStatus(tenantID, id, "delivered", 5*time.Second)
	}
	e.claimRounds(3)

	reqs := rc.requests()
	wh, err := standardwebhooks.NewWebhook(secret)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range reqs {
		got = append(got, r.header.Get("webhook-id"))
		if err := wh.Verify(r.body, r.header); err != nil {
			t.Errorf("%s: not signed with the tenant's original secret: %v", r.header.Get("webhook-id"), err)
		}
	}
	var want []string
	for _, id := range open {
		want = append(want, event.FormatID(id))
	}
	slices.Sort(got)
	slices.Sort(want)
	if !slices.Equal(got, want) {
		t.Errorf("delivered after the upgrade: got %v, want each pending and failed event once: %v", got, want)
	}
	if s := e.state(tenantID, delivered); s.Status != "delivered" || s.Attempts != 1 {
		t.Errorf("event delivered before the upgrade: got %+v, want delivered after 1 attempt", s)
	}
	if s := e.state(tenantID, dead); s.Status != "dead" || s.Attempts != 3 {
		t.Errorf("event dead before the upgrade: got %+v, want dead after 3 attempts", s)
	}
	// The failed event's attempt is its third.
	if as := e.attempts(tenantID, failed); len(as) != 3 || as[2].Number != 3 || as[2].Class != "ok" || as[2].EndpointID.String() != tenantID {
		t.Errorf("failed event's attempts: got %+v, want 2 old ones and a third, ok, to the default endpoint", as)
	}
}
