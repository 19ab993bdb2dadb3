package event

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"

	"github.com/postgate/postgate/internal/database"
	"github.com/postgate/postgate/internal/testenv"
)

// orderedFixture is a tenant with an ordered endpoint and an unordered one,
// both taking every Meta type.
type orderedFixture struct {
	t                  *testing.T
	db                 *database.DB
	store              *Store
	tenant             string
	ordered, unordered uuid.UUID
	n                  int
}

func newOrderedFixture(t *testing.T) *orderedFixture {
	t.Helper()
	db := testenv.Postgres(t)
	f := &orderedFixture{t: t, db: db, store: NewStore(db), tenant: uuid.Must(uuid.NewV7()).String(),
		ordered: uuid.Must(uuid.NewV7()), unordered: uuid.Must(uuid.NewV7())}
	f.exec(`INSERT INTO tenants (id, name) VALUES ($1, 't')`, f.tenant)
	f.exec(`INSERT INTO endpoints (id, tenant_id, is_default, url, events, ordering, signing_secret) VALUES
		($2, $1, true, 'https://example.com/u', '{*}', 'none', '\x00'),
		($3, $1, false, 'https://example.com/o', '{*}', 'conversation', '\x00')`, f.tenant, f.unordered, f.ordered)
	return f
}

func (f *orderedFixture) exec(sql string, args ...any) {
	f.t.Helper()
	if _, err := f.db.Pool.Exec(context.Background(), sql, args...); err != nil {
		f.t.Fatalf("%s: %v", sql, err)
	}
}

// msg is one event of person on page ("" for none).
type msg struct{ page, person string }

// insert stores the events in one statement, ids in the order given.
func (f *orderedFixture) insert(msgs ...msg) []uuid.UUID {
	f.t.Helper()
	var b Batch
	ids := make([]uuid.UUID, len(msgs))
	for i, m := range msgs {
		ids[i] = uuid.Must(uuid.NewV7())
		f.n++
		b.Add(&New{ID: ids[i], TenantID: f.tenant, PageID: m.page, AppID: "1", DedupKey: fmt.Sprint("m:", f.n),
			Type: TypeMessages, ReceivedAt: time.Now(), Body: []byte(`{}`), Sender: m.person})
	}
	if err := f.store.Insert(context.Background(), &b, func([16]byte) {}); err != nil {
		f.t.Fatal(err)
	}
	return ids
}

// claim claims what endpoint ep may have now, as a worker would, and
// returns the events in claim order.
func (f *orderedFixture) claim(ep uuid.UUID, quota int) []*Claimed {
	f.t.Helper()
	var got []*Claimed
	err := f.store.Claim(context.Background(), []uuid.UUID{ep}, []int32{int32(quota)}, quota, time.Minute,
		func(c *Claimed) { got = append(got, c) })
	if err != nil {
		f.t.Fatal(err)
	}
	return got
}

func (f *orderedFixture) settle(c *Claimed, st Status, at time.Time) {
	f.t.Helper()
	err := f.store.Record(context.Background(), []Outcome{{TenantID: c.TenantID, EndpointID: c.EndpointID, ID: c.ID,
		Lease: c.Lease, Status: st, Attempts: c.Attempts + 1, At: at,
		Attempt: &Attempt{Number: c.Number, At: time.Now(), StatusCode: 500, Class: "http_5xx"}}})
	if err != nil {
		f.t.Fatal(err)
	}
}

// want claims what the ordered endpoint may have now and fails unless it
// is exactly want, in that order.
func (f *orderedFixture) want(want []uuid.UUID) []*Claimed {
	f.t.Helper()
	got := f.claim(f.ordered, 10)
	if !slices.Equal(ids(got), want) {
		f.t.Fatalf("claimed %v, want %v", ids(got), want)
	}
	return got
}

func ids(cs []*Claimed) []uuid.UUID {
	out := make([]uuid.UUID, len(cs))
	for i, c := range cs {
		out[i] = c.ID
	}
	return out
}

