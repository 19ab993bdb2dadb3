package api_test

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/postgate/postgate/internal/api"
	"github.com/postgate/postgate/internal/database"
	"github.com/postgate/postgate/internal/event"
	"github.com/postgate/postgate/internal/secrets"
	"github.com/postgate/postgate/internal/tenant"
	"github.com/postgate/postgate/internal/testenv"
	"github.com/postgate/postgate/internal/webhook"
)

const hookSecret = testenv.FixtureSecret

// webhookServer is an api.Server whose ingress stores into a fresh
// database: tenant owning app 1001 with Page 104832957710001.
func webhookServer(t *testing.T, maxBody int, extra ...api.Checker) *api.Server {
	t.Helper()
	db := testenv.Postgres(t)
	keys := testenv.Keyring(t)
	ctx := context.Background()
	id := uuid.Must(uuid.NewV7()).String()
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{`INSERT INTO tenants (id, name) VALUES ($1, 't')`, []any{id}},
		{`INSERT INTO endpoints (id, tenant_id, is_default, url, signing_secret) VALUES ($1, $1, true, 'https://example.com', $2)`,
			[]any{id, keys.Seal([]byte("whsec_x"), tenant.SigningSecretBinding(id))}},
		{`INSERT INTO apps (app_id, tenant_id, secret, verify_token) VALUES ('1001', $1, $2, 'the-verify-token')`,
			[]any{id, keys.Seal([]byte(hookSecret), tenant.AppSecretBinding("1001"))}},
		{`INSERT INTO pages (page_id, app_id, tenant_id) VALUES ('104832957710001', '1001', $1)`, []any{id}},
	} {
		if _, err := db.Pool.Exec(ctx, q.sql, q.args...); err != nil {
			t.Fatal(err)
		}
	}
	ing := startIngestor(t, db, keys, nil)
	checkers := append([]api.Checker{{Name: "postgres", Check: db.Ping}}, extra...)
	return api.New(api.Config{MaxBodyBytes: maxBody}, api.Deps{Ingest: ing, Checkers: checkers})
}

// startIngestor runs the ingest use case on db until the test ends, routing
// with what the database holds now; mreg nil keeps its metrics private.
func startIngestor(t *testing.T, db *database.DB, keys *secrets.Keyring, mreg prometheus.Registerer) *webhook.Ingestor {
	t.Helper()
	ctx := context.Background()
	rdb, prefix := testenv.Redis(t)
	reg := tenant.NewRegistry(tenant.RegistryConfig{}, db.Pool, keys, nil, nil)
	if err := reg.Load(ctx); err != nil {
		t.Fatal(err)
	}
	ing, err := webhook.NewIngestor(webhook.Config{KeyPrefix: prefix}, reg, event.NewStore(db), rdb, mreg, nil)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	t.Cleanup(cancel)
	go ing.Run(runCtx)
	return ing
}

