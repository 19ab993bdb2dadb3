package main

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"
)

// The pipeline mode (-pipeline) runs the gateway with --role all and points
// the tenants' callbacks at a receiver in this process, so a scenario
// measures the whole path: Meta's POST → stored → delivered. Tenant B gets
// the load; tenant A (its own app and Pages) has an endpoint that hangs
// until the gateway's CALLBACK_TIMEOUT, for the hang: scenarios. With
// -ordering, tenant O's endpoint is ordered (ordering conversation): the
// :ordered scenarios load it instead of B, and its receiver answers 500 to
// every event of the failing person and checks that no two requests of
// one conversation are ever in flight at once.

// arrival is one delivery the receiver got.
type arrival struct {
	at      time.Time
	latency time.Duration // received_at in the body → arrival
}

// receiver records the deliveries of every tenant.
type receiver struct {
	srv  *http.Server
	addr string

	mu       sync.Mutex
	b        []arrival
	aHits    int64
	badBodys int64
	// Tenant O: arrivals answered 2xx (so not the failing person's), the
	// failing person's requests, requests of a conversation that arrived
	// while another of it was in flight here (a broken order), and the
	// conversations in flight.
	o         []arrival
	oFailed   int64
	oOverlap  int64
	oNoPerson int64
	oInFlight map[string]bool
}

func startReceiver() (*receiver, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &receiver{addr: ln.Addr().String(), oInFlight: map[string]bool{}}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /b", r.tenantB)
	mux.HandleFunc("POST /a", r.tenantA)
	mux.HandleFunc("POST /o", r.tenantO)
	r.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = r.srv.Serve(ln) }()
	return r, nil
}

var receivedAtKey = []byte(`"received_at":"`)

// arrivalOf is a delivery body's arrival now, with its latency from the
// body's received_at (0 if the body has none).
func arrivalOf(body []byte, now time.Time) arrival {
	a := arrival{at: now}
	if i := bytes.Index(body, receivedAtKey); i >= 0 {
		rest := body[i+len(receivedAtKey):]
		if j := bytes.IndexByte(rest, '"'); j > 0 {
			if t, err := time.Parse(time.RFC3339Nano, string(rest[:j])); err == nil {
				a.latency = now.Sub(t)
			}
		}
	}
	return a
}

func (r *receiver) tenantB(w http.ResponseWriter, req *http.Request) {
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(req.Body)
	now := time.Now()
	r.keep(&r.b, buf.Bytes(), now)
	w.WriteHeader(http.StatusNoContent)
}

// keep adds the arrival of body at now to list, or counts a body it cannot
// read.
func (r *receiver) keep(list *[]arrival, body []byte, now time.Time) {
	a := arrivalOf(body, now)
	r.mu.Lock()
	if a.latency == 0 {
		r.badBodys++
	} else {
		*list = append(*list, a)
	}
	r.mu.Unlock()
}

var senderKey = []byte(`"sender":{"id":"`)

// tenantO is the ordered endpoint: 500 for the failing person, 204 for
// everyone else, and a check that a conversation (a person: each keeps to
// one Page) never has two requests here at once.
func (r *receiver) tenantO(w http.ResponseWriter, req *http.Request) {
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(req.Body)
	now := time.Now()
	body := buf.Bytes()
	person := ""
	if i := bytes.Index(body, senderKey); i >= 0 {
		rest := body[i+len(senderKey):]
		if j := bytes.IndexByte(rest, '"'); j > 0 {
			person = string(rest[:j])
		}
	}
	r.mu.Lock()
	if person == "" {
		r.oNoPerson++
	} else if r.oInFlight[person] {
		r.oOverlap++
	}
	r.oInFlight[person] = true
	r.mu.Unlock()
	defer func() {
		r.mu.Lock()
		delete(r.oInFlight, person)
		r.mu.Unlock()
	}()
	if person == failingSender {
		r.mu.Lock()
		r.oFailed++
		r.mu.Unlock()
		w.WriteHeader(http.StatusInternalServerError)
		return
	}
	r.keep(&r.o, body, now)
	w.WriteHeader(http.StatusNoContent)
}