// TestConversationHeads: an ordered endpoint hands out only the head of
// each conversation, whatever holds the head (a lease, a retry scheduled
// later), and the next one once the head is delivered or dead; events
// without a person, and the unordered endpoint, are not held.
func TestConversationHeads(t *testing.T) {
	f := newOrderedFixture(t)
	a := f.insert(msg{"1", "alice"}, msg{"1", "bob"}, msg{"1", "alice"}, msg{"1", ""}, msg{"2", "alice"})
	a2 := f.insert(msg{"1", "alice"})[0]

	// The unordered endpoint takes all six at once (the control).
	if got := f.claim(f.unordered, 10); len(got) != 6 {
		t.Fatalf("unordered endpoint: claimed %d, want 6", len(got))
	}
	// The ordered one: alice's first on Page 1, bob's, the event without
	// a person, and alice's on Page 2 (another conversation).
	first := f.claim(f.ordered, 10)
	want := []uuid.UUID{a[0], a[1], a[3], a[4]}
	if got := ids(first); !sameSet(got, want) {
		t.Fatalf("ordered endpoint claimed %v, want the heads %v", got, want)
	}
	// Leased heads hold their conversations: nothing more.
	if got := f.claim(f.ordered, 10); len(got) != 0 {
		t.Fatalf("claimed %v behind heads in flight", ids(got))
	}
	var alice0 *Claimed
	for _, c := range first {
		if c.ID == a[0] {
			alice0 = c
		}
	}
	// alice's head fails and waits for a retry in a minute: still held.
	f.settle(alice0, StatusFailed, time.Now().Add(time.Minute))
	if got := f.claim(f.ordered, 10); len(got) != 0 {
		t.Fatalf("claimed %v behind a head waiting for its retry", ids(got))
	}
	// Its retry comes due and is claimed again; then it dies: the next of
	// alice's conversation (a[2]) is released, not a2 behind it.
	f.exec(`UPDATE deliveries SET next_attempt_at = now() WHERE endpoint_id = $1 AND event_id = $2`, f.ordered, a[0])
	again := f.claim(f.ordered, 10)
	if got := ids(again); !slices.Equal(got, []uuid.UUID{a[0]}) {
		t.Fatalf("claimed %v, want alice's head again", got)
	}
	f.settle(again[0], StatusDead, time.Now())
	next := f.claim(f.ordered, 10)
	if got := ids(next); !slices.Equal(got, []uuid.UUID{a[2]}) {
		t.Fatalf("after the head died, claimed %v, want alice's next %v", got, a[2])
	}
	f.settle(next[0], StatusDelivered, time.Now())
	if got := ids(f.claim(f.ordered, 10)); !slices.Equal(got, []uuid.UUID{a2}) {
		t.Fatalf("after delivery, claimed %v, want alice's last %v", got, a2)
	}
}

func sameSet(a, b []uuid.UUID) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	cmp := func(x, y uuid.UUID) int { return slices.Compare(x[:], y[:]) }
	slices.SortFunc(a, cmp)
	slices.SortFunc(b, cmp)
	return slices.Equal(a, b)
}

// TestConversationCommitOrder: a conversation's order is commit order. A
// transaction holding an event of a conversation makes another that
// queues into it wait, so the second's events come after the first's even
// when their ids are older (ids are made when a request is read; requests
// commit in either order).
func TestConversationCommitOrder(t *testing.T) {
	f := newOrderedFixture(t)
	ctx := context.Background()
	older := uuid.Must(uuid.NewV7())
	newer := uuid.Must(uuid.NewV7())
	batch := func(id uuid.UUID, key string) *Batch {
		var b Batch
		b.Add(&New{ID: id, TenantID: f.tenant, PageID: "1", AppID: "1", DedupKey: key, Type: TypeMessages,
			ReceivedAt: time.Now(), Body: []byte(`{}`), Sender: "alice"})
		return &b
	}
	first, err := f.db.Pool.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Rollback(ctx) //nolint:errcheck
	if err := f.store.InsertTx(ctx, first, batch(newer, "m:newer"), func([16]byte) {}); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		done <- pgx.BeginFunc(ctx, f.db.Pool, func(tx pgx.Tx) error {
			return f.store.InsertTx(ctx, tx, batch(older, "m:older"), func([16]byte) {})
		})
	}()
	select {
	case err := <-done:
		t.Fatalf("the second transaction committed (%v) while the first held the conversation", err)
	case <-time.After(300 * time.Millisecond):
	}
	if err := first.Commit(ctx); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	got := f.want([]uuid.UUID{newer})
	f.settle(got[0], StatusDelivered, time.Now())
	if got := ids(f.claim(f.ordered, 10)); !slices.Equal(got, []uuid.UUID{older}) {
		t.Fatalf("claimed %v, want the one committed second (%v)", got, older)
	}
}

