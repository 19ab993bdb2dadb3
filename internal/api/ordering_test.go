package api_test

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/postgate/postgate/internal/event"
)

// TestOrderedEndpointByAPIAndConsole: an endpoint made with ordering
// conversation (through the API and through the console's form) queues a
// conversation's events one behind the other; the event's detail, in the
// API and on the console's event page, says which event holds it back and
// since when. A bad ordering is a 422 and a 400, never a 500.
func TestOrderedEndpointByAPIAndConsole(t *testing.T) {
	h := newConsoleHarness(t)
	ctx := context.Background()
	tid, _ := h.createTenant("ordered")
	ep := h.createEndpoint(tid, map[string]any{"url": "https://hooks.example.com/ordered", "events": []string{"*"}, "ordering": "conversation"})
	if ep["ordering"] != "conversation" {
		t.Fatalf("created endpoint: %v", ep)
	}
	epID := ep["id"].(string)
	bad := h.do("PATCH", "/admin/v1/tenants/"+tid+"/endpoints/"+epID, h.admin, map[string]any{"ordering": "per-person"})
	if bad.status != http.StatusUnprocessableEntity && bad.status != http.StatusBadRequest {
		t.Fatalf("bad ordering: %d %s", bad.status, bad.body)
	}

	// Two events of one person, accepted in one statement as the ingress
	// stores them: the fan-out queues the second behind the first.
	first, second := uuid.Must(uuid.NewV7()), uuid.Must(uuid.NewV7())
	var b event.Batch
	for i, id := range []uuid.UUID{first, second} {
		b.Add(&event.New{ID: id, TenantID: tid, PageID: "100", AppID: "1", DedupKey: "m:" + id.String(),
			Type: event.TypeMessages, ReceivedAt: time.Now().Add(time.Duration(i) * time.Millisecond), Body: []byte(`{"id":"x"}`), Sender: "alice"})
	}
	if err := event.NewStore(h.db).Insert(ctx, &b, func([16]byte) {}); err != nil {
		t.Fatal(err)
	}
	got := h.must(http.StatusOK, "GET", "/admin/v1/tenants/"+tid+"/events/"+event.FormatID(second), h.admin, nil)
	var held map[string]any
	for _, d := range got["deliveries"].([]any) {
		if d := d.(map[string]any); d["endpoint_id"] == epID {
			held, _ = d["held"].(map[string]any)
		}
	}
	if held == nil || held["behind"] != event.FormatID(first) || held["head"] != event.FormatID(first) || held["waiting"] != true {
		t.Fatalf("second event's delivery: held %v, want waiting behind %s", held, event.FormatID(first))
	}
	head := h.must(http.StatusOK, "GET", "/admin/v1/tenants/"+tid+"/events/"+event.FormatID(first), h.admin, nil)
	for _, d := range head["deliveries"].([]any) {
		if d := d.(map[string]any); d["endpoint_id"] == epID && d["held"] != nil {
			t.Fatalf("the head is held: %v", d)
		}
	}

	br := &browser{h: h}
	br.signIn(h.admin)
	code, page := br.get("/console/tenants/" + tid + "/events/" + event.FormatID(second))
	if code != http.StatusOK || !strings.Contains(page, "Held back") || !strings.Contains(page, "/events/"+event.FormatID(first)) {
		t.Fatalf("event page: %d, want it held back behind %s:\n%s", code, event.FormatID(first), page)
	}
	if _, page := br.get("/console/tenants/" + tid); !strings.Contains(page, "ordered per conversation") {
		t.Fatalf("tenant page does not show the endpoint's ordering")
	}

	// The console's forms: an endpoint added ordered, another switched to
	// it, and an ordering no one knows refused with a clear 4xx.
	code, _, _ = br.post("/console/tenants/"+tid+"/endpoints", url.Values{"url": {"https://hooks.example.com/c"}, "events": {"*"}, "ordering": {"conversation"}})
	if code >= 400 {
		t.Fatalf("add an ordered endpoint in the console: %d", code)
	}
	list := h.must(http.StatusOK, "GET", "/admin/v1/tenants/"+tid+"/endpoints", h.admin, nil)
	ordered := 0
	for _, e := range list["items"].([]any) {
		if e.(map[string]any)["ordering"] == "conversation" {
			ordered++
		}
	}
	if ordered != 2 {
		t.Fatalf("%d ordered endpoints after the console's form, want 2: %v", ordered, list)
	}
	code, _, body := br.post("/console/tenants/"+tid+"/endpoints/"+epID+"/edit", url.Values{"url": {"https://hooks.example.com/ordered"}, "events": {"*"}, "ordering": {"sideways"}})
	if code < 400 || code >= 500 || !strings.Contains(body, "ordering") {
		t.Fatalf("edit with a bad ordering: %d, want a 4xx naming the field:\n%s", code, body)
	}
	code, _, _ = br.post("/console/tenants/"+tid+"/endpoints/"+epID+"/edit", url.Values{"url": {"https://hooks.example.com/ordered"}, "events": {"*"}, "ordering": {"none"}})
	if code >= 400 {
		t.Fatalf("edit to ordering none: %d", code)
	}
	if e := h.must(http.StatusOK, "GET", "/admin/v1/tenants/"+tid+"/endpoints/"+epID, h.admin, nil); e["ordering"] != "none" {
		t.Fatalf("after the console's edit: %v", e)
	}
}
