package delivery_test

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/postgate/postgate/internal/database"
	"github.com/postgate/postgate/internal/delivery"
	"github.com/postgate/postgate/internal/event"
	"github.com/postgate/postgate/internal/secrets"
	"github.com/postgate/postgate/internal/tenant"
	"github.com/postgate/postgate/internal/testenv"
)

// env is a database, a Redis prefix, a keyring and a running Registry.
type env struct {
	t      *testing.T
	db     *database.DB
	rdb    redis.UniversalClient
	prefix string
	keys   *secrets.Keyring
	reg    *tenant.Registry
	store  *tenant.Store
	events *event.Store
	// mreg is the metrics registry of the worker start made last: tests
	// wait on its counters for proof that the worker went past a point.
	mreg *prometheus.Registry
}

func newEnv(t *testing.T) *env {
	t.Helper()
	return envOn(t, testenv.Postgres(t), testenv.Keyring(t))
}

// tenantOpts are a test tenant's settings.
type tenantOpts struct {
	rate, burst, concurrency int
	previousSecret           string // signs too, for an hour
}

func newSecret() string {
	b := make([]byte, 24)
	_, _ = rand.Read(b)
	return tenant.SigningSecretPrefix + base64.StdEncoding.EncodeToString(b)
}

// addTenant inserts a tenant delivering to url and returns its id and
// signing secret. The registry is reloaded before it returns.
func (e *env) addTenant(url string, o tenantOpts) (string, string) {
	e.t.Helper()
	id := uuid.Must(uuid.NewV7()).String()
	secret := newSecret()
	null := func(v int) any {
		if v == 0 {
			return nil
		}
		return v
	}
	var prev []byte
	var prevExp any
	if o.previousSecret != "" {
		prev = e.keys.Seal([]byte(o.previousSecret), tenant.PreviousSigningSecretBinding(id))
		prevExp = time.Now().Add(time.Hour)
	}
	// Its default endpoint has its id, as a migrated one does.
	e.exec(`INSERT INTO tenants (id, name) VALUES ($1, 't')`, id)
	e.exec(`INSERT INTO endpoints (id, tenant_id, is_default, url, events, rate, burst, concurrency, signing_secret,
		previous_signing_secret, previous_signing_secret_expires_at) VALUES ($1, $1, true, $2, '{*}', $3, $4, $5, $6, $7, $8)`,
		id, url, null(o.rate), null(o.burst), null(o.concurrency),
		e.keys.Seal([]byte(secret), tenant.SigningSecretBinding(id)), prev, prevExp)
	e.reload()
	return id, secret
}

func (e *env) reload() {
	e.t.Helper()
	if err := e.reg.Load(context.Background()); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) exec(sql string, args ...any) {
	e.t.Helper()
	if _, err := e.db.Pool.Exec(context.Background(), sql, args...); err != nil {
		e.t.Fatalf("exec %q: %v", sql, err)
	}
}

// addEvent inserts a due postback for tenantID and returns its id.
func (e *env) addEvent(tenantID string) uuid.UUID {
	e.t.Helper()
	id := uuid.Must(uuid.NewV7())
	now := time.Now()
	body := fmt.Sprintf(`{"id":%q,"type":"messaging_postbacks","test":false,"tenant_id":%q,"app_id":"1001","page_id":"1",`+
		`"object":"page","source":"messaging","sender":{"id":"2"},"timestamp":%d,"received_at":%q,`+
		`"postback":{"mid":"m-%s","title":"t","payload":"p"},"event":{"sender":{"id":"2"},"recipient":{"id":"1"}}}`,
		event.FormatID(id), tenantID, now.UnixMilli(), now.UTC().Format(time.RFC3339Nano), id)
	e.exec(`INSERT INTO events (id, tenant_id, page_id, app_id, dedup_key, type, received_at, body)
		VALUES ($1, $2, '1', '1001', $3, 'messaging_postbacks', $4, $5)`, id, tenantID, id.String(), now, []byte(body))
	return id
}

// state is an event's delivery columns.
type state struct {
	Status   string
	Attempts int
	Leased   bool
}

func (e *env) state(tenantID string, id uuid.UUID) state {
	e.t.Helper()
	ev, _, err := e.events.Get(context.Background(), tenantID, id)
	if err != nil {
		e.t.Fatalf("read event: %v", err)
	}
	s := state{Status: string(ev.Status), Attempts: ev.Attempts}
	if err := e.db.Pool.QueryRow(context.Background(),
		`SELECT coalesce(bool_or(d.leased_until IS NOT NULL), false) FROM deliveries d
			WHERE d.tenant_id = $1 AND d.event_id = $2`, tenantID, id).Scan(&s.Leased); err != nil {
		e.t.Fatalf("read event: %v", err)
	}
	return s
}

