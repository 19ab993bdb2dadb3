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
	exec(`INSERT INTO endpoints (id, tenant_id, is_default, url, events, signing_secret) VALUES
		($1, $1, true, 'https://example.com/h', '{*}', '\x00'), ($2, $1, false, 'https://example.com/i', '{*}', '\x00')`, tenantID, other)
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
