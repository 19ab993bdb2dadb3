package event

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"gorm.io/gorm"

	"github.com/postgate/postgate/internal/database"
	"github.com/postgate/postgate/internal/testenv"
)

// TestPlansSurviveStaleStatistics: the queue is vacuumed (and its
// statistics taken) while nearly empty, then fills up. The claim, the
// outcome write and the status refresh must still find each row by its
// key, never by probing an endpoint's whole queue or all its events: with a
// key of (tenant_id, event_id) next to the due index (tenant_id, ...), a
// plan made on such statistics filtered the due index on event_id
// instead. The searches people make (by mid, by sender, by endpoint) must
// stay index lookups among a tenant's 20,000 events.
func TestPlansSurviveStaleStatistics(t *testing.T) {
	ctx := context.Background()
	db := testenv.Postgres(t)
	exec := func(sql string, args ...any) {
		t.Helper()
		if _, err := db.Pool.Exec(ctx, sql, args...); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	tenantID := uuid.Must(uuid.NewV7())
	other := uuid.Must(uuid.NewV7())
	exec(`INSERT INTO tenants (id, name) VALUES ($1, 't')`, tenantID)
	exec(`INSERT INTO endpoints (id, tenant_id, is_default, url, events, ordering, signing_secret) VALUES
		($1, $1, true, 'https://example.com/h', '{*}', 'none', '\x00'),
		($2, $1, false, 'https://example.com/i', '{*}', 'conversation', '\x00')`, tenantID, other)
	insert := `INSERT INTO events (id, tenant_id, page_id, app_id, dedup_key, type, received_at, body, sender)
		SELECT gen_random_uuid(), $1, '1', '1', g::text || $2, 'messaging_postbacks', now(), '{}', 'psid-' || (g % 500)
		FROM generate_series(1, $3::int) g`
	exec(insert, tenantID, "a", 1)
	exec(`VACUUM ANALYZE deliveries`)
	exec(`VACUUM ANALYZE events`)
	exec(insert, tenantID, "b", 20000)

	plan := func(sql string, args ...any) string {
		t.Helper()
		rows, err := db.Pool.Query(ctx, "EXPLAIN "+sql, append([]any{replan}, args...)...)
		if err != nil {
			t.Fatalf("explain: %v", err)
		}
		lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatalf("explain: %v", err)
		}
		return strings.Join(lines, "\n")
	}
	claim := plan(claimSQL, []uuid.UUID{tenantID}, []int32{128}, 128, time.Minute)
	// An ordered endpoint's claim asks, of each candidate, whether anything
	// is open before it in its conversation: one probe of the conversation
	// index, not a read of the conversation's deliveries.
	ordered := plan(claimSQL, []uuid.UUID{other}, []int32{128}, 128, time.Minute)
	if !strings.Contains(ordered, "deliveries_conversation_idx") || !strings.Contains(ordered, "deliveries_due_idx") ||
		strings.Contains(ordered, "Seq Scan") {
		t.Errorf("ordered claim: the plan does not check the conversation by its index:\n%s", ordered)
	}
	outcome := plan(recordSQL, []uuid.UUID{tenantID}, []uuid.UUID{uuid.New()}, []time.Time{time.Now()},
		[]*string{nil}, []*int32{nil}, []time.Time{time.Now()})
	purge := plan(purgeCandidatesSQL, tenantID, uuid.Must(uuid.NewV7()), time.Now(), "delivered", 5000, nil)
	for name, p := range map[string]string{"claim": claim, "outcome": outcome, "purge": purge} {
		if !strings.Contains(p, "deliveries_pkey") && !strings.Contains(p, "deliveries_due_idx") {
			t.Errorf("%s: the plan does not look deliveries up by key:\n%s", name, p)
		}
		if strings.Contains(p, "events_dedup_key") || strings.Contains(p, "Seq Scan on events") || strings.Contains(p, "Seq Scan on deliveries") {
			t.Errorf("%s: the plan reads rows other than by key:\n%s", name, p)
		}
	}
	for name, p := range map[string]string{"claim": claim, "purge": purge} {
		if !strings.Contains(p, "events_pkey") {
			t.Errorf("%s: the plan does not look events up by key:\n%s", name, p)
		}
	}
	if !strings.Contains(claim, "deliveries_due_idx") {
		t.Errorf("claim: the plan does not take due rows from the due index:\n%s", claim)
	}

	// A search by mid among a tenant's 20,000 events probes the unique
	// dedup key once per Page, never reads the tenant's events one by one.
	byMid := plan(idsByMidSQL, tenantID, []string{"1", "2", "3"}, MidKey("12345b"))
	if !strings.Contains(byMid, "events_dedup_key") || strings.Contains(byMid, "Seq Scan on events") || strings.Contains(byMid, "events_pkey") {
		t.Errorf("search by mid: the plan does not look the key up:\n%s", byMid)
	}
	// A search by sender reads the sender index, in id order.
	bySender := planList(t, db, Filter{Sender: "psid-7"}, tenantID)
	if !strings.Contains(bySender, "events_sender_idx") || strings.Contains(bySender, "Seq Scan") || strings.Contains(bySender, "deliveries_due_idx") {
		t.Errorf("search by sender: the plan does not use the sender index:\n%s", bySender)
	}
	t.Logf("by sender:\n%s", bySender)
	// A search by endpoint reads that endpoint's deliveries by key.
	byEndpoint := planList(t, db, Filter{EndpointID: other, Status: StatusPending}, tenantID)
	t.Logf("by endpoint:\n%s", byEndpoint)
	if !strings.Contains(byEndpoint, "deliveries_pkey") || strings.Contains(byEndpoint, "Seq Scan") || strings.Contains(byEndpoint, "deliveries_due_idx") ||
		!strings.Contains(byEndpoint, "(id = fd.event_id)") {
		t.Errorf("search by endpoint: the plan does not use the deliveries key:\n%s", byEndpoint)
	}
}

