package event

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/postgate/postgate/internal/testenv"
)

// TestPlansSurviveStaleStatistics: the queue is vacuumed (and its
// statistics taken) while nearly empty, then fills up. The claim and the
// outcome write must still find each row by its key, never by probing a
// tenant's whole queue or all its events: with a key of (tenant_id,
// event_id) next to the due index (tenant_id, ...), a plan made on such
// statistics filtered the due index on event_id instead.
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
	exec(`INSERT INTO tenants (id, name, callback_url, signing_secret) VALUES ($1, 't', 'https://example.com/h', '\x00')`, tenantID)
	insert := `INSERT INTO events (id, tenant_id, page_id, app_id, dedup_key, type, received_at, body)
		SELECT gen_random_uuid(), $1, '1', '1', g::text || $2, 'messaging_postbacks', now(), '{}'
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
	claim := plan(claimSQL, []string{tenantID.String()}, []int32{128}, 128, time.Minute)
	outcome := plan(recordSQL, []uuid.UUID{tenantID}, []uuid.UUID{uuid.New()}, []time.Time{time.Now()},
		[]*string{nil}, []*int32{nil}, []time.Time{time.Now()})
	for name, p := range map[string]string{"claim": claim, "outcome": outcome} {
		if !strings.Contains(p, "deliveries_pkey") || !strings.Contains(p, "events_pkey") {
			t.Errorf("%s: the plan does not look rows up by key:\n%s", name, p)
		}
		if strings.Contains(p, "events_dedup_key") || strings.Contains(p, "Seq Scan on events") {
			t.Errorf("%s: the plan reads events other than by key:\n%s", name, p)
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
}