// waitStatus waits until the event has status want (its lease released).
func (e *env) waitStatus(tenantID string, id uuid.UUID, want string, within time.Duration) state {
	e.t.Helper()
	deadline := time.Now().Add(within)
	for {
		s := e.state(tenantID, id)
		if s.Status == want && !s.Leased {
			return s
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("event %s: got %+v after %s, want status %s", id, s, within, want)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// attempts reads an event's attempt log, oldest first.
func (e *env) attempts(tenantID string, id uuid.UUID) []event.Attempt {
	e.t.Helper()
	_, a, err := e.events.Get(context.Background(), tenantID, id)
	if err != nil {
		e.t.Fatal(err)
	}
	return a
}

func classes(as []event.Attempt) []string {
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.Class
	}
	return out
}

// baseConfig is a fast worker: short timeouts and schedule, private
// callbacks allowed (the receivers are on loopback).
func (e *env) baseConfig() delivery.Config {
	return delivery.Config{
		Timeout:          time.Second,
		RetrySchedule:    []time.Duration{50 * time.Millisecond, 100 * time.Millisecond},
		AllowPrivate:     true,
		PollInterval:     10 * time.Millisecond,
		MinClaimInterval: time.Millisecond,
		BreakerOpenFor:   200 * time.Millisecond,
		ShutdownTimeout:  2 * time.Second,
		KeyPrefix:        e.prefix,
		UserAgent:        "Postgate/test",
	}
}

// start runs a worker until the test ends (or stop is called).
func (e *env) start(cfg delivery.Config) (w *delivery.Worker, stop func()) {
	e.t.Helper()
	mreg := prometheus.NewRegistry()
	w, err := delivery.New(cfg, e.reg, e.events, e.rdb, mreg, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	e.mreg = mreg
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { w.Run(ctx); close(done) }()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	e.t.Cleanup(stop)
	return w, stop
}

// receiver is a tenant endpoint that records every request.
type receiver struct {
	srv *httptest.Server
	mu  sync.Mutex
	got []received
	// respond answers the n-th request (1-based); nil answers 200 "thanks".
	respond func(n int, w http.ResponseWriter, r *http.Request)
}

type received struct {
	at     time.Time
	header http.Header
	body   []byte
}

func newReceiver(t *testing.T, respond func(n int, w http.ResponseWriter, r *http.Request)) *receiver {
	t.Helper()
	rc := &receiver{respond: respond}
	rc.srv = httptest.NewServer(http.HandlerFunc(rc.serve))
	t.Cleanup(rc.srv.Close)
	return rc
}

func (rc *receiver) serve(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	rc.mu.Lock()
	rc.got = append(rc.got, received{at: time.Now(), header: r.Header.Clone(), body: body})
	n := len(rc.got)
	respond := rc.respond
	rc.mu.Unlock()
	if respond != nil {
		respond(n, w, r)
		return
	}
	_, _ = io.WriteString(w, "thanks")
}

func (rc *receiver) requests() []received {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]received(nil), rc.got...)
}

func (rc *receiver) setRespond(f func(n int, w http.ResponseWriter, r *http.Request)) {
	rc.mu.Lock()
	rc.respond = f
	rc.mu.Unlock()
}

// mapResolver resolves names from a map; fail makes the first lookups of
// a name fail as "no such host".
type mapResolver struct {
	mu    sync.Mutex
	addrs map[string]string
	fail  map[string]int
}

func (m *mapResolver) LookupNetIP(_ context.Context, _, host string) ([]netip.Addr, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail[host] > 0 {
		m.fail[host]--
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	a, ok := m.addrs[host]
	if !ok {
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
	return []netip.Addr{netip.MustParseAddr(a)}, nil
}

func waitFor(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within %s", what, within)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// metric reads the last started worker's metric name: the sum over its
// series whose labels include every name=value pair of labels, where a
// counter or gauge counts its value and a histogram its observations.
func (e *env) metric(name string, labels ...string) float64 {
	e.t.Helper()
	if e.mreg == nil {
		e.t.Fatal("metric: no worker started")
	}
	mfs, err := e.mreg.Gather()
	if err != nil {
		e.t.Fatalf("gather metrics: %v", err)
	}
	var sum float64
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	series:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				found := false
				for _, l := range m.GetLabel() {
					if l.GetName() == labels[i] && l.GetValue() == labels[i+1] {
						found = true
					}
				}
				if !found {
					continue series
				}
			}
			switch {
			case m.GetCounter() != nil:
				sum += m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				sum += m.GetGauge().GetValue()
			case m.GetHistogram() != nil:
				sum += float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	return sum
}

// claimRounds waits until the worker has run n more claim statements than
// it had when called, and holds no event: every round after the call read
// the queue as it was then, and whatever a round took has been attempted
// (or put back). A test asserting that something did not happen waits
// for this instead of sleeping.
func (e *env) claimRounds(n int) {
	e.t.Helper()
	from := e.metric("postgate_delivery_claim_events")
	waitFor(e.t, 5*time.Second, fmt.Sprintf("%d claim rounds", n), func() bool {
		return e.metric("postgate_delivery_claim_events") >= from+float64(n)
	})
	waitFor(e.t, 5*time.Second, "no event held", func() bool {
		return e.metric("postgate_delivery_in_flight") == 0
	})
}

// enableEndpoint re-enables a tenant's endpoint through the tenant
// service, as PATCH {"endpoint_enabled": true} does.
func (e *env) enableEndpoint(tenantID string) {
	e.t.Helper()
	svc, err := tenant.NewService(tenant.Config{AllowPrivateCallbacks: true}, e.store, e.keys, nil, nil, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	enabled := true
	if _, _, err := svc.UpdateTenant(context.Background(), tenantID, tenant.TenantPatch{EndpointEnabled: &enabled}); err != nil {
		e.t.Fatal(err)
	}
}
