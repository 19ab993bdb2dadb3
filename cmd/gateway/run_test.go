package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/golang-jwt/jwt/v5"
	"github.com/jackc/pgx/v5"

	"github.com/postgate/postgate/internal/testenv"
)

// syncBuffer collects log lines (testenv.Buffer).
type syncBuffer = testenv.Buffer

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func key32() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	return base64.StdEncoding.EncodeToString(b)
}

func envFunc(m map[string]string) func(string) string {
	return func(k string) string { return m[k] }
}

func baseEnv(t *testing.T) map[string]string {
	return map[string]string{
		"DATABASE_URL":     testenv.PostgresURL(t),
		"REDIS_URL":        testenv.RedisURL(),
		"ADMIN_JWT_SECRET": strings.Repeat("s", 40),
		"SECRET_KEY":       key32(),
		"HTTP_ADDR":        freeAddr(t),
		"METRICS_ADDR":     freeAddr(t),
		"SHUTDOWN_DELAY":   "0s",
		"LOG_FORMAT":       "json",
	}
}

// startServe runs `gateway serve` until the test ends and waits for
// /healthz.
func startServe(t *testing.T, env map[string]string, args ...string) (*syncBuffer, func() error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	out := &syncBuffer{}
	errc := make(chan error, 1)
	go func() { errc <- run(ctx, append([]string{"serve"}, args...), envFunc(env), out) }()
	stop := sync.OnceValue(func() error {
		cancel()
		select {
		case err := <-errc:
			return err
		case <-time.After(30 * time.Second):
			return fmt.Errorf("serve did not stop within 30s")
		}
	})
	t.Cleanup(func() { _ = stop() })
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get("http://" + env["HTTP_ADDR"] + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return out, stop
			}
		}
		select {
		case err := <-errc:
			t.Fatalf("serve exited early: %v\n%s", err, out.String())
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve did not become healthy\n%s", out.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestServe(t *testing.T) {
	env := baseEnv(t)
	out, stop := startServe(t, env, "--role", "ingress")

	if code, body := get(t, "http://"+env["HTTP_ADDR"]+"/readyz"); code != 200 {
		t.Fatalf("/readyz: %d %s", code, body)
	}
	code, body := get(t, "http://"+env["METRICS_ADDR"]+"/metrics")
	if code != 200 || !strings.Contains(body, "postgate_http_requests_total") || !strings.Contains(body, "postgate_webhook_ack_seconds") {
		t.Fatalf("/metrics: %d, missing gateway metrics", code)
	}
	if code, _ := get(t, "http://"+env["HTTP_ADDR"]+"/webhook?hub.mode=subscribe&hub.verify_token=nope&hub.challenge=1"); code != 403 {
		t.Fatalf("verification with an unknown token: %d, want 403", code)
	}
	if err := stop(); err != nil {
		t.Fatalf("serve returned %v after SIGTERM", err)
	}
	logs := out.String()
	for _, secret := range []string{env["ADMIN_JWT_SECRET"], env["SECRET_KEY"]} {
		if strings.Contains(logs, secret) {
			t.Fatal("a secret appears in the logs")
		}
	}
	if !strings.Contains(logs, `"SECRET_KEY":"(set)"`) {
		t.Fatalf("the configuration is not logged with secrets masked:\n%s", logs)
	}
	if !strings.Contains(logs, `"msg":"stopped"`) {
		t.Fatalf("no orderly shutdown in the logs:\n%s", logs)
	}
}

