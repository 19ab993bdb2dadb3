package api_test

import (
	"context"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/postgate/postgate/internal/event"
)

// searchFixture is an event to insert: who it is from, and per endpoint
// its delivery (status, and the HTTP statuses of its attempts; 0 is a
// timeout).
type searchFixture struct {
	tenant, sender, typ string
	deliveries          []fixtureDelivery
}

type fixtureDelivery struct {
	endpoint string // ep_...
	status   string
	attempts []int
}

// insertSearchEvents stores fixtures as the ingress and the workers would
// have left them: the event with its sender, a delivery per endpoint, the
// attempts, and the event's status the worst of its deliveries'.
func insertSearchEvents(t *testing.T, h *harness, at time.Time, fixtures []searchFixture) []string {
	t.Helper()
	ctx := context.Background()
	ids := make([]string, len(fixtures))
	for i, f := range fixtures {
		id := uuid.Must(uuid.NewV7())
		ids[i] = event.FormatID(id)
		received := at.Add(time.Duration(i) * time.Millisecond)
		// Inserted settled, so that the fan-out trigger leaves it alone.
		if _, err := h.db.Pool.Exec(ctx, `INSERT INTO events
			(id, tenant_id, page_id, app_id, dedup_key, type, status, attempts, received_at, body, sender)
			VALUES ($1, $2, '100', '1', $3, $4, 'delivered', 0, $5, '{"id":"x"}', $6)`,
			id, f.tenant, id.String(), f.typ, received, f.sender); err != nil {
			t.Fatal(err)
		}
		worst, total := "delivered", 0
		rank := map[string]int{"delivered": 0, "pending": 1, "failed": 2, "dead": 3}
		for _, d := range f.deliveries {
			settled := d.status == "delivered" || d.status == "dead"
			if _, err := h.db.Pool.Exec(ctx, `INSERT INTO deliveries (tenant_id, event_id, endpoint_id, status, attempts, attempted, settled_at, next_attempt_at)
				VALUES ($1, $2, $3, $4, $5, $5, CASE WHEN $6 THEN $7::timestamptz END, $7::timestamptz + interval '1 hour')`,
				f.tenant, id, mustEndpointUUID(t, d.endpoint), d.status, len(d.attempts), settled, received.Add(time.Second)); err != nil {
				t.Fatal(err)
			}
			for n, code := range d.attempts {
				class, codeArg := "ok", any(code)
				switch {
				case code == 0:
					class, codeArg = "timeout", nil
				case code >= 500:
					class = "http_5xx"
				}
				if _, err := h.db.Pool.Exec(ctx, `INSERT INTO delivery_attempts
					(tenant_id, event_id, endpoint_id, attempt, attempted_at, status_code, latency_us, error_class, response_snippet)
					VALUES ($1, $2, $3, $4, $5, $6, 1000, $7, 'r')`,
					f.tenant, id, mustEndpointUUID(t, d.endpoint), n+1, received.Add(time.Duration(n+1)*time.Second), codeArg, class); err != nil {
					t.Fatal(err)
				}
			}
			if rank[d.status] > rank[worst] {
				worst = d.status
			}
			total += len(d.attempts)
		}
		if _, err := h.db.Pool.Exec(ctx, `UPDATE events SET status = $2, attempts = $3,
			delivered_at = CASE WHEN $2 = 'delivered' THEN received_at END, dead_at = CASE WHEN $2 = 'dead' THEN received_at END
			WHERE id = $1`, id, worst, total); err != nil {
			t.Fatal(err)
		}
	}
	return ids
}