// tenantA hangs until the gateway gives up on the attempt.
func (r *receiver) tenantA(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	r.aHits++
	r.mu.Unlock()
	select {
	case <-req.Context().Done():
	case <-time.After(5 * time.Minute):
	}
}

// window returns the deliveries of B (of O if ordered) that arrived in
// [t0, t1).
func (r *receiver) window(t0, t1 time.Time, ordered bool) (n int64, lat []time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	arrivals := r.b
	if ordered {
		arrivals = r.o
	}
	for _, a := range arrivals {
		if !a.at.Before(t0) && a.at.Before(t1) {
			n++
			lat = append(lat, a.latency)
		}
	}
	return n, lat
}

func (r *receiver) hits() (aHits, bad int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.aHits, r.badBodys
}

// ordered is what tenant O's endpoint counted so far: requests of the
// failing person, requests that overlapped another of their conversation,
// requests without a person.
func (r *receiver) ordered() (failed, overlap, noPerson int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.oFailed, r.oOverlap, r.oNoPerson
}

func (r *receiver) close() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = r.srv.Shutdown(ctx)
	_ = r.srv.Close()
}

// pipelineResult is what a pipeline scenario adds to a result.
type pipelineResult struct {
	DeliveredPerSec float64   `json:"delivered_per_s"` // tenant B's (O's if ordered) deliveries (events × endpoints), in the window
	E2E             latencyMS `json:"e2e_ms"`          // received_at → arrival, tenant B (O)
	BacklogAtEnd    int64     `json:"backlog_at_end"`  // pending or failed events when the window closed
	HangAttempts    int64     `json:"hang_attempts,omitempty"`
	// Ordered scenarios: attempts at the failing person's events in the
	// window (answered 500), and requests that arrived while another of
	// their conversation was in flight at the endpoint over the whole
	// scenario (must be 0). HeldAtEnd is tenant O's open deliveries with
	// an open one before them in their conversation when the window closed:
	// the rows the claim passes over.
	FailingAttempts int64 `json:"failing_attempts,omitempty"`
	Overlaps        int64 `json:"order_overlaps,omitempty"`
	HeldAtEnd       int64 `json:"held_at_end,omitempty"`
}

// backlog counts deliveries not yet made.
func (b *bench) backlog(ctx context.Context) (int64, error) {
	var n int64
	err := b.db.QueryRow(ctx, `SELECT count(*) FROM deliveries WHERE status IN ('pending', 'failed')`).Scan(&n)
	return n, err
}

// held counts tenant O's open deliveries that wait behind an open one of
// their conversation.
func (b *bench) held(ctx context.Context) (int64, error) {
	var n int64
	err := b.db.QueryRow(ctx, `SELECT count(*) FROM deliveries d WHERE d.tenant_id = $1 AND d.status IN ('pending', 'failed')
		AND EXISTS (SELECT 1 FROM deliveries h WHERE h.conversation = d.conversation AND h.status IN ('pending', 'failed')
			AND (h.seq, h.event_id) < (d.seq, d.event_id))`, b.ordTenant).Scan(&n)
	return n, err
}

// drain waits until the previous scenario's backlog of tenants B and O
// is delivered, so it does not flow into the next window; the failing
// person's events are never delivered, and are not waited for.
func (b *bench) drain(ctx context.Context, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	tenants := []string{b.tenantID}
	if b.ordTenant != "" {
		tenants = append(tenants, b.ordTenant)
	}
	for {
		var n int64
		err := b.db.QueryRow(ctx, `SELECT count(*) FROM deliveries d JOIN events e ON e.tenant_id = d.tenant_id AND e.id = d.event_id
			WHERE d.tenant_id = ANY ($1::uuid[]) AND d.status IN ('pending', 'failed') AND e.sender IS DISTINCT FROM $2`,
			tenants, failingSender).Scan(&n)
		if err != nil {
			return err
		}
		if n == 0 {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%d events still pending after %s", n, limit)
		}
		sleepUntil(ctx, time.Now().Add(200*time.Millisecond))
	}
}
