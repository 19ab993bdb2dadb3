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
	if _, err := m.UpTo(ctx, 11); err != nil {
		t.Fatalf("up from 8 with data: %v", err)
	}
	var attempted string
	if err := db.Pool.QueryRow(ctx, `SELECT string_agg(format('%s %s', right(event_id::text, 2), attempted), ', ' ORDER BY event_id)
		FROM deliveries`).Scan(&attempted); err != nil || attempted != "a1 0, a2 2" {
		t.Errorf("attempted after migration 9: got %q (%v), want %q", attempted, err, "a1 0, a2 2")
	}

	// Migration 12 makes the tenant's callback its default endpoint, with
	// the tenant's id: the queued events are its deliveries, unchanged,
	// and the settled ones keep their history with it.
	if _, err := m.Up(ctx); err != nil {
		t.Fatalf("up from 11 with data: %v", err)
	}
	var endpoints string
	if err := db.Pool.QueryRow(ctx, `SELECT string_agg(format('%s %s %s %s', id = tenant_id, is_default, url, events), ', ')
		FROM endpoints`).Scan(&endpoints); err != nil || endpoints != "t t https://example.com/h {messaging_postbacks}" {
		t.Errorf("endpoints after migration 12: got %q (%v)", endpoints, err)
	}
	var deliveries string
	if err := db.Pool.QueryRow(ctx, `SELECT string_agg(format('%s %s %s %s %s', right(event_id::text, 2), endpoint_id = tenant_id, status,
		to_char(next_attempt_at AT TIME ZONE 'UTC', 'HH24:MI:SS'), attempted), ', ' ORDER BY event_id)
		FROM deliveries`).Scan(&deliveries); err != nil {
		t.Fatal(err)
	}
	if want := "a1 t pending 00:00:01 0, a2 t failed 00:06:00 2, a3 t delivered 00:00:00 0, a4 t dead 00:00:00 0"; deliveries != want {
		t.Errorf("deliveries after migration 12: got %q, want %q", deliveries, want)
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
// in step with events: an event inserted with work to do gets one delivery
// per endpoint of its tenant whose filters take it (type, "*", Page, test
// events), in the same statement (a conflict skipped by ON CONFLICT gets
// none); an event no endpoint takes gets none; deleting events,
// directly or through a deleted tenant's cascade, deletes their
// deliveries and attempts; deleting an endpoint deletes its deliveries and
// gives a pending event the status of the deliveries it has left.
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
	// Per tenant: a postbacks endpoint (the default), an every-type one
	// restricted to Page 1, and one for messages that refuses test events.
	endpoints := func(tid string) [3]string {
		base := tid[:len(tid)-4] + tid[len(tid)-1:] + "0e"
		return [3]string{base + "1", base + "2", base + "3"}
	}
	for _, id := range tenants {
		exec(`INSERT INTO tenants (id, name) VALUES ($1, 't')`, id)
		ep := endpoints(id)
		exec(`INSERT INTO endpoints (id, tenant_id, is_default, url, events, pages, deliver_test_events, signing_secret) VALUES
			($2, $1, true, 'https://example.com/a', '{messaging_postbacks}', '{}', true, '\x00'),
			($3, $1, false, 'https://example.com/b', '{*}', '{1}', true, '\x00'),
			($4, $1, false, 'https://example.com/c', '{messages}', '{}', false, '\x00')`, id, ep[0], ep[1], ep[2])
	}
	insert := `INSERT INTO events (id, tenant_id, page_id, app_id, dedup_key, type, test, status, received_at, body)
		SELECT gen_random_uuid(), $1, p, '1', k, ty, te, s, now(), '{}'
		FROM unnest($2::text[], $3::text[], $4::text[], $5::bool[], $6::text[]) AS u(k, p, ty, te, s)
		ON CONFLICT (page_id, dedup_key, tenant_id) DO NOTHING`
	for _, id := range tenants {
		exec(insert, id,
			[]string{"a", "b", "c", "d", "m", "t", "h", "x"},
			[]string{"1", "1", "1", "2", "2", "2", "1", "2"},
			[]string{"messaging_postbacks", "messaging_postbacks", "messaging_postbacks", "messaging_postbacks", "messages", "messages", "postgate.health", "message_reads"},
			[]bool{false, false, false, false, false, true, false, false},
			[]string{"pending", "failed", "delivered", "pending", "pending", "pending", "pending", "pending"})
	}
	fanout := func(tid string) string {
		t.Helper()
		var s string
		if err := db.Pool.QueryRow(ctx, `SELECT string_agg(format('%s:%s', e.dedup_key,
			(SELECT coalesce(string_agg(right(d.endpoint_id::text, 2), '+' ORDER BY d.endpoint_id),
				CASE WHEN e.status IN ('pending', 'failed') THEN 'dead' ELSE e.status END)
			 FROM deliveries d WHERE d.event_id = e.id)), ' ' ORDER BY e.dedup_key)
			FROM events e WHERE e.tenant_id = $1`, tid).Scan(&s); err != nil {
			t.Fatal(err)
		}
		return s
	}
	// a, b: postbacks on Page 1 (e1, e2); c settled; d: Page 2 (e1 only);
	// m: a message on Page 2 (e3); t: a test message (e3 refuses tests);
	// h: postgate.health ("*" does not take it); x: a read on Page 2.
	if got, want := fanout(tenants[0]), "a:e1+e2 b:e1+e2 c:delivered d:e1 h:dead m:e3 t:dead x:dead"; got != want {
		t.Errorf("fan-out: got %q, want %q", got, want)
	}
	exec(insert, tenants[0], []string{"a", "e"}, []string{"1", "1"}, []string{"messaging_postbacks", "messaging_postbacks"},
		[]bool{false, false}, []string{"pending", "pending"})
	if n := count(`SELECT count(*) FROM deliveries WHERE tenant_id = $1`, tenants[0]); n != 8 {
		t.Errorf("deliveries after a conflicting insert: got %d, want 8 (only the new event's 2 added)", n)
	}
	exec(`INSERT INTO delivery_attempts (tenant_id, event_id, endpoint_id, attempt, attempted_at, latency_us, error_class)
		SELECT d.tenant_id, d.event_id, d.endpoint_id, 1, now(), 1000, 'ok' FROM deliveries d`)
	exec(`DELETE FROM events WHERE tenant_id = $1 AND dedup_key = 'a'`, tenants[0])
	if n := count(`SELECT count(*) FROM deliveries WHERE tenant_id = $1`, tenants[0]); n != 6 {
		t.Errorf("deliveries after deleting an event: got %d, want 6", n)
	}
	if n := count(`SELECT count(*) FROM delivery_attempts WHERE tenant_id = $1`, tenants[0]); n != 6 {
		t.Errorf("attempts after deleting an event: got %d, want 6", n)
	}
	// Deleting e1 (the API marks it deleted): its deliveries still to make
	// go, so d (only e1) has nothing left and reads as dead; b keeps e2.
	exec(`UPDATE endpoints SET deleted_at = now() WHERE id = $1`, endpoints(tenants[0])[0])
	if got, want := fanout(tenants[0]), "b:e2 c:delivered d:dead e:e2 h:dead m:e3 t:dead x:dead"; got != want {
		t.Errorf("after deleting an endpoint: got %q, want %q", got, want)
	}
	exec(`DELETE FROM tenants WHERE id = $1`, tenants[0])
	for _, table := range []string{"deliveries", "delivery_attempts", "endpoints"} {
		col := "tenant_id"
		if n := count(`SELECT count(*) FROM `+table+` WHERE `+col+` = $1`, tenants[0]); n != 0 {
			t.Errorf("%s after deleting the tenant: got %d, want 0", table, n)
		}
	}
	if got, want := fanout(tenants[1]), "a:e1+e2 b:e1+e2 c:delivered d:e1 h:dead m:e3 t:dead x:dead"; got != want {
		t.Errorf("the other tenant's deliveries: got %q, want %q", got, want)
	}
}
