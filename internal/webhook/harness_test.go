package webhook_test

import (
	"context"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/hex"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/redis/go-redis/v9"

	"github.com/postgate/postgate/internal/database"
	"github.com/postgate/postgate/internal/event"
	"github.com/postgate/postgate/internal/secrets"
	"github.com/postgate/postgate/internal/tenant"
	"github.com/postgate/postgate/internal/testenv"
	"github.com/postgate/postgate/internal/webhook"
)

// fixtureSecret signs every body in testdata/messenger.
const fixtureSecret = testenv.FixtureSecret

// The fixtures' Pages.
const (
	pageA  = "104832957710001"
	pageB  = "104832957710002"
	pageC  = "104832957710003"
	pageIG = "17841455500000101"
)

func fixture(t testing.TB, name string) []byte { t.Helper(); return testenv.Fixture(t, name) }

func sign256(secret string, body []byte) string { return testenv.SignMeta(secret, body) }

func sign1(secret string, body []byte) string {
	m := hmac.New(sha1.New, []byte(secret))
	m.Write(body)
	return "sha1=" + hex.EncodeToString(m.Sum(nil))
}

// env is an ingest wired to a fresh database and Redis prefix.
type env struct {
	t      testing.TB
	db     *database.DB
	rdb    redis.UniversalClient
	prefix string
	keys   *secrets.Keyring
	reg    *tenant.Registry
	ing    *webhook.Ingestor
}

func newEnv(t testing.TB) *env {
	t.Helper()
	db := testenv.Postgres(t)
	rdb, prefix := testenv.Redis(t)
	keys := testenv.Keyring(t)
	e := &env{t: t, db: db, rdb: rdb, prefix: prefix, keys: keys}
	e.reg = tenant.NewRegistry(tenant.RegistryConfig{}, db.Pool, keys, nil, nil)
	e.ing = e.newIngestor(webhook.Config{})
	return e
}

func (e *env) newIngestor(cfg webhook.Config) *webhook.Ingestor {
	e.t.Helper()
	if cfg.KeyPrefix == "" {
		cfg.KeyPrefix = e.prefix
	}
	ing, err := webhook.NewIngestor(cfg, e.reg, event.NewStore(e.db), e.rdb, prometheus.NewRegistry(), nil)
	if err != nil {
		e.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { ing.Run(ctx); close(done) }()
	e.t.Cleanup(func() { cancel(); <-done })
	return ing
}

// addTenant inserts a tenant whose one endpoint takes postbacks and
// events (as the first version's tenant fields did).
func (e *env) addTenant(events ...string) string {
	e.t.Helper()
	id := uuid.Must(uuid.NewV7()).String()
	e.exec(`INSERT INTO tenants (id, name) VALUES ($1, 't')`, id)
	e.exec(`INSERT INTO endpoints (id, tenant_id, is_default, url, events, signing_secret)
		VALUES ($1, $1, true, 'https://example.com/hook', $2, $3)`,
		id, append([]string{"messaging_postbacks"}, events...), e.keys.Seal([]byte("whsec_x"), tenant.SigningSecretBinding(id)))
	return id
}

func (e *env) addApp(tenantID, appID, secret string) {
	e.t.Helper()
	e.exec(`INSERT INTO apps (app_id, tenant_id, secret, verify_token) VALUES ($1, $2, $3, $4)`,
		appID, tenantID, e.keys.Seal([]byte(secret), tenant.AppSecretBinding(appID)), "vt-"+appID)
}

func (e *env) addPage(tenantID, appID, pageID, object string) {
	e.t.Helper()
	e.exec(`INSERT INTO pages (page_id, app_id, tenant_id, object) VALUES ($1, $2, $3, $4)`, pageID, appID, tenantID, object)
}

func (e *env) exec(sql string, args ...any) {
	e.t.Helper()
	if _, err := e.db.Pool.Exec(context.Background(), sql, args...); err != nil {
		e.t.Fatalf("exec %q: %v", sql, err)
	}
}

func (e *env) reload() {
	e.t.Helper()
	if err := e.reg.Load(context.Background()); err != nil {
		e.t.Fatal(err)
	}
}

// standard seeds tenant A owning app 1001 (the fixtures' secret) with the
// fixtures' Pages, and returns A's id.
func (e *env) standard() string {
	e.t.Helper()
	a := e.addTenant()
	e.addApp(a, "1001", fixtureSecret)
	for _, p := range []string{pageA, pageB, pageC} {
		e.addPage(a, "1001", p, "page")
	}
	e.addPage(a, "1001", pageIG, "instagram")
	e.reload()
	return a
}

func (e *env) post(appID string, body []byte, sig string) webhook.Result {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return e.ing.Ingest(ctx, webhook.Request{AppID: appID, Body: body, Signature256: sig, ReceivedAt: time.Now()})
}

type storedEvent struct {
	TenantID, PageID, AppID, DedupKey, Type string
	Test                                    bool
	Body                                    []byte
}

func (e *env) events() []storedEvent {
	e.t.Helper()
	rows, err := e.db.Pool.Query(context.Background(),
		`SELECT tenant_id::text, page_id, app_id, dedup_key, type, test, body FROM events ORDER BY id`)
	if err != nil {
		e.t.Fatal(err)
	}
	defer rows.Close()
	var out []storedEvent
	for rows.Next() {
		var s storedEvent
		if err := rows.Scan(&s.TenantID, &s.PageID, &s.AppID, &s.DedupKey, &s.Type, &s.Test, &s.Body); err != nil {
			e.t.Fatal(err)
		}
		out = append(out, s)
	}
	return out
}

func (e *env) count(sql string, args ...any) int {
	e.t.Helper()
	var n int
	if err := e.db.Pool.QueryRow(context.Background(), sql, args...).Scan(&n); err != nil {
		e.t.Fatal(err)
	}
	return n
}

// waitKeys waits until n keys under the test's prefix exist: the committed
// marks are written in the background after the answer.
func (e *env) waitKeys(n int) {
	e.t.Helper()
	deadline := time.Now().Add(2 * time.Second)
	for {
		keys, _ := e.rdb.Keys(context.Background(), e.prefix+"*").Result()
		if len(keys) >= n {
			return
		}
		if time.Now().After(deadline) {
			e.t.Fatalf("%d Redis keys after 2s, want %d", len(keys), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
