package tenant_test

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/postgate/postgate/internal/tenant"
	"github.com/postgate/postgate/internal/testenv"
)

// TestRegistryPropagation runs two registries (two gateway replicas) on one
// database: a change committed by anyone is visible to both within 1 second.
func TestRegistryPropagation(t *testing.T) {
	db := testenv.Postgres(t)
	keys := testenv.Keyring(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var replicas []*tenant.Registry
	for range 2 {
		r := tenant.NewRegistry(tenant.RegistryConfig{ReloadEvery: time.Hour}, db.Pool, keys, nil, nil)
		if err := r.Load(ctx); err != nil {
			t.Fatal(err)
		}
		go r.Run(ctx)
		replicas = append(replicas, r)
	}
	// Let both LISTENs start: Run reloads once listening.
	for _, r := range replicas {
		waitFor(t, time.Second, func() bool { return r.Loads() >= 2 })
	}

	tenantID := uuid.Must(uuid.NewV7()).String()
	exec := func(sql string, args ...any) {
		t.Helper()
		if _, err := db.Pool.Exec(ctx, sql, args...); err != nil {
			t.Fatal(err)
		}
	}
	start := time.Now()
	exec(`INSERT INTO tenants (id, name) VALUES ($1, 'a')`, tenantID)
	exec(`INSERT INTO apps (app_id, tenant_id, secret, verify_token) VALUES ('77', $1, $2, 'vt-77')`,
		tenantID, keys.Seal([]byte("app-secret"), tenant.AppSecretBinding("77")))
	exec(`INSERT INTO pages (page_id, app_id, tenant_id) VALUES ('123', '77', $1)`, tenantID)
	for i, r := range replicas {
		waitFor(t, time.Second, func() bool { _, ok := r.Route("123", "77"); return ok })
		app, ok := r.App("77")
		if !ok || string(app.Secret) != "app-secret" || app.TenantID != tenantID {
			t.Fatalf("replica %d: app 77 = %+v, %v", i, app, ok)
		}
	}
	t.Logf("registration visible on both replicas after %s", time.Since(start))

	exec(`DELETE FROM pages WHERE page_id = '123'`)
	for i, r := range replicas {
		waitFor(t, time.Second, func() bool { _, ok := r.Route("123", "77"); return !ok })
		_ = i
	}
}

// TestRegistryRotationGrace: after an app-secret rotation both secrets are
// valid until the grace period ends, then only the new one.
func TestRegistryRotationGrace(t *testing.T) {
	db := testenv.Postgres(t)
	keys := testenv.Keyring(t)
	ctx := context.Background()
	now := time.Now()
	clock := func() time.Time { return now }
	tenantID := uuid.Must(uuid.NewV7()).String()
	_, err := db.Pool.Exec(ctx, `INSERT INTO tenants (id, name) VALUES ($1, 'a')`, tenantID)
	if err != nil {
		t.Fatal(err)
	}
	_, err = db.Pool.Exec(ctx, `INSERT INTO apps (app_id, tenant_id, secret, previous_secret, previous_secret_expires_at, verify_token)
		VALUES ('77', $1, $2, $3, $4, 'vt')`, tenantID,
		keys.Seal([]byte("new"), tenant.AppSecretBinding("77")),
		keys.Seal([]byte("old"), tenant.AppPreviousSecretBinding("77")), now.Add(24*time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	r := tenant.NewRegistry(tenant.RegistryConfig{}, db.Pool, keys, nil, clock)
	if err := r.Load(ctx); err != nil {
		t.Fatal(err)
	}
	app, _ := r.App("77")
	tests := []struct {
		at   time.Time
		want []string
	}{
		{now, []string{"new", "old"}},
		{now.Add(23 * time.Hour), []string{"new", "old"}},
		{now.Add(24 * time.Hour), []string{"new"}},
	}
	for _, tt := range tests {
		var got []string
		for _, s := range app.Secrets(tt.at, nil) {
			got = append(got, string(s))
		}
		if len(got) != len(tt.want) || got[0] != tt.want[0] || (len(got) > 1 && got[1] != tt.want[1]) {
			t.Errorf("at +%s: secrets %v, want %v", tt.at.Sub(now), got, tt.want)
		}
	}
}

func waitFor(t *testing.T, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("condition not met within %s", d)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
