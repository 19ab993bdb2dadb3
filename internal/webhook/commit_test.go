package webhook

import (
	"context"
	"testing"
	"time"

	"github.com/google/uuid"

	"github.com/postgate/postgate/internal/event"
	"github.com/postgate/postgate/internal/testenv"
)

// TestPoisonRequestFailsAlone: when Postgres refuses one request's data,
// the other requests that shared its group commit are still stored and
// answered 200; only the poisoned one fails.
func TestPoisonRequestFailsAlone(t *testing.T) {
	db := testenv.Postgres(t)
	ctx := context.Background()
	tenantID := uuid.Must(uuid.NewV7()).String()
	for _, q := range []string{
		`INSERT INTO tenants (id, name) VALUES ('` + tenantID + `', 't')`,
		// A value this test declares poisonous, as a stand-in for any
		// value Postgres refuses.
		`ALTER TABLE events ADD CONSTRAINT no_poison CHECK (page_id <> '666') NOT VALID`,
	} {
		if _, err := db.Pool.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	in, err := NewIngestor(Config{}, fakeRouting{}, event.NewStore(db), nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	req := func(page string) *commitReq {
		return &commitReq{done: make(chan commitResult, 1), rows: []row{{New: event.New{
			ID: uuid.Must(uuid.NewV7()), TenantID: tenantID, PageID: page, AppID: "1", DedupKey: "m:" + page,
			Type: "messaging_postbacks", ReceivedAt: time.Now(), Body: []byte(`{}`),
		}}}}
	}
	good, poison, other := req("111"), req("666"), req("222")
	in.flush([]*commitReq{good, poison, other}, 3)

	for name, r := range map[string]*commitReq{"good": good, "other": other} {
		if res := <-r.done; res.err != nil || res.inserted != 1 {
			t.Errorf("%s request: inserted %d, err %v; want 1 and no error", name, res.inserted, res.err)
		}
	}
	if res := <-poison.done; res.err == nil {
		t.Error("the poisoned request reported success")
	}
	var n int
	if err := db.Pool.QueryRow(ctx, `SELECT count(*) FROM events`).Scan(&n); err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Fatalf("%d events stored, want 2", n)
	}
}
