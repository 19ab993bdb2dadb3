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
// until the gateway's CALLBACK_TIMEOUT, for the hang: scenarios.

// arrival is one delivery the receiver got.
type arrival struct {
	at      time.Time
	latency time.Duration // received_at in the body → arrival
}

// receiver records the deliveries of both tenants.
type receiver struct {
	srv  *http.Server
	addr string

	mu       sync.Mutex
	b        []arrival
	aHits    int64
	badBodys int64
}

func startReceiver() (*receiver, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	r := &receiver{addr: ln.Addr().String()}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /b", r.tenantB)
	mux.HandleFunc("POST /a", r.tenantA)
	r.srv = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	go func() { _ = r.srv.Serve(ln) }()
	return r, nil
}

var receivedAtKey = []byte(`"received_at":"`)

func (r *receiver) tenantB(w http.ResponseWriter, req *http.Request) {
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(req.Body)
	now := time.Now()
	body := buf.Bytes()
	a := arrival{at: now}
	if i := bytes.Index(body, receivedAtKey); i >= 0 {
		rest := body[i+len(receivedAtKey):]
		if j := bytes.IndexByte(rest, '"'); j > 0 {
			if t, err := time.Parse(time.RFC3339Nano, string(rest[:j])); err == nil {
				a.latency = now.Sub(t)
			}
		}
	}
	r.mu.Lock()
	if a.latency == 0 {
		r.badBodys++
	} else {
		r.b = append(r.b, a)
	}
	r.mu.Unlock()
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

// window returns B's deliveries that arrived in [t0, t1).
func (r *receiver) window(t0, t1 time.Time) (n int64, lat []time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, a := range r.b {
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

func (r *receiver) close() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = r.srv.Shutdown(ctx)
	_ = r.srv.Close()
}

// pipelineResult is what a pipeline scenario adds to a result.
type pipelineResult struct {
	DeliveredPerSec float64   `json:"delivered_per_s"` // tenant B's deliveries (events × endpoints), in the window
	E2E             latencyMS `json:"e2e_ms"`          // received_at → arrival, tenant B
	BacklogAtEnd    int64     `json:"backlog_at_end"`  // pending or failed events when the window closed
	HangAttempts    int64     `json:"hang_attempts,omitempty"`
}

// backlog counts deliveries not yet made.
func (b *bench) backlog(ctx context.Context) (int64, error) {
	var n int64
	err := b.db.QueryRow(ctx, `SELECT count(*) FROM deliveries WHERE status IN ('pending', 'failed')`).Scan(&n)
	return n, err
}

// drain waits until the previous scenario's backlog of tenant B is
// delivered, so it does not flow into the next window.
func (b *bench) drain(ctx context.Context, limit time.Duration) error {
	deadline := time.Now().Add(limit)
	for {
		var n int64
		err := b.db.QueryRow(ctx, `SELECT count(*) FROM deliveries WHERE tenant_id = $1 AND status IN ('pending', 'failed')`, b.tenantID).Scan(&n)
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
