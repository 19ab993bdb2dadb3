package session_test

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/postgate/postgate/internal/session"
	"github.com/postgate/postgate/internal/testenv"
)

// TestLinkOnce: a link raced by 30 browsers signs exactly one in; an
// expired one signs nobody in; a session ends at its expiry and at
// sign-out, on any store (replica) of the same database.
func TestLinkOnce(t *testing.T) {
	ctx := context.Background()
	db := testenv.Postgres(t)
	var now atomic.Int64
	now.Store(time.Now().UnixNano())
	clock := func() time.Time { return time.Unix(0, now.Load()) }
	a, b := session.NewStore(db.Pool, clock), session.NewStore(db.Pool, clock)

	token, _, err := a.CreateLink(ctx, session.RoleAdmin, "", "op", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var won atomic.Int32
	for i := range 30 {
		wg.Go(func() {
			store := a
			if i%2 == 1 {
				store = b
			}
			_, _, err := store.UseLink(ctx, token, time.Hour)
			switch {
			case err == nil:
				won.Add(1)
			case !errors.Is(err, session.ErrNoSession):
				t.Errorf("use link: %v", err)
			}
		})
	}
	wg.Wait()
	if won.Load() != 1 {
		t.Fatalf("%d sign-ins from one link, want 1", won.Load())
	}

	late, _, err := a.CreateLink(ctx, session.RoleAdmin, "", "op", time.Minute)
	if err != nil {
		t.Fatal(err)
	}
	now.Add(int64(2 * time.Minute))
	if a.LinkValid(ctx, late) {
		t.Error("an expired link is valid")
	}
	if _, _, err := a.UseLink(ctx, late, time.Hour); !errors.Is(err, session.ErrNoSession) {
		t.Errorf("expired link: %v, want ErrNoSession", err)
	}

	s, cookie, err := a.Create(ctx, session.RoleAdmin, "", "op", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := b.Get(ctx, cookie); err != nil || got.CSRF != s.CSRF {
		t.Fatalf("the session on another replica: %+v, %v", got, err)
	}
	now.Add(int64(61 * time.Minute))
	if _, err := b.Get(ctx, cookie); !errors.Is(err, session.ErrNoSession) {
		t.Errorf("expired session: %v, want ErrNoSession", err)
	}
	_, cookie2, _ := a.Create(ctx, session.RoleAdmin, "", "op", time.Hour)
	if err := b.Delete(ctx, cookie2); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Get(ctx, cookie2); !errors.Is(err, session.ErrNoSession) {
		t.Errorf("signed-out session: %v, want ErrNoSession", err)
	}
	if _, _, err := a.Create(ctx, session.RoleTenant, "not-a-uuid", "x", time.Hour); err == nil {
		t.Error("a tenant session without a tenant id was made")
	}
}