func TestServeConfigErrors(t *testing.T) {
	tests := []struct {
		name string
		env  map[string]string
		want string
	}{
		{"short secret key", map[string]string{"SECRET_KEY": base64.StdEncoding.EncodeToString(make([]byte, 12)), "ADMIN_JWT_SECRET": strings.Repeat("s", 40)},
			"SECRET_KEY must be base64 of 32 bytes, got 12 bytes"},
		{"missing secrets", map[string]string{}, "ADMIN_JWT_SECRET is required"},
		{"bad duration", map[string]string{"CALLBACK_TIMEOUT": "ten", "SECRET_KEY": key32(), "ADMIN_JWT_SECRET": strings.Repeat("s", 40)},
			`CALLBACK_TIMEOUT must be a duration such as 10s or 2m, got "ten"`},
		{"bad redis url", map[string]string{"REDIS_URL": "http://x", "SECRET_KEY": key32(), "ADMIN_JWT_SECRET": strings.Repeat("s", 40)},
			`REDIS_URL must be a redis:// or rediss:// URL`},
		{"lease shorter than an attempt", map[string]string{"CALLBACK_TIMEOUT": "10s", "DELIVERY_LEASE": "12s", "SECRET_KEY": key32(), "ADMIN_JWT_SECRET": strings.Repeat("s", 40)},
			`DELIVERY_LEASE must exceed CALLBACK_TIMEOUT (10s) by at least 5s`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := run(context.Background(), []string{"serve"}, envFunc(tt.env), io.Discard)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("got %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestToken(t *testing.T) {
	secret := strings.Repeat("k", 40)
	var out bytes.Buffer
	const tenantID = "0196f1c2-8d4e-7000-8000-000000000001"
	err := run(context.Background(), []string{"token", "--role", "tenant", "--tenant", tenantID, "--ttl", "2h"},
		envFunc(map[string]string{"ADMIN_JWT_SECRET": secret}), &out)
	if err != nil {
		t.Fatal(err)
	}
	var claims jwt.MapClaims
	tok, err := jwt.ParseWithClaims(strings.TrimSpace(out.String()), &claims, func(*jwt.Token) (any, error) { return []byte(secret), nil },
		jwt.WithValidMethods([]string{"HS256"}))
	if err != nil || !tok.Valid {
		t.Fatalf("token does not verify: %v", err)
	}
	for _, k := range []string{"sub", "role", "iss", "aud", "exp", "iat", "tenant_id"} {
		if _, ok := claims[k]; !ok {
			t.Errorf("claim %q missing from %v", k, claims)
		}
	}
	if claims["role"] != "tenant" || claims["tenant_id"] != tenantID || claims["iss"] != "postgate" {
		t.Errorf("claims: got %v", claims)
	}
	exp, _ := claims.GetExpirationTime()
	if d := time.Until(exp.Time); d < 119*time.Minute || d > 121*time.Minute {
		t.Errorf("exp is %s away, want 2h", d)
	}
	if err := run(context.Background(), []string{"token", "--role", "tenant"}, envFunc(map[string]string{"ADMIN_JWT_SECRET": secret}), io.Discard); err == nil {
		t.Error("a tenant token without --tenant was issued")
	}
}

// TestTokenTenantNotAUUID: a tenant id is a UUID; a token for "nope"
// would verify and reach nothing, so none is printed.
func TestTokenTenantNotAUUID(t *testing.T) {
	var out bytes.Buffer
	err := run(context.Background(), []string{"token", "--role", "tenant", "--tenant", "nope"},
		envFunc(map[string]string{"ADMIN_JWT_SECRET": strings.Repeat("k", 40)}), &out)
	if err == nil || !strings.Contains(err.Error(), "UUID") || !strings.Contains(err.Error(), `"nope"`) {
		t.Fatalf("got %v, want an error saying the tenant id must be a UUID", err)
	}
	if out.Len() != 0 {
		t.Fatalf("printed %q, want no token", out.String())
	}
}

func TestMigrateStatus(t *testing.T) {
	url := testenv.PostgresURL(t)
	var out bytes.Buffer
	if err := run(context.Background(), []string{"migrate", "status"}, envFunc(map[string]string{"DATABASE_URL": url}), &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "00001_tenants.sql") || strings.Contains(out.String(), "pending") {
		t.Fatalf("migrate status on a migrated database:\n%s", out.String())
	}
	out.Reset()
	if err := run(context.Background(), []string{"migrate", "down"}, envFunc(map[string]string{"DATABASE_URL": url}), &out); err != nil {
		t.Fatal(err)
	}
	out.Reset()
	if err := run(context.Background(), []string{"migrate", "status"}, envFunc(map[string]string{"DATABASE_URL": url}), &out); err != nil {
		t.Fatal(err)
	}
	if strings.Count(out.String(), "pending") != 1 {
		t.Fatalf("after one down, want exactly one pending migration:\n%s", out.String())
	}
	if err := run(context.Background(), []string{"migrate", "up"}, envFunc(map[string]string{"DATABASE_URL": url}), io.Discard); err != nil {
		t.Fatal(err)
	}
}

func TestServeDev(t *testing.T) {
	t.Chdir(t.TempDir())
	env := baseEnv(t)
	delete(env, "ADMIN_JWT_SECRET")
	delete(env, "SECRET_KEY")
	delete(env, "LOG_FORMAT")
	printed := devQuickStart(t, env)
	for _, want := range []string{"export TOKEN=ey", "/webhook/{app_id}", "curl -s -X POST", "level=INFO"} {
		if !strings.Contains(printed, want) {
			t.Errorf("dev output lacks %q:\n%s", want, printed)
		}
	}
	saved, err := readDevFile(filepath.Join(".", devFile))
	if err != nil || len(saved["ADMIN_JWT_SECRET"]) == 0 || len(saved["SECRET_KEY"]) == 0 {
		t.Fatalf("dev secrets not kept: %v %v", saved, err)
	}
	if fi, _ := os.Stat(devFile); fi.Mode().Perm() != 0o600 {
		t.Errorf("%s has mode %v, want 0600", devFile, fi.Mode().Perm())
	}
	// The next token comes from the same secret.
	var tok bytes.Buffer
	if err := run(context.Background(), []string{"token"}, envFunc(map[string]string{}), &tok); err != nil {
		t.Fatalf("token after --dev: %v", err)
	}
	var claims jwt.MapClaims
	if _, err := jwt.ParseWithClaims(strings.TrimSpace(tok.String()), &claims, func(*jwt.Token) (any, error) {
		return []byte(saved["ADMIN_JWT_SECRET"]), nil
	}); err != nil {
		t.Fatalf("token does not verify with the dev secret: %v", err)
	}
}

// missingDatabaseURL names a database that does not exist yet on the test
// server, and drops it when the test ends.
func missingDatabaseURL(t *testing.T) string {
	t.Helper()
	u, err := url.Parse(testenv.DatabaseURL())
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 6)
	_, _ = rand.Read(b)
	name := fmt.Sprintf("postgate_test_dev_%x", b)
	u.Path = "/" + name
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		c, err := pgx.Connect(ctx, testenv.DatabaseURL())
		if err != nil {
			t.Logf("drop %s: %v", name, err)
			return
		}
		defer c.Close(ctx)
		if _, err := c.Exec(ctx, "DROP DATABASE IF EXISTS "+name+" WITH (FORCE)"); err != nil {
			t.Logf("drop %s: %v", name, err)
		}
	})
	return u.String()
}

