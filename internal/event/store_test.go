package event

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/postgate/postgate/internal/database"
	"github.com/postgate/postgate/internal/testenv"
)

func TestRowsMatchSchema(t *testing.T) {
	testenv.RowsMatchSchema(t, testenv.Postgres(t), map[reflect.Type][]string{}, &eventRow{}, &attemptRow{}, &quarantineRow{})
}

// TestStatusesMatchSchema: the statuses this package's SQL spells are
// exactly the ones the schema's CHECK constraint allows.
func TestStatusesMatchSchema(t *testing.T) {
	db := testenv.Postgres(t)
	var def string
	if err := db.Pool.QueryRow(context.Background(), `SELECT pg_get_constraintdef(oid) FROM pg_constraint
		WHERE conrelid = 'events'::regclass AND contype = 'c' AND pg_get_constraintdef(oid) LIKE '%status%'`).Scan(&def); err != nil {
		t.Fatal(err)
	}
	for _, s := range Statuses {
		if !strings.Contains(def, "'"+string(s)+"'") {
			t.Errorf("status %s is not allowed by %s", s, def)
		}
	}
	if got, want := strings.Count(def, "'"), 2*len(Statuses); got != want {
		t.Errorf("the constraint %s names %d statuses, the package %d", def, got/2, len(Statuses))
	}
}