func do(t *testing.T, s *api.Server, req *http.Request) (int, http.Header, string) {
	t.Helper()
	resp, err := s.App().Test(req, -1)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func signedPost(path string, body []byte, secret string) *http.Request {
	req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
	req.Header.Set("Content-Type", "application/json")
	if secret != "" {
		req.Header.Set("X-Hub-Signature-256", testenv.SignMeta(secret, body))
	}
	return req
}

const postback = `{"object":"page","entry":[{"id":"104832957710001","time":1767225601284,"messaging":[{"sender":{"id":"7081529936124401"},"recipient":{"id":"104832957710001"},"timestamp":1767225601234,"postback":{"mid":"m_http_1","title":"Get Started","payload":"GET_STARTED"}}]}]}`

func TestWebhookVerification(t *testing.T) {
	s := webhookServer(t, 0)
	tests := []struct {
		query    string
		wantCode int
		wantBody string
	}{
		{"/webhook/1001?hub.mode=subscribe&hub.verify_token=the-verify-token&hub.challenge=1158201444", 200, "1158201444"},
		{"/webhook?hub.mode=subscribe&hub.verify_token=the-verify-token&hub.challenge=abc%20%C3%A9", 200, "abc é"},
		{"/webhook/1001?hub.mode=subscribe&hub.verify_token=wrong&hub.challenge=1", 403, ""},
		{"/webhook/2002?hub.mode=subscribe&hub.verify_token=the-verify-token&hub.challenge=1", 403, ""},
		{"/webhook/1001?hub.mode=unsubscribe&hub.verify_token=the-verify-token&hub.challenge=1", 403, ""},
		{"/webhook/1001?hub.verify_token=the-verify-token&hub.challenge=1", 403, ""},
	}
	for _, tt := range tests {
		code, h, body := do(t, s, httptest.NewRequest(http.MethodGet, tt.query, nil))
		if code != tt.wantCode {
			t.Errorf("GET %s: %d, want %d", tt.query, code, tt.wantCode)
			continue
		}
		if code == 200 && (body != tt.wantBody || !strings.HasPrefix(h.Get("Content-Type"), "text/plain")) {
			t.Errorf("GET %s: body %q (%s), want %q as text/plain", tt.query, body, h.Get("Content-Type"), tt.wantBody)
		}
	}
}

func TestWebhookStatuses(t *testing.T) {
	s := webhookServer(t, 64<<10)
	tests := []struct {
		name string
		req  *http.Request
		want int
	}{
		{"signed postback", signedPost("/webhook/1001", []byte(postback), hookSecret), 200},
		{"same on the shared endpoint", signedPost("/webhook", []byte(postback), hookSecret), 200},
		{"no signature", signedPost("/webhook/1001", []byte(postback), ""), 401},
		{"wrong secret", signedPost("/webhook/1001", []byte(postback), "other"), 401},
		{"shared, not JSON", signedPost("/webhook", []byte(`{"object":`), hookSecret), 400},
		{"shared, too deep", signedPost("/webhook", []byte(strings.Repeat("[", 65)+strings.Repeat("]", 65)), hookSecret), 400},
		{"shared, no registered page", signedPost("/webhook", []byte(`{"object":"page","entry":[{"id":"1"}]}`), hookSecret), 200},
		{"app path, signed but not JSON: quarantined", signedPost("/webhook/1001", []byte(`not json`), hookSecret), 200},
	}
	for _, tt := range tests {
		code, _, body := do(t, s, tt.req)
		if code != tt.want {
			t.Errorf("%s: %d %q, want %d", tt.name, code, body, tt.want)
		}
	}
}

// TestBodyOverLimit: over MAX_BODY_BYTES is 413, on a real connection.
// With a Content-Length the answer comes from the headers alone: the test
// sends no body at all, so nothing past the limit can have been read. A
// chunked body is refused at the chunk that would cross the limit, before
// its bytes; the gateway answers 413 and closes.
func TestBodyOverLimit(t *testing.T) {
	s := webhookServer(t, 64<<10)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = s.Serve(ln) }()
	t.Cleanup(func() { _ = s.Shutdown(context.Background()) })
	head := "POST /webhook/1001 HTTP/1.1\r\nHost: gateway\r\nContent-Type: application/json\r\n" +
		"X-Hub-Signature-256: sha256=" + strings.Repeat("0", 64) + "\r\n"

	t.Run("content-length", func(t *testing.T) {
		conn, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := io.WriteString(conn, head+"Content-Length: 71680\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
		if err != nil {
			t.Fatalf("no answer to the headers alone: %v", err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Fatalf("got %d, want 413", resp.StatusCode)
		}
	})

	t.Run("chunked", func(t *testing.T) {
		conn, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
		// Chunks up to the limit exactly (allowed), then the header of a
		// chunk that would cross it, and the client waits. The gateway must
		// refuse on that header, without waiting for the chunk's bytes. It
		// has then read every byte sent, so its close cannot turn into a
		// reset that loses the answer: the 413 is read every time.
		var req bytes.Buffer
		req.WriteString(head + "Transfer-Encoding: chunked\r\n\r\n")
		chunk := strings.Repeat("y", 8<<10)
		for range (64 << 10) / len(chunk) {
			fmt.Fprintf(&req, "%x\r\n%s\r\n", len(chunk), chunk)
		}
		fmt.Fprintf(&req, "%x\r\n", len(chunk))
		written := make(chan error, 1)
		go func() { _, err := conn.Write(req.Bytes()); written <- err }()
		r := bufio.NewReader(conn)
		resp, err := http.ReadResponse(r, nil)
		if err != nil {
			t.Fatalf("no answer to a chunked body crossing the limit: %v", err)
		}
		_, err = io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			t.Fatalf("reading the answer's body: %v", err)
		}
		if resp.StatusCode != http.StatusRequestEntityTooLarge {
			t.Fatalf("got %d, want 413", resp.StatusCode)
		}
		if err := <-written; err != nil {
			t.Fatalf("the gateway stopped reading before the limit: %v", err)
		}
		// Then it closes: the connection ends cleanly, nothing else comes.
		if b, err := r.ReadByte(); err != io.EOF {
			t.Errorf("after the 413: got byte %q, %v; want the connection closed (EOF)", b, err)
		}
	})
}

func TestReadiness(t *testing.T) {
	down := api.Checker{Name: "redis", Check: func(context.Context) error { return errors.New("connection refused") }}
	s := webhookServer(t, 0, down)
	if code, _, body := do(t, s, httptest.NewRequest(http.MethodGet, "/readyz", nil)); code != 503 || !strings.Contains(body, "redis") {
		t.Fatalf("/readyz with redis down: %d %s, want 503 naming redis", code, body)
	}
	if code, _, _ := do(t, s, httptest.NewRequest(http.MethodGet, "/healthz", nil)); code != 200 {
		t.Fatalf("/healthz: %d", code)
	}
	ok := webhookServer(t, 0)
	if code, _, _ := do(t, ok, httptest.NewRequest(http.MethodGet, "/readyz", nil)); code != 200 {
		t.Fatalf("/readyz: %d", code)
	}
	ok.Drain()
	if code, _, body := do(t, ok, httptest.NewRequest(http.MethodGet, "/readyz", nil)); code != 503 || !strings.Contains(body, "draining") {
		t.Fatalf("/readyz while draining: %d %s", code, body)
	}
}