// TestEventSearch: the events of one person (?sender=), of one endpoint
// (?endpoint_id=, where status is that delivery's), alone, together and
// with the other filters, page by page, never another tenant's; and an
// event's detail with its deliveries, each with its own status and
// attempts.
func TestEventSearch(t *testing.T) {
	h := newHarness(t)
	a, _ := h.createTenant("tenant-a")
	b, _ := h.createTenant("tenant-b")
	pa, pb := "/admin/v1/tenants/"+a, "/admin/v1/tenants/"+b
	epD := h.must(200, "GET", pa, h.admin, nil)["default_endpoint_id"].(string)
	epX := h.createEndpoint(a, map[string]any{"url": "https://hooks2.example.com/x", "events": []string{"*"}})["id"].(string)
	epB := h.must(200, "GET", pb, h.admin, nil)["default_endpoint_id"].(string)
	ids := insertSearchEvents(t, h, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), []searchFixture{
		// e0: delivered to the default endpoint, dead at the other.
		{a, "psid-alice", "messaging_postbacks", []fixtureDelivery{{epD, "delivered", []int{200}}, {epX, "dead", []int{500, 502, 503}}}},
		// e1: delivered to the default endpoint only.
		{a, "psid-bob", "messaging_postbacks", []fixtureDelivery{{epD, "delivered", []int{200}}}},
		// e2: a message, failing at the other endpoint.
		{a, "psid-alice", "messages", []fixtureDelivery{{epX, "failed", []int{0, 0}}}},
		// e3: a person known by user_ref, pending at the default endpoint.
		{a, "user-ref-carol", "messaging_postbacks", []fixtureDelivery{{epD, "pending", nil}}},
		// e4: another tenant's event of a person with the same id.
		{b, "psid-alice", "messaging_postbacks", []fixtureDelivery{{epB, "delivered", []int{200}}}},
	})

	// list fetches every page of path (limit 1 or 2, to walk the cursor)
	// and returns the items.
	list := func(t *testing.T, path string, limit string) []map[string]any {
		t.Helper()
		var out []map[string]any
		sep := "?"
		if strings.Contains(path, "?") {
			sep = "&"
		}
		cursor := ""
		for range 10 {
			l := h.must(200, "GET", path+sep+"limit="+limit+"&cursor="+url.QueryEscape(cursor), h.admin, nil)
			for _, it := range l["items"].([]any) {
				out = append(out, it.(map[string]any))
			}
			cursor, _ = l["next_cursor"].(string)
			if cursor == "" {
				return out
			}
		}
		t.Fatalf("GET %s: the pages do not end", path)
		return nil
	}
	tests := []struct {
		query    string
		want     []int    // indexes into ids
		statuses []string // the status each shows, when checked
	}{
		{"sender=psid-alice", []int{0, 2}, []string{"dead", "failed"}},
		{"sender=psid-bob", []int{1}, nil},
		{"sender=user-ref-carol", []int{3}, []string{"pending"}},
		{"sender=psid-nobody", nil, nil},
		{"sender=PSID-ALICE", nil, nil},
		{"sender=psid-alice&type=messages", []int{2}, nil},
		{"sender=psid-alice&status=dead", []int{0}, nil},
		{"endpoint_id=" + epD, []int{0, 1, 3}, []string{"delivered", "delivered", "pending"}},
		{"endpoint_id=" + epX, []int{0, 2}, []string{"dead", "failed"}},
		{"endpoint_id=" + epD + "&status=delivered", []int{0, 1}, []string{"delivered", "delivered"}},
		{"endpoint_id=" + epD + "&status=dead", nil, nil},
		{"endpoint_id=" + epX + "&status=dead", []int{0}, []string{"dead"}},
		{"endpoint_id=" + epX + "&status=delivered", nil, nil},
		{"endpoint_id=" + epD + "&sender=psid-alice", []int{0}, []string{"delivered"}},
		{"endpoint_id=" + epX + "&sender=psid-alice", []int{0, 2}, nil},
		{"endpoint_id=" + epD + "&sender=psid-bob&type=messaging_postbacks", []int{1}, nil},
		{"endpoint_id=" + epX + "&type=messaging_postbacks", []int{0}, nil},
		{"status=dead", []int{0}, nil},
		{"status=delivered", []int{1}, nil},
		{"status=failed", []int{2}, nil},
	}
	// Another tenant's endpoint is refused, not searched.
	for _, q := range []string{"endpoint_id=" + epB, "endpoint_id=" + epB + "&sender=psid-alice"} {
		h.must(422, "GET", pa+"/events?"+q, h.admin, nil)
	}
	for _, tt := range tests {
		name := strings.NewReplacer(epD, "D", epX, "X", epB, "B").Replace(tt.query)
		for _, limit := range []string{"1", "2"} {
			t.Run(name+"/limit "+limit, func(t *testing.T) {
				got := list(t, pa+"/events?"+tt.query, limit)
				var gotIDs, wantIDs []string
				for _, it := range got {
					gotIDs = append(gotIDs, it["id"].(string))
				}
				for _, i := range tt.want {
					wantIDs = append(wantIDs, ids[i])
				}
				if strings.Join(gotIDs, " ") != strings.Join(wantIDs, " ") {
					t.Fatalf("got %v, want %v", gotIDs, wantIDs)
				}
				for i, it := range got {
					if tt.statuses != nil && it["status"] != tt.statuses[i] {
						t.Errorf("%s: status %v, want %s", it["id"], it["status"], tt.statuses[i])
					}
					if q, _ := url.ParseQuery(tt.query); q.Get("sender") != "" && it["sender"] != q.Get("sender") {
						t.Errorf("%s: sender %v, want %s", it["id"], it["sender"], q.Get("sender"))
					}
				}
			})
		}
	}
	// Searched by endpoint, an event shows that delivery's state, not its
	// own (dead, 4 attempts in all).
	for _, tt := range []struct {
		endpoint      string
		status        string
		attempts      float64
		settled, none string
	}{{epD, "delivered", 1, "delivered_at", "dead_at"}, {epX, "dead", 3, "dead_at", "delivered_at"}} {
		got := list(t, pa+"/events?endpoint_id="+tt.endpoint, "2")[0]
		if got["id"] != ids[0] || got["status"] != tt.status || got["attempt_count"] != tt.attempts || got[tt.settled] == nil ||
			got[tt.none] != nil || got["next_attempt_at"] != nil {
			t.Errorf("event 0 searched by endpoint %s: got %v, want %s with %v attempts and %s only", tt.endpoint, got, tt.status, tt.attempts, tt.settled)
		}
	}
	if got := list(t, pa+"/events?endpoint_id="+epX+"&status=failed", "2"); len(got) != 1 || got[0]["next_attempt_at"] == nil || got[0]["attempt_count"] != float64(2) {
		t.Errorf("a failed delivery searched by endpoint: got %v, want its next_attempt_at and 2 attempts", got)
	}

	// The other tenant finds its own event of the same person, only.
	if got := list(t, pb+"/events?sender=psid-alice", "2"); len(got) != 1 || got[0]["id"] != ids[4] {
		t.Errorf("tenant B's search by sender: got %v, want %s alone", got, ids[4])
	}

	// The detail: one delivery per endpoint, the default endpoint first,
	// each with its own status and attempts; all attempts, oldest first.
	e := h.must(200, "GET", pa+"/events/"+ids[0], h.admin, nil)
	if e["status"] != "dead" || e["attempt_count"] != float64(4) || e["sender"] != "psid-alice" {
		t.Errorf("event detail: status %v, attempt_count %v, sender %v; want dead, 4, psid-alice", e["status"], e["attempt_count"], e["sender"])
	}
	wantDeliveries(t, e, []wantDelivery{
		{epD, "delivered", 1, []string{"ok"}},
		{epX, "dead", 3, []string{"http_5xx", "http_5xx", "http_5xx"}},
	})
	if at := e["attempts"].([]any); len(at) != 4 {
		t.Errorf("top-level attempts: got %d, want all 4", len(at))
	}
	e = h.must(200, "GET", pa+"/events/"+ids[2], h.admin, nil)
	wantDeliveries(t, e, []wantDelivery{{epX, "failed", 2, []string{"timeout", "timeout"}}})
	if d := e["deliveries"].([]any)[0].(map[string]any); d["next_attempt_at"] == nil || d["dead_at"] != nil || d["delivered_at"] != nil {
		t.Errorf("a failed delivery: got %v, want next_attempt_at and neither delivered_at nor dead_at", d)
	}
	e = h.must(200, "GET", pa+"/events/"+ids[0], h.admin, nil)
	if ds := e["deliveries"].([]any); ds[0].(map[string]any)["delivered_at"] == nil || ds[1].(map[string]any)["dead_at"] == nil {
		t.Errorf("settled deliveries: got %v, want delivered_at on the first, dead_at on the second", ds)
	}

	// A replay to one endpoint requeues that delivery alone.
	h.must(202, "POST", pa+"/events/"+ids[0]+"/replay", h.admin, map[string]any{"endpoint_id": epX})
	e = h.must(200, "GET", pa+"/events/"+ids[0], h.admin, nil)
	wantDeliveries(t, e, []wantDelivery{
		{epD, "delivered", 1, []string{"ok"}},
		{epX, "pending", 0, []string{"http_5xx", "http_5xx", "http_5xx"}},
	})
	if e["status"] != "pending" {
		t.Errorf("after a replay to one endpoint: event status %v, want pending (its worst delivery's)", e["status"])
	}
	if got := list(t, pa+"/events?endpoint_id="+epX+"&status=pending", "2"); len(got) != 1 || got[0]["id"] != ids[0] {
		t.Errorf("pending at X after the replay: got %v, want %s", got, ids[0])
	}
	if got := list(t, pa+"/events?endpoint_id="+epD+"&status=pending", "2"); len(got) != 1 || got[0]["id"] != ids[3] {
		t.Errorf("pending at the default endpoint after a replay to X: got %v, want %s alone", got, ids[3])
	}
	// A bulk replay to one endpoint likewise.
	if q := h.must(202, "POST", pa+"/replay", h.admin, map[string]any{"status": "failed", "endpoint_id": epX}); q["queued"] != float64(1) {
		t.Errorf("bulk replay of X's failed deliveries: queued %v, want 1", q["queued"])
	}
	if q := h.must(202, "POST", pa+"/replay", h.admin, map[string]any{"status": "failed", "endpoint_id": epD}); q["queued"] != float64(0) {
		t.Errorf("bulk replay of the default endpoint's failed deliveries: queued %v, want 0", q["queued"])
	}
}