// TestOverviewPlan: the console's overview counts a day of events and
// their deliveries by index ranges (each tenant's primary key from a
// UUIDv7 of a day ago; each endpoint's deliveries key) and the queue by
// its partial due index, never by reading whole tables, for one tenant
// and for all.
func TestOverviewPlan(t *testing.T) {
	ctx := context.Background()
	db := testenv.Postgres(t)
	tenantID := uuid.Must(uuid.NewV7())
	for _, sql := range []string{
		`INSERT INTO tenants (id, name) VALUES ($1, 't')`,
		`INSERT INTO endpoints (id, tenant_id, is_default, url, events, signing_secret) VALUES ($1, $1, true, 'https://example.com/h', '{*}', '\x00')`,
		// A week of 20,000 events, ids made like the ingress's (UUIDv7 of
		// their arrival), nearly all delivered: the last day holds 1/7.
		`INSERT INTO events (id, tenant_id, page_id, app_id, dedup_key, type, received_at, body)
			SELECT (lpad(to_hex((extract(epoch FROM t) * 1000)::bigint), 12, '0') || '7' || substr(md5(g::text), 1, 3) || '8' ||
				substr(md5(g::text), 4, 15))::uuid, $1, '1', '1', g::text, 'messaging_postbacks', t, '{}'
			FROM generate_series(1, 20000) g, LATERAL (SELECT now() - (g * interval '30 seconds') AS t) x`,
		`UPDATE deliveries SET status = 'delivered', settled_at = now() WHERE random() < 0.99`,
		`ANALYZE events`, `ANALYZE deliveries`,
	} {
		var args []any
		if strings.Contains(sql, "$1") {
			args = []any{tenantID}
		}
		if _, err := db.Pool.Exec(ctx, sql, args...); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	now := time.Now()
	for _, tid := range []*uuid.UUID{&tenantID, nil} {
		rows, err := db.Pool.Query(ctx, "EXPLAIN "+overviewSQL, replan, tid, uuidV7Floor(now.Add(-24*time.Hour)), uuidV7Floor(now.Add(-time.Hour)))
		if err != nil {
			t.Fatalf("explain: %v", err)
		}
		lines, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			t.Fatal(err)
		}
		p := strings.Join(lines, "\n")
		if strings.Contains(p, "Seq Scan on events") || strings.Contains(p, "Seq Scan on deliveries") ||
			!strings.Contains(p, "events_pkey") || !strings.Contains(p, "deliveries_pkey") || !strings.Contains(p, "deliveries_due_idx") {
			t.Errorf("overview (tenant %v): the plan reads rows other than by index ranges:\n%s", tid != nil, p)
		}
	}
	o, err := NewStore(db).Overview(ctx, tenantID.String(), now)
	if err != nil {
		t.Fatal(err)
	}
	if o.Accepted24h < 2878 || o.Accepted24h > 2880 || o.Accepted1h < 118 || o.Accepted1h > 120 || o.Backlog == 0 || o.Backlog > 400 ||
		o.Delivered24h < 2700 || o.Delivered24h > o.Accepted24h {
		t.Errorf("overview: %+v, want 2880 events in the day (one per 30 s), 120 in the hour, about 1%% queued", o)
	}
}

// planList is the plan of List's query for f, as GORM would send it.
func planList(t *testing.T, db *database.DB, f Filter, tenantID uuid.UUID) string {
	t.Helper()
	stmt := listQuery(db.Gorm.Session(&gorm.Session{DryRun: true}), tenantID, f, nil, uuid.Nil, 51).Find(&[]queuedEventRow{}).Statement
	var lines []string
	if err := db.Gorm.Raw("EXPLAIN "+stmt.SQL.String(), stmt.Vars...).Scan(&lines).Error; err != nil {
		t.Fatalf("explain: %v", err)
	}
	return strings.Join(lines, "\n")
}