// fixture is two tenants with events (pending, delivered, dead), attempts
// and a quarantined body each.
type fixture struct {
	db     *database.DB
	store  *Store
	a, b   string
	events map[string][]uuid.UUID // per tenant: pending, delivered, dead
	qrn    map[string]uuid.UUID
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	db := testenv.Postgres(t)
	f := &fixture{db: db, store: NewStore(db), events: map[string][]uuid.UUID{}, qrn: map[string]uuid.UUID{}}
	ctx := context.Background()
	exec := func(sql string, args ...any) {
		t.Helper()
		if _, err := db.Pool.Exec(ctx, sql, args...); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	old := time.Now().Add(-48 * time.Hour)
	for i := range 2 {
		tid := uuid.Must(uuid.NewV7()).String()
		exec(`INSERT INTO tenants (id, name) VALUES ($1, $2)`, tid, fmt.Sprint("t", i))
		exec(`INSERT INTO endpoints (id, tenant_id, is_default, url, events, signing_secret)
			VALUES ($1, $1, true, 'https://example.com/h', '{*}', '\x00')`, tid)
		var b Batch
		var ids []uuid.UUID
		for j, typ := range []string{TypePostbacks, TypeMessages, TypeReads} {
			id := uuid.Must(uuid.NewV7())
			ids = append(ids, id)
			b.Add(&New{ID: id, TenantID: tid, PageID: "100", AppID: "1", DedupKey: fmt.Sprint("m:", j), Type: typ, ReceivedAt: old, Body: []byte(`{}`)})
		}
		if err := f.store.Insert(ctx, &b, func([16]byte) {}); err != nil {
			t.Fatal(err)
		}
		exec(`UPDATE deliveries SET status = 'delivered', attempts = 1, settled_at = $2 WHERE event_id = $1`, ids[1], old)
		exec(`UPDATE deliveries SET status = 'dead', attempts = 3, settled_at = $2 WHERE event_id = $1`, ids[2], old)
		exec(`UPDATE events SET status = 'delivered', attempts = 1, delivered_at = $2 WHERE id = $1`, ids[1], old)
		exec(`UPDATE events SET status = 'dead', attempts = 3, dead_at = $2 WHERE id = $1`, ids[2], old)
		exec(`INSERT INTO delivery_attempts (tenant_id, event_id, endpoint_id, attempt, attempted_at, latency_us, error_class)
			SELECT $1, id, $1, 1, now(), 1000, 'http_5xx' FROM unnest($2::uuid[]) id`, tid, ids)
		q := uuid.Must(uuid.NewV7())
		if err := f.store.Quarantine(ctx, Quarantined{ID: q, TenantID: tid, AppID: "1", Reason: "not JSON", Body: []byte("x"), ReceivedAt: old}); err != nil {
			t.Fatal(err)
		}
		f.events[tid], f.qrn[tid] = ids, q
		if i == 0 {
			f.a = tid
		} else {
			f.b = tid
		}
	}
	return f
}

// snapshot is everything stored of a tenant's events.
func (f *fixture) snapshot(t *testing.T, tenantID string) string {
	t.Helper()
	var s string
	err := f.db.Pool.QueryRow(context.Background(), `SELECT
		(SELECT string_agg(format('%s %s %s %s %s', id, status, attempts, delivered_at, dead_at), ';' ORDER BY id) FROM events WHERE tenant_id = $1) ||
		(SELECT coalesce(string_agg(format('%s %s %s %s %s', event_id, status, next_attempt_at, attempts, attempted), ';' ORDER BY event_id), '') FROM deliveries WHERE tenant_id = $1) ||
		(SELECT count(*)::text FROM delivery_attempts WHERE tenant_id = $1) ||
		(SELECT string_agg(id::text, ';') FROM quarantine WHERE tenant_id = $1)`, tenantID).Scan(&s)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// TestTenantScoping calls every tenant-scoped read and write of the store
// with tenant A's id on tenant B's data: none finds, returns or changes
// any of it.
func TestTenantScoping(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	a, b := f.a, f.b
	before := f.snapshot(t, b)
	bPending, bDelivered, bDead := f.events[b][0], f.events[b][1], f.events[b][2]

	list, err := f.store.List(ctx, a, Filter{}, database.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range list.Items {
		if e.TenantID != a || slices.Contains(f.events[b], e.ID) {
			t.Errorf("List of A returned %s of tenant %s", FormatID(e.ID), e.TenantID)
		}
	}
	if len(list.Items) != 3 {
		t.Errorf("List of A: got %d events, want its 3", len(list.Items))
	}
	for _, id := range f.events[b] {
		if _, _, err := f.store.Get(ctx, a, id); !errors.Is(err, ErrNotFound) {
			t.Errorf("Get of B's event under A: got %v, want ErrNotFound", err)
		}
		if _, err := f.store.Replay(ctx, a, id, uuid.Nil); !errors.Is(err, ErrNotFound) {
			t.Errorf("Replay of B's event under A: got %v, want ErrNotFound", err)
		}
	}
	for _, st := range Statuses {
		if n, err := f.store.ReplayMany(ctx, a, ReplayFilter{Status: st}); err != nil || n != 1 && st != StatusFailed || n != 0 && st == StatusFailed {
			t.Errorf("ReplayMany of A's %s events: got %d, %v; want only A's own", st, n, err)
		}
	}
	ql, err := f.store.ListQuarantine(ctx, a, database.ListOptions{})
	if err != nil || len(ql.Items) != 1 || ql.Items[0].ID != f.qrn[a] {
		t.Errorf("ListQuarantine of A: got %+v, %v; want A's one body", ql.Items, err)
	}
	if _, err := f.store.GetQuarantined(ctx, a, f.qrn[b]); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetQuarantined of B's body under A: got %v, want ErrNotFound", err)
	}
	if after := f.snapshot(t, b); after != before {
		t.Errorf("B's data changed through A's reads and replays:\nbefore %s\nafter  %s", before, after)
	}
	// Make B's queue expirable, then expire and purge as A.
	if _, err := f.db.Pool.Exec(ctx, `UPDATE deliveries SET attempts = 1, queued_at = now() - interval '3 days'`); err != nil {
		t.Fatal(err)
	}
	before = f.snapshot(t, b)
	if _, err := f.store.Expire(ctx, uuid.MustParse(a), time.Now(), time.Now()); err != nil {
		t.Fatal(err)
	}
	for _, st := range []Status{StatusDelivered, StatusDead} {
		if _, err := f.store.Purge(ctx, a, st, time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	if after := f.snapshot(t, b); after != before {
		t.Errorf("B's data changed through A's calls:\nbefore %s\nafter  %s", before, after)
	}
	// B's own calls still find B's data: the scoping is by tenant, not a
	// blanket refusal.
	if _, _, err := f.store.Get(ctx, b, bPending); err != nil {
		t.Errorf("Get of B's event under B: %v", err)
	}
	if n, err := f.store.Purge(ctx, b, StatusDelivered, time.Now()); err != nil || n != 1 {
		t.Errorf("Purge of B's delivered: got %d, %v; want 1", n, err)
	}
	if _, _, err := f.store.Get(ctx, b, bDelivered); !errors.Is(err, ErrNotFound) {
		t.Errorf("B's purged event: got %v, want ErrNotFound", err)
	}
	if e, err := f.store.Replay(ctx, b, bDead, uuid.Nil); err != nil || e.Status != StatusPending {
		t.Errorf("Replay of B's dead event under B: got %+v, %v", e, err)
	}
}

// TestDeleteTenantClearsQueue: deleting a tenant removes its events, their
// queue rows and attempts, and its quarantine, and nothing of another
// tenant.
func TestDeleteTenantClearsQueue(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	before := f.snapshot(t, f.b)
	if _, err := f.db.Pool.Exec(ctx, `DELETE FROM tenants WHERE id = $1`, f.a); err != nil {
		t.Fatal(err)
	}
	var n int
	if err := f.db.Pool.QueryRow(ctx, `SELECT (SELECT count(*) FROM events WHERE tenant_id = $1) + (SELECT count(*) FROM deliveries WHERE tenant_id = $1)
		+ (SELECT count(*) FROM delivery_attempts WHERE tenant_id = $1) + (SELECT count(*) FROM quarantine WHERE tenant_id = $1)`, f.a).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 0 {
		t.Errorf("rows of the deleted tenant left: %d", n)
	}
	if after := f.snapshot(t, f.b); after != before {
		t.Errorf("the other tenant's data changed:\nbefore %s\nafter  %s", before, after)
	}
}

// TestExpireGuard: Expire ends only due work queued before the cutoff that
// the endpoint was tried with since it was queued: an attempt of its own,
// or a failure of the endpoint after it was queued. An event replayed (or
// accepted) after the endpoint's last failure and never attempted stays.
func TestExpireGuard(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	tid := f.a
	var b Batch
	ids := map[string]uuid.UUID{}
	for _, name := range []string{"attempted", "unattempted, queued before the failure", "unattempted, queued after the failure", "attempted, young"} {
		id := uuid.Must(uuid.NewV7())
		ids[name] = id
		b.Add(&New{ID: id, TenantID: tid, PageID: "200", AppID: "1", DedupKey: name, Type: TypePostbacks, ReceivedAt: time.Now(), Body: []byte(`{}`)})
	}
	if err := f.store.Insert(ctx, &b, func([16]byte) {}); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	set := func(name string, queuedAgo time.Duration, attempts int) {
		t.Helper()
		if _, err := f.db.Pool.Exec(ctx, `UPDATE deliveries SET queued_at = $2, attempts = $3, next_attempt_at = now() - interval '1 minute' WHERE event_id = $1`,
			ids[name], now.Add(-queuedAgo), attempts); err != nil {
			t.Fatal(err)
		}
	}
	set("attempted", 5*time.Hour, 1)
	set("unattempted, queued before the failure", 5*time.Hour, 0)
	set("unattempted, queued after the failure", 3*time.Hour, 0)
	set("attempted, young", time.Hour, 1)
	// (The fixture's own pending event of A was queued just now: too young.)
	lastFailure := now.Add(-4 * time.Hour)
	n, err := f.store.Expire(ctx, uuid.MustParse(tid), now.Add(-2*time.Hour), lastFailure)
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Errorf("expired %d, want 2 (the attempted one and the one queued before the failure)", n)
	}
	for name, id := range ids {
		want := name == "attempted" || name == "unattempted, queued before the failure"
		e, _, err := f.store.Get(ctx, tid, id)
		if err != nil {
			t.Fatal(err)
		}
		if got := e.Status == StatusDead; got != want {
			t.Errorf("%s: got %s, want dead %v", name, e.Status, want)
		}
	}
	// Without a known failure, only events attempted since they were
	// queued expire.
	set("unattempted, queued after the failure", 3*time.Hour, 0)
	if n, err := f.store.Expire(ctx, uuid.MustParse(tid), now.Add(-2*time.Hour), time.Time{}); err != nil || n != 0 {
		t.Errorf("expire without a known failure: got %d, %v; want 0", n, err)
	}
}

// TestDeleteTenantKeepsLockOrder: an outcome write holds a queue row and
// then updates its event, while the tenant is being deleted. The delete
// must take the queue rows before the events (migration 11), as every
// other writer does; the other way round (the cascade reaching events
// first) the two deadlock and Postgres aborts one of them.
func TestDeleteTenantKeepsLockOrder(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	pending := f.events[f.a][0]
	tx, err := f.db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer tx.Rollback(ctx) //nolint:errcheck // after Commit it is a no-op
	if _, err := tx.Exec(ctx, `SELECT 1 FROM deliveries WHERE event_id = $1 FOR UPDATE`, pending); err != nil {
		t.Fatal(err)
	}
	deleted := make(chan error, 1)
	go func() {
		_, err := f.db.Pool.Exec(ctx, `DELETE FROM tenants WHERE id = $1`, f.a)
		deleted <- err
	}()
	// Wait until the delete waits for the queue row the outcome holds.
	for deadline := time.Now().Add(10 * time.Second); ; {
		var waiting int
		if err := f.db.Pool.QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity
			WHERE datname = current_database() AND wait_event_type = 'Lock' AND query LIKE 'DELETE FROM tenants%'`).Scan(&waiting); err != nil {
			t.Fatal(err)
		}
		if waiting > 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the tenant delete never waited for the held queue row")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if _, err := tx.Exec(ctx, `UPDATE events SET status = 'delivered' WHERE id = $1`, pending); err != nil {
		t.Fatalf("the outcome's event update: %v (the delete locked events before the queue)", err)
	}
	if err := tx.Commit(ctx); err != nil {
		t.Fatalf("the outcome's commit: %v", err)
	}
	if err := <-deleted; err != nil {
		t.Fatalf("the tenant delete: %v", err)
	}
}

// TestListByMid: a search by mid finds the tenant's event with that mid
// among the Pages given, and nothing of another tenant's with the same mid.
func TestListByMid(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	// The fixture's events of both tenants have the mids "0", "1", "2" on
	// Page 100.
	tests := []struct {
		name   string
		tenant string
		filter Filter
		want   []uuid.UUID
	}{
		{"A's mid 1", f.a, Filter{Mid: "1", MidPages: []string{"100", "999"}}, f.events[f.a][1:2]},
		{"B's mid 1", f.b, Filter{Mid: "1", MidPages: []string{"100"}}, f.events[f.b][1:2]},
		{"in the Page named", f.a, Filter{Mid: "2", PageID: "100"}, f.events[f.a][2:3]},
		{"in another Page", f.a, Filter{Mid: "2", PageID: "999"}, nil},
		{"no Pages", f.a, Filter{Mid: "1"}, nil},
		{"unknown mid", f.a, Filter{Mid: "7", MidPages: []string{"100"}}, nil},
		{"with a status that is not its", f.a, Filter{Mid: "1", MidPages: []string{"100"}, Status: StatusDead}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r, err := f.store.List(ctx, tt.tenant, tt.filter, database.ListOptions{})
			if err != nil {
				t.Fatal(err)
			}
			var got []uuid.UUID
			for _, e := range r.Items {
				got = append(got, e.ID)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
}

// TestSweepOrphans: a delivery of an endpoint that no longer exists (an
// insert raced the endpoint's deletion) is removed and its event, with
// nothing left to do, is dead; a delivery of a live endpoint stays.
func TestSweepOrphans(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	a := f.events[f.a][0] // pending, to tenant A's endpoint
	orphan := uuid.Must(uuid.NewV7())
	if _, err := f.db.Pool.Exec(ctx, `UPDATE deliveries SET endpoint_id = $2 WHERE event_id = $1`, a, orphan); err != nil {
		t.Fatal(err)
	}
	before := f.snapshot(t, f.b)
	n, err := f.store.SweepOrphans(ctx)
	if err != nil || n != 1 {
		t.Fatalf("sweep: got %d, %v; want 1", n, err)
	}
	e, _, err := f.store.Get(ctx, f.a, a)
	if err != nil || e.Status != StatusDead || len(e.Deliveries) != 0 {
		t.Errorf("orphaned event: got %s with %d deliveries (%v), want dead with none", e.Status, len(e.Deliveries), err)
	}
	if after := f.snapshot(t, f.b); after != before {
		t.Errorf("the other tenant changed:\nbefore %s\nafter  %s", before, after)
	}
	if n, err := f.store.SweepOrphans(ctx); err != nil || n != 0 {
		t.Errorf("second sweep: got %d, %v; want 0", n, err)
	}
}

// TestPurgeKeepsOpenDeliveries: an event dead at one endpoint while
// another still has its delivery to make (behind a disabled endpoint, say)
// is not purged with the dead: that delivery is neither delivered nor dead
// yet. Once it settles, the event goes.
func TestPurgeKeepsOpenDeliveries(t *testing.T) {
	ctx := context.Background()
	f := newFixture(t)
	dead := f.events[f.a][2]
	other := uuid.Must(uuid.NewV7())
	if _, err := f.db.Pool.Exec(ctx, `INSERT INTO endpoints (id, tenant_id, url, events, signing_secret)
		VALUES ($2, $1, 'https://example.com/o', '{*}', '\x00')`, f.a, other); err != nil {
		t.Fatal(err)
	}
	if _, err := f.db.Pool.Exec(ctx, `INSERT INTO deliveries (tenant_id, event_id, endpoint_id) VALUES ($1, $3, $2)`, f.a, other, dead); err != nil {
		t.Fatal(err)
	}
	if e, _, err := f.store.Get(ctx, f.a, dead); err != nil || e.Status != StatusDead {
		t.Fatalf("the event: got %s, %v; want dead (its worst delivery)", e.Status, err)
	}
	if n, err := f.store.Purge(ctx, f.a, StatusDead, time.Now()); err != nil || n != 0 {
		t.Errorf("purge with a delivery still to make: got %d, %v; want 0", n, err)
	}
	if _, err := f.db.Pool.Exec(ctx, `UPDATE deliveries SET status = 'delivered', settled_at = now() - interval '1 hour'
		WHERE endpoint_id = $1`, other); err != nil {
		t.Fatal(err)
	}
	if n, err := f.store.Purge(ctx, f.a, StatusDead, time.Now()); err != nil || n != 1 {
		t.Errorf("purge once it settled: got %d, %v; want 1", n, err)
	}
}