type wantDelivery struct {
	endpoint     string
	status       string
	attemptCount int
	classes      []string // of its attempts, oldest first
}

func wantDeliveries(t *testing.T, e map[string]any, want []wantDelivery) {
	t.Helper()
	ds, _ := e["deliveries"].([]any)
	if len(ds) != len(want) {
		t.Fatalf("deliveries: got %v, want %d", e["deliveries"], len(want))
	}
	for i, w := range want {
		d := ds[i].(map[string]any)
		if d["endpoint_id"] != w.endpoint || d["status"] != w.status || d["attempt_count"] != float64(w.attemptCount) {
			t.Errorf("delivery %d: got %v %v %v, want %s %s %d", i, d["endpoint_id"], d["status"], d["attempt_count"], w.endpoint, w.status, w.attemptCount)
		}
		at, _ := d["attempts"].([]any)
		var classes []string
		for n, a := range at {
			am := a.(map[string]any)
			classes = append(classes, am["class"].(string))
			if am["endpoint_id"] != w.endpoint || am["attempt"] != float64(n+1) {
				t.Errorf("delivery %d attempt %d: got endpoint %v number %v, want %s %d", i, n, am["endpoint_id"], am["attempt"], w.endpoint, n+1)
			}
		}
		if strings.Join(classes, ",") != strings.Join(w.classes, ",") {
			t.Errorf("delivery %d attempts: got classes %v, want %v", i, classes, w.classes)
		}
	}
}