// TestConversationReplayAndHold: a replayed event goes to the back of its
// conversation, and an event's detail says what it waited behind, which
// event holds it now, and for how long.
func TestConversationReplayAndHold(t *testing.T) {
	f := newOrderedFixture(t)
	ctx := context.Background()
	e := f.insert(msg{"1", "alice"}, msg{"1", "alice"})
	head := f.want(e[:1])
	got, _, err := f.store.Get(ctx, f.tenant, e[1])
	if err != nil {
		t.Fatal(err)
	}
	d := deliveryTo(t, got, f.ordered)
	if d.Held == nil || d.Held.Behind != e[0] || d.Held.Head != e[0] || d.Held.Until != nil {
		t.Fatalf("held delivery's detail: %+v, want behind and held by %v", d.Held, e[0])
	}
	if u := deliveryTo(t, got, f.unordered); u.Held != nil {
		t.Fatalf("unordered delivery has a hold: %+v", u.Held)
	}
	if got, _, _ := f.store.Get(ctx, f.tenant, e[0]); deliveryTo(t, got, f.ordered).Held != nil {
		t.Fatalf("the head has a hold: %+v", deliveryTo(t, got, f.ordered).Held)
	}
	f.settle(head[0], StatusDead, time.Now())
	next := f.want(e[1:])
	f.settle(next[0], StatusFailed, time.Now().Add(time.Hour))
	got, _, _ = f.store.Get(ctx, f.tenant, e[1])
	if h := deliveryTo(t, got, f.ordered).Held; h == nil || h.Head != uuid.Nil || h.Until == nil || h.Waited(time.Now()) < 0 {
		t.Fatalf("released delivery's hold: %+v, want released at its first attempt", h)
	}

	// The dead head is replayed: it goes behind e[1], which still fails.
	if _, err := f.store.Replay(ctx, f.tenant, e[0], f.ordered); err != nil {
		t.Fatal(err)
	}
	if got := f.claim(f.ordered, 10); len(got) != 0 {
		t.Fatalf("the replayed event overtook the one before it: claimed %v", ids(got))
	}
	got, _, _ = f.store.Get(ctx, f.tenant, e[0])
	if h := deliveryTo(t, got, f.ordered).Held; h == nil || h.Behind != e[1] || h.Head != e[1] {
		t.Fatalf("replayed delivery's hold: %+v, want behind %v", h, e[1])
	}
	b, err := f.store.Backlog(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if b.HeldBack != 1 || b.OldestHeld <= 0 || b.OldestHeld > time.Minute {
		t.Fatalf("backlog %+v, want one conversation held back, recently", b)
	}
	// A bulk replay of the failed one puts it behind the replayed head.
	if n, err := f.store.ReplayMany(ctx, f.tenant, ReplayFilter{Status: StatusFailed, EndpointID: f.ordered}); err != nil || n != 1 {
		t.Fatalf("ReplayMany: %d, %v", n, err)
	}
	order := []uuid.UUID{e[0], e[1]}
	for _, want := range order {
		c := f.claim(f.ordered, 10)
		if !slices.Equal(ids(c), []uuid.UUID{want}) {
			t.Fatalf("claimed %v, want %v (replays in replay order)", ids(c), want)
		}
		f.settle(c[0], StatusDelivered, time.Now())
	}
	if b, _ := f.store.Backlog(ctx); b.HeldBack != 0 || b.OldestHeld != 0 || b.Deliveries != 2 {
		t.Fatalf("backlog %+v, want nothing held, the unordered endpoint's two still to make", b)
	}

	// Idle conversation locks are swept; new ones are kept.
	f.exec(`UPDATE conversation_locks SET touched_at = now() - interval '2 days'`)
	f.insert(msg{"9", "carol"})
	if n, err := f.store.SweepConversationLocks(ctx); err != nil || n != 1 {
		t.Fatalf("sweep: %d, %v; want alice's lock only", n, err)
	}
}

func deliveryTo(t *testing.T, e Event, ep uuid.UUID) Delivery {
	t.Helper()
	for _, d := range e.Deliveries {
		if d.EndpointID == ep {
			return d
		}
	}
	t.Fatalf("event %v has no delivery to %v", e.ID, ep)
	return Delivery{}
}

// TestConversationReplayInFlight: replaying a head whose attempt is in
// flight keeps its place (due when that lease ends), so nothing later of
// its conversation goes while the old attempt may still be sent; replaying
// a head that waits for its retry moves it to the back, and the next event
// goes.
func TestConversationReplayInFlight(t *testing.T) {
	f := newOrderedFixture(t)
	ctx := context.Background()
	e := f.insert(msg{"1", "alice"}, msg{"1", "alice"})
	head := f.want(e[:1])
	// Replayed twice (a double click, or a bulk replay of what is now
	// pending): the second still sees the first attempt in flight.
	for range 2 {
		if _, err := f.store.Replay(ctx, f.tenant, e[0], f.ordered); err != nil {
			t.Fatal(err)
		}
		if got := f.claim(f.ordered, 10); len(got) != 0 {
			t.Fatalf("claimed %v while the replayed head's attempt may still be in flight", ids(got))
		}
	}
	// The old attempt's outcome no longer counts.
	f.settle(head[0], StatusDelivered, time.Now())
	var st string
	if err := f.db.Pool.QueryRow(ctx, `SELECT status FROM deliveries WHERE endpoint_id = $1 AND event_id = $2`, f.ordered, e[0]).Scan(&st); err != nil || st != "pending" {
		t.Fatalf("after the old attempt's outcome: %q, %v; want pending (the replay wins)", st, err)
	}
	// Its lease ends: the head, not the event behind it, goes again.
	f.exec(`UPDATE deliveries SET next_attempt_at = now() WHERE endpoint_id = $1 AND event_id = $2`, f.ordered, e[0])
	again := f.want(e[:1])
	// It fails and waits for its retry; replayed now, it goes to the back.
	f.settle(again[0], StatusFailed, time.Now().Add(time.Hour))
	if _, err := f.store.Replay(ctx, f.tenant, e[0], f.ordered); err != nil {
		t.Fatal(err)
	}
	if got := ids(f.claim(f.ordered, 10)); !slices.Equal(got, e[1:]) {
		t.Fatalf("claimed %v, want %v, now ahead of the replayed head", got, e[1])
	}
}
