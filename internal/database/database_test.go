package database_test

import (
	"context"
	"testing"

	"github.com/postgate/postgate/internal/database"
	"github.com/postgate/postgate/internal/testenv"
)

// emptyDatabase opens a database with no tables and a migrator for it.
func emptyDatabase(t *testing.T) (*database.DB, *database.Migrator) {
	t.Helper()
	db, err := database.Open(context.Background(), testenv.EmptyPostgresURL(t))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(db.Close)
	m, err := database.NewMigrator(db.SQL)
	if err != nil {
		t.Fatal(err)
	}
	return db, m
}

// TestMigrationsUpDownUp proves every migration applies to an empty
// database, rolls back cleanly, and applies again.
func TestMigrationsUpDownUp(t *testing.T) {
	ctx := context.Background()
	db, m := emptyDatabase(t)
	up, err := m.Up(ctx)
	if err != nil {
		t.Fatalf("first up: %v", err)
	}
	if len(up) == 0 {
		t.Fatal("first up applied no migrations")
	}
	down, err := m.DownAll(ctx)
	if err != nil {
		t.Fatalf("down: %v", err)
	}
	if len(down) != len(up) {
		t.Fatalf("down rolled back %d migrations, want %d", len(down), len(up))
	}
	var tables int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM information_schema.tables
		WHERE table_schema = 'public' AND table_name <> 'goose_db_version'`).Scan(&tables); err != nil {
		t.Fatal(err)
	}
	if tables != 0 {
		t.Fatalf("after down, %d tables remain", tables)
	}
	again, err := m.Up(ctx)
	if err != nil {
		t.Fatalf("second up: %v", err)
	}
	if len(again) != len(up) {
		t.Fatalf("second up applied %d migrations, want %d", len(again), len(up))
	}
	st, err := m.Status(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range st {
		if s.State != "applied" {
			t.Errorf("migration %d is %s after up", s.Source.Version, s.State)
		}
	}
}

// TestDeliveryQueueMigration moves a queue kept in events (migration 7)
// into deliveries (migration 8) and back: pending and failed events keep
// their schedule, a leased one stays held until its lease ends, a dead
// event keeps when it died, and settled events get no queue row.
func TestDeliveryQueueMigration(t *testing.T) {
	ctx := context.Background()
	db, m := emptyDatabase(t)
	if _, err := m.Up(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := m.DownTo(ctx, 7); err != nil {
		t.Fatalf("down to 7: %v", err)
	}
	exec := func(sql string, args ...any) {
		t.Helper()
		if _, err := db.Pool.Exec(ctx, sql, args...); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	tenant := "0190c5a0-0000-7000-8000-000000000001"
	exec(`INSERT INTO tenants (id, name, callback_url, signing_secret) VALUES ($1, 't', 'https://example.com/h', '\x00')`, tenant)
	exec(`INSERT INTO events (id, tenant_id, page_id, app_id, dedup_key, type, status, attempts, next_attempt_at, leased_until, received_at, delivered_at, body) VALUES
		('0190c5a0-0000-7000-8000-0000000000a1', $1, '1', '1', 'a', 'messaging_postbacks', 'pending', 0, '2026-01-01T00:00:01Z', NULL, '2026-01-01T00:00:00Z', NULL, '{}'),
		('0190c5a0-0000-7000-8000-0000000000a2', $1, '1', '1', 'b', 'messaging_postbacks', 'failed', 2, '2026-01-01T00:05:00Z', '2026-01-01T00:06:00Z', '2026-01-01T00:00:00Z', NULL, '{}'),
		('0190c5a0-0000-7000-8000-0000000000a3', $1, '1', '1', 'c', 'messaging_postbacks', 'delivered', 1, '2026-01-01T00:00:02Z', NULL, '2026-01-01T00:00:00Z', '2026-01-01T00:00:02Z', '{}'),
		('0190c5a0-0000-7000-8000-0000000000a4', $1, '1', '1', 'd', 'messaging_postbacks', 'dead', 12, '2026-01-03T00:00:00Z', NULL, '2026-01-01T00:00:00Z', NULL, '{}')`, tenant)

	if _, err := m.UpTo(ctx, 8); err != nil {
		t.Fatalf("up to 8 with data: %v", err)
	}
	queue := func() string {
		t.Helper()
		var s string
		if err := db.Pool.QueryRow(ctx, `SELECT coalesce(string_agg(format('%s %s %s', right(event_id::text, 2),
			to_char(next_attempt_at AT TIME ZONE 'UTC', 'HH24:MI:SS'), coalesce(to_char(leased_until AT TIME ZONE 'UTC', 'HH24:MI:SS'), '-')), ', ' ORDER BY event_id), '')
			FROM deliveries`).Scan(&s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	if got, want := queue(), "a1 00:00:01 -, a2 00:06:00 00:06:00"; got != want {
		t.Errorf("deliveries after up: got %q, want %q", got, want)
	}
	var deadAt string
	if err := db.Pool.QueryRow(ctx, `SELECT to_char(dead_at AT TIME ZONE 'UTC', 'YYYY-MM-DD') FROM events WHERE dedup_key = 'd'`).Scan(&deadAt); err != nil || deadAt != "2026-01-03" {
		t.Errorf("dead_at of the dead event: got %q (%v), want 2026-01-03", deadAt, err)
	}

	// Migration 9 numbers attempts over an event's life: a queued event's
	// count starts from the attempts it already has.
	exec(`INSERT INTO delivery_attempts (tenant_id, event_id, attempt, attempted_at, latency_us, error_class)
		SELECT $1, '0190c5a0-0000-7000-8000-0000000000a2', g, now(), 1000, 'http_5xx' FROM generate_series(1, 2) g`, tenant)
	if _, err := m.Up(ctx); err != nil {
		t.Fatalf("up from 8 with data: %v", err)
	}
	var attempted string
	if err := db.Pool.QueryRow(ctx, `SELECT string_agg(format('%s %s', right(event_id::text, 2), attempted), ', ' ORDER BY event_id)
		FROM deliveries`).Scan(&attempted); err != nil || attempted != "a1 0, a2 2" {
		t.Errorf("attempted after migration 9: got %q (%v), want %q", attempted, err, "a1 0, a2 2")
	}
	if _, err := m.DownTo(ctx, 7); err != nil {
		t.Fatalf("down to 7 with data: %v", err)
	}
	var got string
	if err := db.Pool.QueryRow(ctx, `SELECT string_agg(format('%s %s %s', dedup_key,
		to_char(next_attempt_at AT TIME ZONE 'UTC', 'MM-DD HH24:MI:SS'), coalesce(to_char(leased_until AT TIME ZONE 'UTC', 'HH24:MI:SS'), '-')), ', ' ORDER BY dedup_key)
		FROM events WHERE status <> 'delivered'`).Scan(&got); err != nil {
		t.Fatal(err)
	}
	if want := "a 01-01 00:00:01 -, b 01-01 00:06:00 00:06:00, d 01-03 00:00:00 -"; got != want {
		t.Errorf("events after down: got %q, want %q", got, want)
	}
}

// TestDeliveryQueueFollowsEvents checks the triggers that keep deliveries
// in step with events: an event inserted with work to do is queued in the
// same statement (a conflict skipped by ON CONFLICT is not), a settled one
// is not, and deleting events, directly or through a deleted tenant's
// cascade, deletes their queue rows and their attempts.
func TestDeliveryQueueFollowsEvents(t *testing.T) {
	ctx := context.Background()
	db := testenv.Postgres(t)
	count := func(sql string, args ...any) int {
		t.Helper()
		var n int
		if err := db.Pool.QueryRow(ctx, sql, args...).Scan(&n); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		return n
	}
	exec := func(sql string, args ...any) {
		t.Helper()
		if _, err := db.Pool.Exec(ctx, sql, args...); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	tenants := []string{"0190c5a0-0000-7000-8000-000000000001", "0190c5a0-0000-7000-8000-000000000002"}
	for _, id := range tenants {
		exec(`INSERT INTO tenants (id, name, callback_url, signing_secret) VALUES ($1, 't', 'https://example.com/h', '\x00')`, id)
	}
	insert := `INSERT INTO events (id, tenant_id, page_id, app_id, dedup_key, type, status, received_at, body)
		SELECT gen_random_uuid(), $1, '1', '1', k, 'messaging_postbacks', s, now(), '{}'
		FROM unnest($2::text[], $3::text[]) AS u(k, s)
		ON CONFLICT (tenant_id, page_id, dedup_key) DO NOTHING`
	for _, id := range tenants {
		exec(insert, id, []string{"a", "b", "c", "d"}, []string{"pending", "failed", "delivered", "dead"})
	}
	if n := count(`SELECT count(*) FROM deliveries WHERE tenant_id = $1`, tenants[0]); n != 2 {
		t.Errorf("queued after insert: got %d, want 2 (the pending and the failed event)", n)
	}
	exec(insert, tenants[0], []string{"a", "e"}, []string{"pending", "pending"})
	if n := count(`SELECT count(*) FROM deliveries WHERE tenant_id = $1`, tenants[0]); n != 3 {
		t.Errorf("queued after a conflicting insert: got %d, want 3 (only the new event added)", n)
	}
	if n := count(`SELECT count(*) FROM deliveries d JOIN events e ON e.tenant_id = d.tenant_id AND e.id = d.event_id`); n != 5 {
		t.Errorf("queue rows with their event: got %d, want 5", n)
	}
	exec(`INSERT INTO delivery_attempts (tenant_id, event_id, attempt, attempted_at, latency_us, error_class)
		SELECT tenant_id, id, 1, now(), 1000, 'ok' FROM events`)
	exec(`DELETE FROM events WHERE tenant_id = $1 AND dedup_key = 'a'`, tenants[0])
	if n := count(`SELECT count(*) FROM deliveries WHERE tenant_id = $1`, tenants[0]); n != 2 {
		t.Errorf("queued after deleting an event: got %d, want 2", n)
	}
	if n := count(`SELECT count(*) FROM delivery_attempts WHERE tenant_id = $1`, tenants[0]); n != 4 {
		t.Errorf("attempts after deleting an event: got %d, want 4", n)
	}
	exec(`DELETE FROM tenants WHERE id = $1`, tenants[0])
	for _, table := range []string{"deliveries", "delivery_attempts"} {
		if n := count(`SELECT count(*) FROM `+table+` WHERE tenant_id = $1`, tenants[0]); n != 0 {
			t.Errorf("%s after deleting the tenant: got %d, want 0", table, n)
		}
	}
	if n := count(`SELECT count(*) FROM deliveries WHERE tenant_id = $1`, tenants[1]); n != 2 {
		t.Errorf("the other tenant's queue: got %d, want 2", n)
	}
	if n := count(`SELECT count(*) FROM delivery_attempts WHERE tenant_id = $1`, tenants[1]); n != 4 {
		t.Errorf("the other tenant's attempts: got %d, want 4", n)
	}
}
