package database_test

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/postgate/postgate/internal/database"
	"github.com/postgate/postgate/internal/testenv"
)

// TestListenerReconnects: a LISTEN connection that Postgres drops is
// replaced: Lost runs, and Serve gets a new connection that receives
// notifications again.
func TestListenerReconnects(t *testing.T) {
	db := testenv.Postgres(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	type session struct {
		pid      uint32
		notified chan struct{}
	}
	sessions := make(chan session, 4)
	var lost atomic.Int32
	l := database.Listener{
		Pool: db.Pool, Channel: "postgate_test", RetryEvery: 20 * time.Millisecond,
		Serve: func(ctx context.Context, conn *pgx.Conn) error {
			s := session{pid: conn.PgConn().PID(), notified: make(chan struct{}, 8)}
			sessions <- s
			for {
				if _, err := conn.WaitForNotification(ctx); err != nil {
					return err
				}
				s.notified <- struct{}{}
			}
		},
		Lost: func(context.Context) { lost.Add(1) },
	}
	done := make(chan struct{})
	go func() { l.Run(ctx); close(done) }()

	next := func() session {
		t.Helper()
		select {
		case s := <-sessions:
			return s
		case <-time.After(5 * time.Second):
			t.Fatal("no LISTEN connection within 5s")
			return session{}
		}
	}
	notify := func(s session) {
		t.Helper()
		if _, err := db.Pool.Exec(ctx, `SELECT pg_notify('postgate_test', '')`); err != nil {
			t.Fatal(err)
		}
		select {
		case <-s.notified:
		case <-time.After(5 * time.Second):
			t.Fatal("notification not received within 5s")
		}
	}
	first := next()
	notify(first)
	if _, err := db.Pool.Exec(ctx, `SELECT pg_terminate_backend($1)`, int32(first.pid)); err != nil {
		t.Fatal(err)
	}
	second := next()
	if second.pid == first.pid {
		t.Fatalf("reconnected on the same backend %d", first.pid)
	}
	if lost.Load() != 1 {
		t.Errorf("Lost ran %d times, want 1", lost.Load())
	}
	notify(second)
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return after ctx ended")
	}
}