// TestServeDevCreatesDatabase: `make run` with DATABASE_URL naming a
// database of its own, on a server where it does not exist yet: serve
// --dev creates it (through the server's maintenance database) and comes
// up on it.
func TestServeDevCreatesDatabase(t *testing.T) {
	t.Chdir(t.TempDir())
	env := baseEnv(t)
	delete(env, "ADMIN_JWT_SECRET")
	delete(env, "SECRET_KEY")
	env["DATABASE_URL"] = missingDatabaseURL(t)
	startServe(t, env, "--dev")
	if code, body := get(t, "http://"+env["HTTP_ADDR"]+"/readyz"); code != 200 {
		t.Fatalf("/readyz: %d %s", code, body)
	}
	// Without --dev the gateway never creates a database.
	env2 := baseEnv(t)
	env2["DATABASE_URL"] = missingDatabaseURL(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if err := run(ctx, []string{"serve"}, envFunc(env2), io.Discard); err == nil || !strings.Contains(err.Error(), "does not exist") {
		t.Fatalf("serve without --dev on a missing database: got %v, want it to say the database does not exist", err)
	}
}

// TestServeDevPublicURL: under --dev, PUBLIC_URL follows HTTP_ADDR unless
// set, so the quick start's URLs are where the gateway listens.
func TestServeDevPublicURL(t *testing.T) {
	t.Chdir(t.TempDir())
	env := baseEnv(t)
	delete(env, "ADMIN_JWT_SECRET")
	delete(env, "SECRET_KEY")
	printed := devQuickStart(t, env)
	base := "http://" + env["HTTP_ADDR"]
	for _, want := range []string{base + "/webhook/{app_id}", base + "/admin/v1/tenants", base + "/admin/v1/docs", "http://" + env["METRICS_ADDR"] + "/metrics"} {
		if !strings.Contains(printed, want) {
			t.Errorf("quick start lacks %q:\n%s", want, printed)
		}
	}
	if strings.Contains(printed, ":8080") {
		t.Errorf("quick start names :8080, where nothing listens:\n%s", printed)
	}

}

func TestVersion(t *testing.T) {
	var out bytes.Buffer
	if err := run(context.Background(), []string{"version"}, envFunc(nil), &out); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(out.String(), "go1.") {
		t.Fatalf("version output: %q", out.String())
	}
}

// devQuickStart runs serve --dev with env until it has printed its quick
// start, stops it, and returns what it printed.
func devQuickStart(t *testing.T, env map[string]string) string {
	t.Helper()
	out, stop := startServe(t, env, "--dev")
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(out.String(), "export TOKEN=") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	return out.String()
}
